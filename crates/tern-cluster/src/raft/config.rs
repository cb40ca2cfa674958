//! How a node joins and runs in the cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ClusterError;

/// The most log entries one AppendEntries call carries. openraft 0.9 gives every
/// AppendEntries call the heartbeat interval as its deadline, and retries a
/// timed-out call with the same entries: a call that cannot finish in time would
/// stall that follower for good. Entries carry up to a full batch of commands, so
/// the count stays small.
pub(crate) const MAX_ENTRIES_PER_APPEND: u64 = 16;

/// A node's numeric identity in the cluster; unique and stable across restarts.
pub type NodeId = u64;

/// What peers and operators see of a node: the openraft `Node` type, stored in the
/// membership, so every member knows how to reach every other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeInfo {
    /// `host:port` that peers dial for cluster gRPC traffic.
    pub cluster_addr: String,
    /// `host:port` of the node's MQTT listener, for clients and operators.
    pub mqtt_addr: String,
    /// `host:port` of the node's admin/HTTP listener.
    pub admin_addr: String,
}

/// The configuration of one cluster node.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id (not 0: 0 marks "unknown" in messages).
    pub node_id: NodeId,
    /// Where the gRPC listener binds; port 0 picks a free port ([`crate::RaftNode::cluster_addr`]).
    pub cluster_listen: SocketAddr,
    /// What peers and operators see. An empty `cluster_addr` is replaced by the
    /// address actually bound (right for loopback tests, not behind NAT).
    pub info: NodeInfo,
    /// Where the Raft log, vote and snapshots are kept (a sled database), e.g. `<data>/raft`.
    pub data_dir: PathBuf,
    /// Initialize a new single-node cluster if this node has no Raft state yet.
    pub bootstrap: bool,
    /// Seeds to join through, `host:port`; a name may resolve to several addresses
    /// and every one is tried.
    pub join: Vec<String>,
    /// The first `voters` members become voters; later ones stay learners (default 3).
    pub voters: usize,
    /// Interval of leader heartbeats (default 100 ms). openraft 0.9 also uses it as
    /// the deadline of every AppendEntries call, so it must cover the transfer and
    /// fsync of the largest AppendEntries call (16 full entries).
    pub heartbeat_ms: u64,
    /// Minimum election timeout (default 500 ms).
    pub election_timeout_min_ms: u64,
    /// Maximum election timeout (default 1 s); also the leader lease.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many applied entries since the last one (default 5,000).
    pub snapshot_every: u64,
    /// Log entries kept after a snapshot, for followers slightly behind (default 1,000);
    /// a follower further behind receives the snapshot.
    pub snapshot_keep_logs: u64,
    /// How long a proposal, a read barrier or a membership change may take,
    /// elections included, before it fails with a timeout (default 10 s).
    pub request_timeout: Duration,
}

impl ClusterConfig {
    /// A configuration with the defaults, for a node that neither bootstraps nor joins
    /// (it restarts from its data directory); set `bootstrap` or `join` for the first start.
    pub fn new(node_id: NodeId, cluster_listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            node_id,
            cluster_listen,
            info: NodeInfo::default(),
            data_dir: data_dir.into(),
            bootstrap: false,
            join: Vec::new(),
            voters: 3,
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1_000,
            snapshot_every: 5_000,
            snapshot_keep_logs: 1_000,
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Checks what cannot work before anything starts.
    pub(crate) fn validate(&self) -> Result<(), ClusterError> {
        if self.node_id == 0 {
            return Err(ClusterError::Config("node_id must not be 0".into()));
        }
        if self.voters == 0 {
            return Err(ClusterError::Config("voters must be at least 1".into()));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms >= self.election_timeout_min_ms {
            return Err(ClusterError::Config(format!(
                "heartbeat_ms ({}) must be above 0 and below election_timeout_min_ms ({})",
                self.heartbeat_ms, self.election_timeout_min_ms
            )));
        }
        if self.election_timeout_min_ms >= self.election_timeout_max_ms {
            return Err(ClusterError::Config(format!(
                "election_timeout_min_ms ({}) must be below election_timeout_max_ms ({})",
                self.election_timeout_min_ms, self.election_timeout_max_ms
            )));
        }
        Ok(())
    }

    /// The openraft configuration.
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, ClusterError> {
        let config = openraft::Config {
            cluster_name: "tern".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: self.snapshot_keep_logs,
            snapshot_max_chunk_size: 1024 * 1024,
            max_payload_entries: MAX_ENTRIES_PER_APPEND,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ClusterError::Config(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_mistakes_are_refused() {
        let config = ClusterConfig::new(1, "127.0.0.1:0".parse().unwrap(), "/tmp/x");
        config.validate().unwrap();
        config.raft_config().unwrap();
        let mut bad = config.clone();
        bad.node_id = 0;
        assert!(bad.validate().is_err());
        let mut bad = config.clone();
        bad.heartbeat_ms = 600;
        assert!(bad.validate().is_err());
        let mut bad = config;
        bad.voters = 0;
        assert!(bad.validate().is_err());
    }
}
