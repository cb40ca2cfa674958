//! [`RaftNode`]: one running cluster member, and its tasks.
//!
//! Tasks, each with the one cancel signal (a `watch`) and joined by
//! [`RaftNode::shutdown`]: the gRPC server, the batcher ([`super::batcher`]), the
//! joiner (contacts seeds until this node is a member) and the readiness monitor.
//! openraft runs its own tasks, stopped by `Raft::shutdown`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::ClusterError;
use crate::raft::batcher::{self, Submitter};
use crate::raft::leader::{LeaderReply, LeaderRequest};
use crate::raft::state_machine::{SharedState, StateMachine, read_state};
use crate::raft::status::{ClusterStatus, MemberStatus, NodeStatus};
use crate::raft::transport::{NetworkFactory, Peers, Rpc};
use crate::raft::{
    ClusterConfig, ClusterState, Command, CommandResult, NodeId, NodeInfo, Raft, StateObserver,
};
use crate::raft::{joiner, service, store};

/// What the node's tasks share.
pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) config: ClusterConfig,
    pub(crate) raft: Raft,
    pub(crate) peers: Peers,
    state: SharedState,
    pub(crate) ready: AtomicBool,
    /// Set by the joiner once this node is a member with its current addresses.
    pub(crate) joined: AtomicBool,
    problem: Mutex<Option<String>>,
}

impl Inner {
    /// This node's own status.
    pub(crate) fn status(&self) -> NodeStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let problem = self
            .problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        NodeStatus::from_metrics(&metrics, self.ready.load(Ordering::Relaxed), problem)
    }

    pub(crate) fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = problem;
    }

    pub(crate) fn is_voter(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == self.id)
    }

    pub(crate) fn member_info(&self) -> Option<NodeInfo> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .get_node(&self.id)
            .cloned()
    }
}

struct Tasks {
    cancel: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    helpers: Vec<JoinHandle<()>>,
    /// Alive while openraft's tasks still hold the storage.
    storage_open: std::sync::Weak<()>,
}

/// A running member of the cluster. Cheap to clone; all clones share the node.
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
    submitter: Submitter,
    local_addr: SocketAddr,
    tasks: Arc<tokio::sync::Mutex<Option<Tasks>>>,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.inner.id)
            .field("addr", &self.local_addr)
            .finish()
    }
}

impl RaftNode {
    /// Binds the gRPC listener, opens the storage in `config.data_dir`, starts Raft
    /// and then bootstraps (a new single-node cluster), joins through the seeds
    /// (in the background, retrying with backoff until it is a member), or simply
    /// restarts from its own data. `extra` adds more gRPC services to the listener.
    ///
    /// Returns once the node runs, not once it is a member: see [`Self::is_ready`]
    /// and [`Self::wait_ready`].
    pub async fn start(
        mut config: ClusterConfig,
        observer: Arc<dyn StateObserver>,
        extra: tonic::service::Routes,
    ) -> Result<Self, ClusterError> {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind(config.cluster_listen)
            .await
            .map_err(|e| ClusterError::Bind {
                addr: config.cluster_listen,
                reason: e.to_string(),
            })?;
        let local_addr = listener.local_addr().map_err(|e| ClusterError::Bind {
            addr: config.cluster_listen,
            reason: e.to_string(),
        })?;
        if config.info.cluster_addr.is_empty() {
            config.info.cluster_addr = local_addr.to_string();
        }
        let (log_store, snapshots) = store::open(&config.data_dir)?;
        let storage_open = log_store.closed_signal();
        let storage_error = |e: openraft::StorageError<NodeId>| ClusterError::Storage {
            path: config.data_dir.clone(),
            reason: e.to_string(),
        };
        let state_machine = StateMachine::open(snapshots, observer).map_err(storage_error)?;
        let state = state_machine.shared();
        let peers = Peers::default();
        let network = NetworkFactory {
            id: config.node_id,
            peers: peers.clone(),
        };
        let raft = Raft::new(
            config.node_id,
            Arc::new(config.raft_config()?),
            network,
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if config.bootstrap
            && let Err(e) = bootstrap(&raft, config.node_id, &config.info).await
        {
            let _ = raft.shutdown().await;
            return Err(e);
        }

        let inner = Arc::new(Inner {
            id: config.node_id,
            config,
            raft,
            peers,
            state,
            ready: AtomicBool::new(false),
            joined: AtomicBool::new(false),
            problem: Mutex::new(None),
        });
        let (cancel, cancel_rx) = watch::channel(false);
        let server = tokio::spawn(service::serve(
            listener,
            inner.clone(),
            extra,
            cancel_rx.clone(),
        ));

        tracing::info!(
            node = inner.id,
            addr = %local_addr,
            data_dir = %inner.config.data_dir.display(),
            bootstrap = inner.config.bootstrap,
            seeds = ?inner.config.join,
            "cluster node started"
        );
        let (submitter, queue) = batcher::channel();
        let helpers = vec![
            tokio::spawn(batcher::run(inner.clone(), queue, cancel_rx.clone())),
            tokio::spawn(joiner::join(inner.clone(), cancel_rx.clone())),
            tokio::spawn(joiner::monitor_readiness(inner.clone(), cancel_rx)),
        ];
        let tasks = Tasks {
            cancel,
            server,
            helpers,
            storage_open,
        };
        Ok(Self {
            inner,
            submitter,
            local_addr,
            tasks: Arc::new(tokio::sync::Mutex::new(Some(tasks))),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The address the gRPC listener is bound to (useful with port 0).
    pub fn cluster_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Appends `commands` as one Raft entry and returns their results, in order.
    /// Works on any node: a follower forwards to the leader over gRPC. Retries
    /// through elections until `request_timeout`, then fails with a timeout.
    ///
    /// If the leader changes while the entry is in flight, the entry may be applied
    /// and then proposed again (at-least-once); every command is idempotent except
    /// that a repeated `ClaimClient` reports the claiming node as previous owner.
    pub async fn propose(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<CommandResult>, ClusterError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        match self
            .inner
            .ask_leader(LeaderRequest::Propose(commands))
            .await?
        {
            LeaderReply::Results(results) => Ok(results),
            other => Err(ClusterError::Protocol(format!(
                "the leader answered {other:?} to a proposal"
            ))),
        }
    }

    /// Queues one command; concurrent submits are coalesced into few Raft entries
    /// (see the batcher). The command is queued when `submit` is called, so the
    /// commands of one caller are applied in call order.
    pub fn submit(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<CommandResult, ClusterError>> + Send + 'static {
        self.submitter.submit(command)
    }

    /// A linearizable read barrier on any node: gets the leader's read index (the
    /// leader confirms it still leads with a quorum) and waits until this node has
    /// applied at least that index. Everything committed before the call is then
    /// visible through [`Self::with_state`].
    pub async fn read_barrier(&self) -> Result<(), ClusterError> {
        let index = match self.inner.ask_leader(LeaderRequest::ReadIndex).await? {
            LeaderReply::ReadIndex(index) => index,
            other => {
                return Err(ClusterError::Protocol(format!(
                    "the leader answered {other:?} to a read index"
                )));
            }
        };
        let timeout = self.inner.config.request_timeout;
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read barrier")
            .await
            .map_err(|e| match e {
                openraft::metrics::WaitError::Timeout(..) => ClusterError::Timeout {
                    what: format!("applying up to the leader's read index {index}"),
                    secs: timeout.as_secs(),
                },
                openraft::metrics::WaitError::ShuttingDown => ClusterError::Shutdown,
            })?;
        Ok(())
    }

    /// Reads the local replica (possibly behind the leader; see [`Self::read_barrier`]).
    /// `f` runs under a read lock: keep it short.
    pub fn with_state<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        read_state(&self.inner.state, f)
    }

    /// The addresses of a member, from this node's membership.
    pub fn node_info(&self, node: NodeId) -> Option<NodeInfo> {
        let metrics = self.inner.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .get_node(&node)
            .cloned()
    }

    /// This node's status, from local knowledge only.
    pub fn status(&self) -> NodeStatus {
        self.inner.status()
    }

    /// The local status plus every member's own status, fetched over gRPC
    /// (members that do not answer within a second are marked unreachable).
    pub async fn cluster_status(&self) -> ClusterStatus {
        let local = self.status();
        let members = local.voters.iter().map(|(id, info)| (*id, info, true));
        let members = members.chain(local.learners.iter().map(|(id, info)| (*id, info, false)));
        let asks = members.map(|(id, info, voter)| {
            let peers = self.inner.peers.clone();
            let local = local.clone();
            let info = info.clone();
            async move {
                let (status, unreachable) = if id == local.id {
                    (Some(local), None)
                } else {
                    match peers
                        .call::<_, NodeStatus>(
                            &info.cluster_addr,
                            Rpc::NodeStatus,
                            &(),
                            Duration::from_secs(1),
                        )
                        .await
                    {
                        Ok(status) => (Some(status), None),
                        Err(e) => (None, Some(e.to_string())),
                    }
                };
                MemberStatus {
                    id,
                    info,
                    voter,
                    status,
                    unreachable,
                }
            }
        });
        let mut members = futures::future::join_all(asks).await;
        members.sort_by_key(|m| m.id);
        ClusterStatus { local, members }
    }

    /// Adds a node: as a learner, then as a voter while there are fewer voters than
    /// `config.voters`. Forwarded to the leader.
    pub async fn add_node(&self, id: NodeId, info: NodeInfo) -> Result<(), ClusterError> {
        self.inner
            .ask_leader(LeaderRequest::Join {
                id,
                info,
                rejoin: false,
            })
            .await
            .map(drop)
    }

    /// Removes a node from the membership (a voter is replaced by the lowest-id
    /// learner, if any). Forwarded to the leader.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), ClusterError> {
        self.inner
            .ask_leader(LeaderRequest::Leave { id })
            .await
            .map(drop)
    }

    /// Moves leadership to the voter `to`. openraft 0.9 has no transfer: the leader
    /// asks `to` to start an election and votes for it (see the crate docs).
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), ClusterError> {
        self.inner
            .ask_leader(LeaderRequest::TransferLeader { to })
            .await
            .map(drop)
    }

    /// Whether this node has joined (is a member with its current addresses, and
    /// a join it asked for is complete), knows a leader, and has applied
    /// everything it knows to be committed.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }

    /// Waits until [`Self::is_ready`], at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        while !self.is_ready() {
            if Instant::now() >= deadline {
                let status = self.status();
                return Err(ClusterError::Timeout {
                    what: format!(
                        "node {} becoming ready (leader {:?}, problem: {})",
                        self.inner.id,
                        status.leader,
                        status.problem.as_deref().unwrap_or("none")
                    ),
                    secs: timeout.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Stops the node: the batcher (queued submits fail with `Shutdown`), the joiner,
    /// Raft and the gRPC server, and waits for all of them. Other clones then fail
    /// with `Shutdown`. A second call does nothing.
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        let Some(tasks) = self.tasks.lock().await.take() else {
            return Ok(());
        };
        tracing::info!(node = self.inner.id, "cluster node stopping");
        let _ = tasks.cancel.send(true);
        for helper in tasks.helpers {
            let _ = helper.await;
        }
        let raft_result = self.inner.raft.shutdown().await;
        let server_result = tasks.server.await;
        // openraft's state machine task ends shortly after its core: wait until the
        // storage is closed, so the data directory can be opened again.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tasks.storage_open.strong_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if tasks.storage_open.strong_count() > 0 {
            tracing::warn!(
                node = self.inner.id,
                "Raft storage still open 5 s after shutdown"
            );
        }
        raft_result.map_err(|e| ClusterError::Raft(format!("Raft did not stop cleanly: {e}")))?;
        match server_result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ClusterError::Raft(format!("the gRPC server failed: {e}"))),
            Err(e) => Err(ClusterError::Raft(format!(
                "the gRPC server task failed: {e}"
            ))),
        }
    }
}

/// Initializes a new single-node cluster, unless this node has Raft state already.
async fn bootstrap(raft: &Raft, id: NodeId, info: &NodeInfo) -> Result<(), ClusterError> {
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
    if initialized {
        return Ok(());
    }
    match raft.initialize(BTreeMap::from([(id, info.clone())])).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(ClusterError::Raft(format!(
            "cannot bootstrap the cluster: {e}"
        ))),
    }
}
