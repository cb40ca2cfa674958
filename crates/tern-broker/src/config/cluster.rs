//! [`ClusterSettings`]: how a node finds and joins its cluster. Absent
//! (`cluster` unset), the broker runs as a single node.

use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;

/// The settings of a cluster node (TOML table `[cluster]`, or the `serve`
/// flags `--node-id`, `--cluster-listen`, `--admin-listen`, `--join`,
/// `--bootstrap`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// This node's identifier: unique in the cluster, kept across
    /// restarts (it names the node's data). At least 1.
    pub node_id: u64,
    /// Where this node accepts gRPC from its peers (Raft and forwarded
    /// messages).
    pub cluster_listen: SocketAddr,
    /// The address peers dial to reach this node, when it differs from
    /// `cluster_listen` (a wildcard bind address, a Kubernetes pod name).
    /// Default: `cluster_listen`.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Seeds to join through: `host:port` cluster addresses of members,
    /// or a DNS name resolving to several (a Kubernetes headless
    /// service). A node restarting with its own data rejoins without them.
    #[serde(default)]
    pub join: Vec<String>,
    /// Start a new cluster with this node as its first member, if this
    /// node has no cluster data yet. Give it to exactly one node.
    #[serde(default)]
    pub bootstrap: bool,
    /// How many nodes vote in Raft: the first ones to join; later ones are
    /// learners that hold the whole replicated state and serve clients
    /// without slowing consensus. Default: 3.
    #[serde(default = "default_voters")]
    pub voters: usize,
}

fn default_voters() -> usize {
    3
}

impl ClusterSettings {
    /// A node with these essentials and the defaults for the rest.
    pub fn new(node_id: u64, cluster_listen: SocketAddr) -> Self {
        Self {
            node_id,
            cluster_listen,
            advertise: None,
            join: Vec::new(),
            bootstrap: false,
            voters: default_voters(),
        }
    }

    /// The address peers dial.
    pub fn advertised_address(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.cluster_listen.to_string())
    }

    pub(super) fn validate(&self, has_data_dir: bool) -> Result<(), ConfigError> {
        let invalid = |reason: String| Err(ConfigError::Cluster(reason));
        if self.node_id == 0 {
            return invalid(
                "cluster.node_id is 0: give every node its own number, starting at 1".into(),
            );
        }
        if !has_data_dir {
            return invalid(
                "a cluster node needs a data directory for its Raft log: set data_dir".into(),
            );
        }
        if self.voters == 0 {
            return invalid("cluster.voters is 0: set it to 3 (or 1, or 5)".into());
        }
        if self.cluster_listen.ip().is_unspecified() && self.advertise.is_none() {
            return invalid(format!(
                "cluster.cluster_listen is {}, which peers cannot dial: set cluster.advertise \
                 to this node's reachable host:port",
                self.cluster_listen
            ));
        }
        if !self.bootstrap && self.join.is_empty() {
            return invalid(
                "a cluster node needs --bootstrap (to start a new cluster, on one node) or \
                 --join SEED[,SEED...] (to join an existing one)"
                    .into(),
            );
        }
        Ok(())
    }
}
