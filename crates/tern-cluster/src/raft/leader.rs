//! Requests only the leader can serve, and how any node gets them there.
//!
//! openraft does not forward: a write on a follower fails with `ForwardToLeader`.
//! [`Inner::ask_leader`] serves a [`LeaderRequest`] locally when this node leads,
//! otherwise sends it to the leader it knows of over gRPC, and retries through
//! elections and leader changes until the configured deadline. The receiving
//! side ([`Inner::serve_as_leader`]) never forwards further (except `Join`, which
//! a seed must forward because the joining node knows no leader): it answers
//! `NotLeader` and the caller retries with what it learns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::error::{
    ChangeMembershipError, CheckIsLeaderError, ClientWriteError, Fatal, RaftError,
};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::error::{ClusterError, RemoteError};
use crate::raft::node::Inner;
use crate::raft::transport::{CallError, Rpc};
use crate::raft::{Command, CommandResult, NodeId, NodeInfo};

/// How far behind the leader's log a learner may be and still be promoted.
const PROMOTION_LAG: u64 = 1_000;

/// Whether the leader's replication to `id` is within [`PROMOTION_LAG`] of its log.
fn caught_up(metrics: &openraft::RaftMetrics<NodeId, NodeInfo>, id: NodeId) -> bool {
    let last = metrics.last_log_index.unwrap_or(0);
    let matched = metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&id).copied().flatten());
    matched.is_some_and(|m| m.index + PROMOTION_LAG >= last)
}

/// A request for the leader.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LeaderRequest {
    /// Append these commands as one entry.
    Propose(Vec<Command>),
    /// Confirm leadership and return the index a linearizable read must wait for.
    ReadIndex,
    /// Add a node; `rejoin` when the node already has state as a member (its
    /// address may have changed, which is then not a conflict).
    Join {
        id: NodeId,
        info: NodeInfo,
        rejoin: bool,
    },
    /// Remove a node.
    Leave { id: NodeId },
    /// Move leadership to `to`.
    TransferLeader { to: NodeId },
    /// Sent by the leader to a transfer's target: start an election now.
    Elect,
}

impl LeaderRequest {
    fn rpc(&self) -> Rpc {
        match self {
            Self::Propose(_) => Rpc::Propose,
            Self::ReadIndex => Rpc::ReadIndex,
            Self::Join { .. } => Rpc::Join,
            Self::Leave { .. } => Rpc::Leave,
            Self::TransferLeader { .. } | Self::Elect => Rpc::TransferLeader,
        }
    }

    fn what(&self) -> &'static str {
        match self {
            Self::Propose(_) => "a proposal",
            Self::ReadIndex => "a read barrier",
            Self::Join { .. } => "adding a node",
            Self::Leave { .. } => "removing a node",
            Self::TransferLeader { .. } => "a leadership transfer",
            Self::Elect => "an election",
        }
    }
}

/// The leader's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LeaderReply {
    Results(Vec<CommandResult>),
    ReadIndex(u64),
    Done,
}

/// What travels back in an RPC reply.
pub(crate) type Reply = Result<LeaderReply, RemoteError>;

fn is_retryable(e: &RemoteError) -> bool {
    matches!(
        e,
        RemoteError::NotLeader(_) | RemoteError::NoLeader(_) | RemoteError::Busy(_)
    )
}

fn fatal(e: Fatal<NodeId>) -> RemoteError {
    match e {
        Fatal::Stopped => RemoteError::Shutdown,
        other => RemoteError::Raft(other.to_string()),
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> RemoteError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            RemoteError::NotLeader(f.leader_id)
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            ChangeMembershipError::InProgress(e),
        )) => RemoteError::Busy(e.to_string()),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            RemoteError::Rejected(e.to_string())
        }
        RaftError::Fatal(f) => fatal(f),
    }
}

impl Inner {
    /// The leader this node knows of, with its cluster address when known.
    pub(crate) fn leader(&self) -> Option<(NodeId, Option<String>)> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        let addr = metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.cluster_addr.clone());
        Some((leader, addr))
    }

    fn is_leader(&self) -> bool {
        self.leader().is_some_and(|(id, _)| id == self.id)
    }

    /// Serves `request` on the leader, wherever it is, retrying through leader
    /// changes until the request deadline.
    pub(crate) async fn ask_leader(
        &self,
        request: LeaderRequest,
    ) -> Result<LeaderReply, ClusterError> {
        let timeout = self.config.request_timeout;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(10);
        let mut last = String::from("no leader known");
        loop {
            let mut left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClusterError::Timeout {
                    what: format!("{} (last: {last})", request.what()),
                    secs: timeout.as_secs(),
                });
            }
            if matches!(
                request,
                LeaderRequest::Propose(_) | LeaderRequest::ReadIndex
            ) {
                // A leader that went silent (partitioned, not refusing connections)
                // must not use up the whole deadline: try again with what we learn.
                let attempt = Duration::from_millis(3 * self.config.election_timeout_max_ms);
                left = left.min(attempt.max(Duration::from_secs(2)));
            }
            let (local, target, outcome): (bool, String, Result<Reply, CallError>) =
                match self.leader() {
                    Some((leader, _)) if leader == self.id => {
                        let outcome =
                            match tokio::time::timeout(left, self.serve_as_leader(request.clone()))
                                .await
                            {
                                Ok(reply) => Ok(reply),
                                Err(_) => Err(CallError::Timeout(left)),
                            };
                        (true, format!("leader {leader} (this node)"), outcome)
                    }
                    Some((leader, Some(addr))) => {
                        let outcome = self.peers.call(&addr, request.rpc(), &request, left).await;
                        (false, format!("leader {leader} at {addr}"), outcome)
                    }
                    Some((leader, None)) => (
                        false,
                        format!("leader {leader}"),
                        Err(CallError::Unreachable("no known address".into())),
                    ),
                    None => (
                        false,
                        "no leader known".into(),
                        Err(CallError::Unreachable("an election may be running".into())),
                    ),
                };
            match outcome {
                Ok(Ok(reply)) => return Ok(reply),
                // This node stops: nothing to retry. A remote leader that stops
                // is replaced by an election: retry there.
                Ok(Err(RemoteError::Shutdown)) if local => return Err(ClusterError::Shutdown),
                Ok(Err(e)) if is_retryable(&e) || matches!(e, RemoteError::Shutdown) => {
                    last = format!("{target}: {e:?}")
                }
                Ok(Err(e)) => return Err(e.into()),
                Err(e) => last = format!("{target}: {e}"),
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Serves a request on this node, which must be the leader (except `Elect`).
    pub(crate) async fn serve_as_leader(&self, request: LeaderRequest) -> Reply {
        match request {
            LeaderRequest::Propose(commands) => match self.raft.client_write(commands).await {
                Ok(response) => Ok(LeaderReply::Results(response.data)),
                Err(e) => Err(write_error(e)),
            },
            LeaderRequest::ReadIndex => match self.raft.ensure_linearizable().await {
                Ok(read_log_id) => Ok(LeaderReply::ReadIndex(read_log_id.map_or(0, |id| id.index))),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(RemoteError::NotLeader(f.leader_id))
                }
                Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                    Err(RemoteError::NoLeader(e.to_string()))
                }
                Err(RaftError::Fatal(f)) => Err(fatal(f)),
            },
            LeaderRequest::Elect => {
                self.raft.trigger().elect().await.map_err(fatal)?;
                Ok(LeaderReply::Done)
            }
            _ if !self.is_leader() => Err(RemoteError::NotLeader(self.leader().map(|(id, _)| id))),
            LeaderRequest::Join { id, info, rejoin } => self.add_member(id, info, rejoin).await,
            LeaderRequest::Leave { id } => self.remove_member(id).await,
            LeaderRequest::TransferLeader { to } => self.transfer_leadership(to).await,
        }
    }

    /// The effective membership, read from Raft's own state (the metrics may lag
    /// just after a change).
    async fn membership(
        &self,
    ) -> Result<(BTreeSet<NodeId>, BTreeMap<NodeId, NodeInfo>), RemoteError> {
        self.raft
            .with_raft_state(|state| {
                let membership = state.membership_state.effective().membership();
                let voters = membership.voter_ids().collect();
                let nodes = membership
                    .nodes()
                    .map(|(id, info)| (*id, info.clone()))
                    .collect();
                (voters, nodes)
            })
            .await
            .map_err(fatal)
    }

    async fn add_member(&self, id: NodeId, info: NodeInfo, rejoin: bool) -> Reply {
        let (_, nodes) = self.membership().await?;
        match nodes.get(&id) {
            Some(existing) if existing == &info => {}
            Some(existing) if existing.cluster_addr != info.cluster_addr && !rejoin => {
                return Err(RemoteError::NodeIdConflict {
                    id,
                    existing: existing.cluster_addr.clone(),
                    requested: info.cluster_addr,
                });
            }
            // Same address, other details: only the node itself updates them (a
            // re-join); an operator's add_node must not undo that.
            Some(_) if !rejoin => {}
            Some(_) => {
                let update = ChangeMembers::SetNodes(BTreeMap::from([(id, info)]));
                self.raft
                    .change_membership(update, true)
                    .await
                    .map_err(write_error)?;
            }
            None => {
                self.raft
                    .add_learner(id, info, true)
                    .await
                    .map_err(write_error)?;
            }
        }
        self.promote_learners(Some(id)).await?;
        Ok(LeaderReply::Done)
    }

    /// Promotes learners (lowest id first) while there are fewer voters than configured.
    ///
    /// Only learners that have caught up (within [`PROMOTION_LAG`] entries) are
    /// promoted: making an unreachable node a voter could cost the quorum.
    async fn promote_learners(&self, joining: Option<NodeId>) -> Result<(), RemoteError> {
        let (voters, nodes) = self.membership().await?;
        let wanted = self.config.voters.saturating_sub(voters.len());
        if let Some(id) = joining.filter(|id| wanted > 0 && !voters.contains(id)) {
            // add_learner waited for it to catch up; the metrics may lag a little.
            let wait = Duration::from_millis(2 * self.config.election_timeout_max_ms);
            let _ = self
                .raft
                .wait(Some(wait))
                .metrics(|m| caught_up(m, id), "learner caught up")
                .await;
        }
        let metrics = self.raft.metrics().borrow().clone();
        let promote: BTreeSet<NodeId> = nodes
            .keys()
            .filter(|id| !voters.contains(id) && caught_up(&metrics, **id))
            .take(wanted)
            .copied()
            .collect();
        if let Some(id) =
            joining.filter(|id| wanted > 0 && !voters.contains(id) && !promote.contains(id))
        {
            // The joiner asks again; by then the node may have caught up.
            return Err(RemoteError::Busy(format!(
                "node {id} has not caught up with the log yet"
            )));
        }
        if promote.is_empty() {
            return Ok(());
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(promote), false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    async fn remove_member(&self, id: NodeId) -> Reply {
        let (voters, nodes) = self.membership().await?;
        if !nodes.contains_key(&id) {
            return Err(RemoteError::UnknownNode(id));
        }
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(RemoteError::Rejected(format!(
                    "node {id} is the last voter; add another node before removing it"
                )));
            }
            let change = ChangeMembers::RemoveVoters(BTreeSet::from([id]));
            self.raft
                .change_membership(change, false)
                .await
                .map_err(write_error)?;
        } else {
            let change = ChangeMembers::RemoveNodes(BTreeSet::from([id]));
            self.raft
                .change_membership(change, false)
                .await
                .map_err(write_error)?;
        }
        // A leader that removed itself is no longer leader: nothing more to do here.
        if id != self.id {
            self.promote_learners(None).await?;
        }
        Ok(LeaderReply::Done)
    }

    /// openraft 0.9 has no leadership transfer, so this leader makes the target
    /// win an election:
    ///
    /// 1. it waits until the target's log matches its own (a voter only grants
    ///    a vote to a candidate whose log is at least as long) and until its own
    ///    leader lease has run out (the maximum election timeout since it was
    ///    elected: before that it refuses every vote);
    /// 2. with more than three voters, the leader and the target are not a
    ///    majority, so the leader also stops its heartbeats until the transfer
    ///    ends, letting the other voters' leases run out too;
    /// 3. it asks the target to start an election now (`Elect`), grants the vote
    ///    and steps down.
    ///
    /// Repeated until the target leads or the deadline passes. If another voter
    /// wins instead, the request is retried on that leader (`Busy`).
    async fn transfer_leadership(&self, to: NodeId) -> Reply {
        if to == self.id {
            return Ok(LeaderReply::Done);
        }
        let (voters, nodes) = self.membership().await?;
        if !voters.contains(&to) {
            return Err(RemoteError::Rejected(format!(
                "node {to} is not a voter; only a voter can lead"
            )));
        }
        let addr = nodes
            .get(&to)
            .map(|n| n.cluster_addr.clone())
            .unwrap_or_default();
        let lease = Duration::from_millis(self.config.election_timeout_max_ms);
        let wait = lease * 2;
        let deadline = Instant::now() + self.config.request_timeout;

        let caught_up = |m: &openraft::RaftMetrics<NodeId, NodeInfo>| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&to).copied().flatten());
            matched.map(|id| id.index) == m.last_log_index
        };
        let _ = self
            .raft
            .wait(Some(wait))
            .metrics(caught_up, "transfer target caught up")
            .await;
        let elected_at = self
            .raft
            .with_raft_state(|s| s.vote_last_modified())
            .await
            .map_err(fatal)?;
        if let Some(elected_at) = elected_at {
            tokio::time::sleep_until(
                (elected_at + lease + Duration::from_millis(10)).min(deadline),
            )
            .await;
        }
        let _heartbeats = (voters.len() > 3).then(|| PausedHeartbeats::new(self));

        while Instant::now() < deadline {
            let _: Result<Reply, CallError> = self
                .peers
                .call(&addr, Rpc::TransferLeader, &LeaderRequest::Elect, wait)
                .await;
            let moved = self
                .raft
                .wait(Some(wait))
                .metrics(
                    |m| m.current_leader.is_some() && m.current_leader != Some(self.id),
                    "leader moves",
                )
                .await;
            if let Ok(metrics) = moved {
                return match metrics.current_leader {
                    Some(leader) if leader == to => Ok(LeaderReply::Done),
                    other => Err(RemoteError::Busy(format!(
                        "leadership moved to node {} instead of node {to}",
                        other.unwrap_or(0)
                    ))),
                };
            }
        }
        Err(RemoteError::Timeout {
            what: format!("moving leadership to node {to}"),
            secs: self.config.request_timeout.as_secs(),
        })
    }
}

/// Heartbeats stopped for a transfer; restarted when dropped (whatever the outcome).
struct PausedHeartbeats<'a> {
    inner: &'a Inner,
}

impl<'a> PausedHeartbeats<'a> {
    fn new(inner: &'a Inner) -> Self {
        inner.raft.runtime_config().heartbeat(false);
        Self { inner }
    }
}

impl Drop for PausedHeartbeats<'_> {
    fn drop(&mut self) {
        self.inner.raft.runtime_config().heartbeat(true);
    }
}
