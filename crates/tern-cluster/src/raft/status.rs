//! What a node reports about itself and about the cluster, for operators
//! (`tern cluster status`, the admin API) and for tests. Plain serde types.

use std::collections::BTreeMap;

use openraft::{RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};

use crate::raft::{NodeId, NodeInfo};

/// The Raft role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accepts writes and replicates them.
    Leader,
    /// A voter following the leader.
    Follower,
    /// A voter asking for votes.
    Candidate,
    /// Receives the log but does not vote (also a node not yet a member).
    Learner,
    /// Shutting down.
    Shutdown,
}

/// One node's own view of itself and the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// The current Raft term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// The index of its last log entry.
    pub last_log_index: u64,
    /// The index of the last entry applied to its state.
    pub last_applied: u64,
    /// The index of the last entry in its last snapshot (0 if none).
    pub snapshot_index: u64,
    /// The voters of its current membership.
    pub voters: BTreeMap<NodeId, NodeInfo>,
    /// The learners of its current membership.
    pub learners: BTreeMap<NodeId, NodeInfo>,
    /// Whether it knows a leader and has applied what it knows to be committed.
    pub ready: bool,
    /// The last problem preventing it from joining, if any (e.g. seeds unreachable).
    pub problem: Option<String>,
}

impl NodeStatus {
    pub(crate) fn from_metrics(
        metrics: &RaftMetrics<NodeId, NodeInfo>,
        ready: bool,
        problem: Option<String>,
    ) -> Self {
        let role = match metrics.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        let membership = metrics.membership_config.membership();
        let voter_ids: Vec<NodeId> = membership.voter_ids().collect();
        let mut voters = BTreeMap::new();
        let mut learners = BTreeMap::new();
        for (id, info) in membership.nodes() {
            if voter_ids.contains(id) {
                voters.insert(*id, info.clone());
            } else {
                learners.insert(*id, info.clone());
            }
        }
        Self {
            id: metrics.id,
            role,
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index.unwrap_or(0),
            last_applied: metrics.last_applied.map_or(0, |id| id.index),
            snapshot_index: metrics.snapshot.map_or(0, |id| id.index),
            voters,
            learners,
            ready,
            problem,
        }
    }
}

/// One member as seen from the node that asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// The member's id.
    pub id: NodeId,
    /// Its addresses, from the membership.
    pub info: NodeInfo,
    /// Whether it votes.
    pub voter: bool,
    /// Its own status, if it answered.
    pub status: Option<NodeStatus>,
    /// Why it did not answer, if it did not.
    pub unreachable: Option<String>,
}

/// The local status plus every member's own status, fetched over gRPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The status of the node that answered.
    pub local: NodeStatus,
    /// Every member of its current membership, in id order.
    pub members: Vec<MemberStatus>,
}
