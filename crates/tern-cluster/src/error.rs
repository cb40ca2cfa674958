//! The errors of tern-cluster: each says what went wrong and what to do about it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::raft::NodeId;

/// What went wrong in the cluster layer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClusterError {
    /// No leader is known right now (an election is running or a quorum is missing).
    #[error(
        "no Raft leader is known yet ({0}); retry shortly, and check that a majority of voters is running"
    )]
    NoLeader(String),
    /// A request did not finish within its deadline.
    #[error(
        "{what} did not complete within {secs} s; check that a majority of voters is running and reachable"
    )]
    Timeout {
        /// What timed out.
        what: String,
        /// The deadline in seconds.
        secs: u64,
    },
    /// None of the seeds given to join could be reached or resolved.
    #[error(
        "cannot reach any join seed ({seeds}): {reason}; check --join and that the seeds are running"
    )]
    SeedUnreachable {
        /// The seeds tried.
        seeds: String,
        /// The last failure.
        reason: String,
    },
    /// Another peer could not be reached.
    #[error("cannot reach node {node} at {addr}: {reason}")]
    Unreachable {
        /// The node id, 0 when unknown.
        node: NodeId,
        /// The address dialled.
        addr: String,
        /// The transport error.
        reason: String,
    },
    /// The Raft data directory is in use by another process (or another node in this process).
    #[error(
        "the Raft data directory {0} is locked by another process; stop it or choose another data directory"
    )]
    DataDirLocked(PathBuf),
    /// The Raft storage failed.
    #[error("Raft storage at {path} failed: {reason}")]
    Storage {
        /// The data directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The gRPC listener could not be bound.
    #[error(
        "cannot listen for cluster traffic on {addr}: {reason}; choose a free address with cluster_listen"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// The configuration cannot work.
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    /// The node id is already a member with another address.
    #[error(
        "node id {id} is already a member with cluster address {existing}, not {requested}; give this node a unique id, or remove the old member first"
    )]
    NodeIdConflict {
        /// The id.
        id: NodeId,
        /// The address in the membership.
        existing: String,
        /// The address this node announced.
        requested: String,
    },
    /// The node named is not a member of the cluster.
    #[error("node {0} is not a member of the cluster")]
    UnknownNode(NodeId),
    /// The request is not possible in the current state.
    #[error("{0}")]
    Rejected(String),
    /// Another change (of the membership) is in progress.
    #[error("busy: {0}; retry shortly")]
    Busy(String),
    /// The submit queue is full.
    #[error(
        "the proposal queue is full ({0} commands waiting); the cluster cannot keep up, retry later"
    )]
    Overloaded(usize),
    /// This node has been shut down.
    #[error("the Raft node is shut down")]
    Shutdown,
    /// Raft itself reported an error.
    #[error("Raft error: {0}")]
    Raft(String),
    /// A peer sent something this node cannot decode.
    #[error("protocol error talking to a peer: {0}")]
    Protocol(String),
}

impl ClusterError {
    /// Whether retrying the same request later can succeed (no leader, timeouts,
    /// unreachable peers, a full queue).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NoLeader(_)
                | Self::Timeout { .. }
                | Self::Unreachable { .. }
                | Self::SeedUnreachable { .. }
                | Self::Overloaded(_)
                | Self::Busy(_)
        )
    }
}

/// A [`ClusterError`] as it travels between nodes inside an RPC reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum RemoteError {
    /// The receiver is not the leader; the leader it knows of, if any.
    NotLeader(Option<NodeId>),
    NoLeader(String),
    NodeIdConflict {
        id: NodeId,
        existing: String,
        requested: String,
    },
    UnknownNode(NodeId),
    Rejected(String),
    Busy(String),
    Timeout {
        what: String,
        secs: u64,
    },
    Shutdown,
    Raft(String),
}

impl From<RemoteError> for ClusterError {
    fn from(e: RemoteError) -> Self {
        match e {
            RemoteError::NotLeader(_) => ClusterError::NoLeader("the leader changed".into()),
            RemoteError::NoLeader(s) => ClusterError::NoLeader(s),
            RemoteError::NodeIdConflict {
                id,
                existing,
                requested,
            } => ClusterError::NodeIdConflict {
                id,
                existing,
                requested,
            },
            RemoteError::UnknownNode(id) => ClusterError::UnknownNode(id),
            RemoteError::Rejected(s) => ClusterError::Rejected(s),
            RemoteError::Busy(s) => ClusterError::Busy(s),
            RemoteError::Timeout { what, secs } => ClusterError::Timeout { what, secs },
            RemoteError::Shutdown => ClusterError::Raft("the remote node is shutting down".into()),
            RemoteError::Raft(s) => ClusterError::Raft(s),
        }
    }
}

impl From<ClusterError> for RemoteError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::NoLeader(s) => RemoteError::NoLeader(s),
            ClusterError::NodeIdConflict {
                id,
                existing,
                requested,
            } => RemoteError::NodeIdConflict {
                id,
                existing,
                requested,
            },
            ClusterError::UnknownNode(id) => RemoteError::UnknownNode(id),
            ClusterError::Rejected(s) => RemoteError::Rejected(s),
            ClusterError::Busy(s) => RemoteError::Busy(s),
            ClusterError::Timeout { what, secs } => RemoteError::Timeout { what, secs },
            ClusterError::Shutdown => RemoteError::Shutdown,
            other => RemoteError::Raft(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let locked = ClusterError::DataDirLocked(PathBuf::from("/data/raft"));
        assert!(
            locked.to_string().contains("/data/raft") && locked.to_string().contains("stop it")
        );
        let seeds = ClusterError::SeedUnreachable {
            seeds: "a:1, b:2".into(),
            reason: "refused".into(),
        };
        assert!(seeds.to_string().contains("check --join"));
        let conflict = ClusterError::NodeIdConflict {
            id: 2,
            existing: "x:1".into(),
            requested: "y:1".into(),
        };
        assert!(conflict.to_string().contains("unique id"));
        assert!(
            ClusterError::NoLeader("election".into())
                .to_string()
                .contains("retry")
        );
        assert!(ClusterError::NoLeader(String::new()).is_retryable());
        assert!(!conflict.is_retryable());
    }

    #[test]
    fn errors_survive_the_trip_between_nodes() {
        let conflict = ClusterError::NodeIdConflict {
            id: 2,
            existing: "x:1".into(),
            requested: "y:1".into(),
        };
        let back = ClusterError::from(RemoteError::from(conflict));
        assert!(matches!(back, ClusterError::NodeIdConflict { id: 2, .. }));
        let back = ClusterError::from(RemoteError::from(ClusterError::Busy(
            "membership change".into(),
        )));
        assert!(back.is_retryable());
        assert!(matches!(
            ClusterError::from(RemoteError::NotLeader(Some(3))),
            ClusterError::NoLeader(_)
        ));
    }
}
