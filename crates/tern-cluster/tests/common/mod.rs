//! Helpers for cluster tests: real `RaftNode`s on 127.0.0.1 with tempdir data.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_cluster::{Change, ClusterConfig, ClusterState, NodeId, RaftNode, StateObserver};

/// Records every change and reset it is told of.
#[derive(Default)]
pub struct Recorder {
    changes: Mutex<Vec<Change>>,
    resets: Mutex<Vec<ClusterState>>,
}

impl Recorder {
    pub fn changes(&self) -> Vec<Change> {
        self.changes.lock().unwrap().clone()
    }

    pub fn resets(&self) -> Vec<ClusterState> {
        self.resets.lock().unwrap().clone()
    }
}

impl StateObserver for Recorder {
    fn applied(&self, change: &Change) {
        self.changes.lock().unwrap().push(change.clone());
    }

    fn reset(&self, state: &ClusterState) {
        self.resets.lock().unwrap().push(state.clone());
    }
}

/// One node under test, with what it needs to restart.
pub struct TestNode {
    pub node: RaftNode,
    pub recorder: Arc<Recorder>,
    pub config: ClusterConfig,
}

impl TestNode {
    pub fn id(&self) -> NodeId {
        self.node.id()
    }

    pub fn addr(&self) -> String {
        self.node.cluster_addr().to_string()
    }

    /// Stops the node, keeping its data and address for a restart.
    pub async fn stop(self) -> ClusterConfig {
        let mut config = self.config;
        config.cluster_listen = self.node.cluster_addr();
        config.info.cluster_addr.clear();
        self.node.shutdown().await.expect("shutdown");
        config
    }
}

/// A configuration with test timings: fast heartbeats and elections on loopback.
pub fn config(id: NodeId, data: &Path) -> ClusterConfig {
    let mut config = ClusterConfig::new(
        id,
        "127.0.0.1:0".parse().unwrap(),
        data.join(format!("node{id}")),
    );
    config.info.mqtt_addr = format!("127.0.0.1:{}", 18830 + id);
    config.heartbeat_ms = 100;
    config.election_timeout_min_ms = 400;
    config.election_timeout_max_ms = 800;
    // Roomier than the 10 s default: five in-process nodes on two busy
    // cores (CI runs several test binaries at once) can take longer to
    // move leadership; each test's own bound still ends a hang.
    config.request_timeout = Duration::from_secs(30);
    config
}

pub async fn start(config: ClusterConfig) -> TestNode {
    let recorder = Arc::new(Recorder::default());
    let node = RaftNode::start(config.clone(), recorder.clone(), tonic_routes())
        .await
        .expect("start");
    TestNode {
        node,
        recorder,
        config,
    }
}

/// Restarts a stopped node on the same address with its data directory (retrying
/// while the previous instance's storage is still being released).
pub async fn restart(config: ClusterConfig) -> TestNode {
    start(config).await
}

pub fn tonic_routes() -> tonic::service::Routes {
    tonic::service::Routes::default()
}

/// Node 1 bootstraps, the others join through it; waits until all are members.
pub async fn cluster(data: &Path, size: u64, voters: usize) -> Vec<TestNode> {
    cluster_with(data, size, |c| c.voters = voters).await
}

pub async fn cluster_with(
    data: &Path,
    size: u64,
    tweak: impl Fn(&mut ClusterConfig),
) -> Vec<TestNode> {
    let mut first = config(1, data);
    first.bootstrap = true;
    tweak(&mut first);
    let mut nodes = vec![start(first).await];
    nodes[0]
        .node
        .wait_ready(Duration::from_secs(10))
        .await
        .expect("node 1 ready");
    let seed = nodes[0].addr();
    for id in 2..=size {
        let mut c = config(id, data);
        c.join = vec![seed.clone()];
        tweak(&mut c);
        let node = start(c).await;
        // One at a time, so the first `voters` nodes are the voters.
        node.node
            .wait_ready(Duration::from_secs(15))
            .await
            .expect("node ready");
        nodes.push(node);
    }
    nodes
}

/// Polls `check` every 10 ms until it holds or `timeout` passes.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs a test body with a time bound.
pub async fn bounded<F: Future<Output = ()>>(limit: Duration, body: F) {
    tokio::time::timeout(limit, body)
        .await
        .expect("test exceeded its time bound");
}

/// The node that leads, according to node `nodes[0]`... or any that knows.
pub fn leader_of(nodes: &[TestNode]) -> Option<NodeId> {
    nodes.iter().find_map(|n| n.node.status().leader)
}

pub fn unused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

pub fn data_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().to_path_buf()
}
