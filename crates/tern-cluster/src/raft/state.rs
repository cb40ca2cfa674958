//! The replicated state machine's data: what every node agrees on, and how a
//! [`Command`] changes it.
//!
//! This module is pure: no I/O, no openraft calls, no clock. [`ClusterState::apply`]
//! takes a command and returns its result plus the [`Change`]s it made, which the
//! storage layer hands to the [`StateObserver`]. Unit tests assert on those changes.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use openraft::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::raft::{NodeId, NodeInfo};

/// One change to the replicated state, the application data of the Raft log.
/// A Raft entry carries a `Vec<Command>`, applied in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Replace the node's whole route set (sent when a node starts).
    SetRoutes {
        /// The node whose routes these are.
        node: NodeId,
        /// Every filter the node has subscribers for.
        filters: Vec<String>,
    },
    /// Add filters to the node's route set.
    AddRoutes {
        /// The node that gained subscribers.
        node: NodeId,
        /// The filters to add.
        filters: Vec<String>,
    },
    /// Remove filters from the node's route set.
    RemoveRoutes {
        /// The node that lost its last subscriber to these filters.
        node: NodeId,
        /// The filters to remove.
        filters: Vec<String>,
    },
    /// Store a retained message; an empty message removes the topic's retained message.
    /// The bytes are opaque here (the broker's own encoding).
    SetRetained {
        /// The topic name.
        topic: String,
        /// The encoded message, or empty to remove.
        message: Bytes,
    },
    /// Record that `node` now hosts the session of `client_id`. Result:
    /// [`CommandResult::Claimed`] with the previous owner, if any.
    ClaimClient {
        /// The MQTT client identifier.
        client_id: String,
        /// The node claiming it.
        node: NodeId,
    },
    /// Forget the owner of `client_id`, but only if `node` is still the owner
    /// (a stale release after a takeover is ignored).
    ReleaseClient {
        /// The MQTT client identifier.
        client_id: String,
        /// The node releasing it.
        node: NodeId,
    },
    /// Record a persistent session as its node stores it (subscriptions,
    /// expiry, will: the session record in the broker's encoding), so that
    /// another node can adopt it if that node dies. An empty record removes
    /// the entry, but only if `node` still holds it (a stale removal after a
    /// handover is ignored).
    SetSession {
        /// The MQTT client identifier.
        client_id: String,
        /// The node that hosts the session.
        node: NodeId,
        /// The encoded session record, or empty to remove.
        record: Bytes,
    },
}

impl Command {
    /// About how many bytes the command takes in a Raft entry.
    pub(crate) fn approximate_size(&self) -> usize {
        let strings = |filters: &[String]| filters.iter().map(|f| f.len() + 2).sum::<usize>();
        16 + match self {
            Self::SetRoutes { filters, .. }
            | Self::AddRoutes { filters, .. }
            | Self::RemoveRoutes { filters, .. } => strings(filters),
            Self::SetRetained { topic, message } => topic.len() + message.len(),
            Self::ClaimClient { client_id, .. } | Self::ReleaseClient { client_id, .. } => {
                client_id.len()
            }
            Self::SetSession {
                client_id, record, ..
            } => client_id.len() + record.len(),
        }
    }
}

/// The result of one [`Command`]; a proposal returns one per command, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The command was applied.
    Done,
    /// The client was claimed; `previous` is the node that owned it before, if any
    /// (possibly the claiming node itself).
    Claimed {
        /// The owner before this claim.
        previous: Option<NodeId>,
    },
}

/// What an applied entry changed, as told to a [`StateObserver`]. Only real
/// changes are reported: adding a route that exists already reports nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Filters newly routed to a node.
    RoutesAdded {
        /// The node.
        node: NodeId,
        /// Filters that were not in its route set before.
        filters: Vec<String>,
    },
    /// Filters no longer routed to a node.
    RoutesRemoved {
        /// The node.
        node: NodeId,
        /// Filters that were in its route set before.
        filters: Vec<String>,
    },
    /// A retained message was set (non-empty) or removed (empty).
    Retained {
        /// The topic.
        topic: String,
        /// The new message, empty when removed.
        message: Bytes,
    },
    /// The owner of a client changed.
    Owner {
        /// The MQTT client identifier.
        client_id: String,
        /// The new owner, `None` when released.
        owner: Option<NodeId>,
        /// The owner before.
        previous: Option<NodeId>,
    },
    /// The cluster membership changed.
    Members {
        /// The voters of the new configuration.
        voters: Vec<NodeId>,
        /// The learners (members that receive the log but do not vote).
        learners: Vec<NodeId>,
    },
}

/// Told of every change as it is applied, synchronously inside apply, on every
/// node (leader, followers, learners), in log order.
///
/// Implementations must be quick and must not block: they run inside the Raft
/// state machine task, and a slow observer delays every write of the cluster.
pub trait StateObserver: Send + Sync + 'static {
    /// One change, in log order.
    fn applied(&self, change: &Change);
    /// The whole state was replaced (a snapshot was installed, or the state was
    /// loaded at start): rebuild everything derived from it.
    fn reset(&self, state: &ClusterState);
}

/// An observer that ignores everything, for nodes or tests that only read the state.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoObserver;

impl StateObserver for NoObserver {
    fn applied(&self, _change: &Change) {}
    fn reset(&self, _state: &ClusterState) {}
}

/// The replicated state machine: kept in memory on every node, snapshotted whole.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    routes: BTreeMap<NodeId, BTreeSet<String>>,
    retained: BTreeMap<String, Bytes>,
    owners: BTreeMap<String, NodeId>,
    /// Persistent sessions: client id -> (hosting node, encoded record).
    sessions: BTreeMap<String, (NodeId, Bytes)>,
    pub(crate) last_applied: Option<LogId<NodeId>>,
    pub(crate) membership: StoredMembership<NodeId, NodeInfo>,
}

impl ClusterState {
    /// The filters routed to each node.
    pub fn routes(&self) -> &BTreeMap<NodeId, BTreeSet<String>> {
        &self.routes
    }

    /// The filters routed to `node` (empty if it has none).
    pub fn routes_of(&self, node: NodeId) -> impl Iterator<Item = &str> {
        self.routes
            .get(&node)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Retained messages by topic (the broker's encoding).
    pub fn retained(&self) -> &BTreeMap<String, Bytes> {
        &self.retained
    }

    /// The node that hosts each client's session.
    pub fn owners(&self) -> &BTreeMap<String, NodeId> {
        &self.owners
    }

    /// The persistent sessions, by client id: the node that hosts each and
    /// its encoded record.
    pub fn sessions(&self) -> &BTreeMap<String, (NodeId, Bytes)> {
        &self.sessions
    }

    /// The node that hosts `client_id`'s session, if any.
    pub fn owner_of(&self, client_id: &str) -> Option<NodeId> {
        self.owners.get(client_id).copied()
    }

    /// The index of the last log entry applied to this state (0 before any).
    pub fn last_applied_index(&self) -> u64 {
        self.last_applied.map_or(0, |id| id.index)
    }

    /// The voters of the last applied membership.
    pub fn voters(&self) -> Vec<NodeId> {
        self.membership.membership().voter_ids().collect()
    }

    /// The learners of the last applied membership.
    pub fn learners(&self) -> Vec<NodeId> {
        self.membership.membership().learner_ids().collect()
    }

    /// Every member (voters and learners) with its address information.
    pub fn members(&self) -> BTreeMap<NodeId, NodeInfo> {
        self.membership
            .membership()
            .nodes()
            .map(|(id, info)| (*id, info.clone()))
            .collect()
    }

    /// Applies one command; returns its result and pushes what changed onto `changes`.
    pub(crate) fn apply(&mut self, command: Command, changes: &mut Vec<Change>) -> CommandResult {
        match command {
            Command::SetRoutes { node, filters } => {
                let new: BTreeSet<String> = filters.into_iter().collect();
                let old = self.routes.remove(&node).unwrap_or_default();
                let removed: Vec<String> = old.difference(&new).cloned().collect();
                let added: Vec<String> = new.difference(&old).cloned().collect();
                if !new.is_empty() {
                    self.routes.insert(node, new);
                }
                if !removed.is_empty() {
                    changes.push(Change::RoutesRemoved {
                        node,
                        filters: removed,
                    });
                }
                if !added.is_empty() {
                    changes.push(Change::RoutesAdded {
                        node,
                        filters: added,
                    });
                }
                CommandResult::Done
            }
            Command::AddRoutes { node, filters } => {
                let set = self.routes.entry(node).or_default();
                let added: Vec<String> = filters
                    .into_iter()
                    .filter(|f| set.insert(f.clone()))
                    .collect();
                if set.is_empty() {
                    self.routes.remove(&node);
                }
                if !added.is_empty() {
                    changes.push(Change::RoutesAdded {
                        node,
                        filters: added,
                    });
                }
                CommandResult::Done
            }
            Command::RemoveRoutes { node, filters } => {
                let Some(set) = self.routes.get_mut(&node) else {
                    return CommandResult::Done;
                };
                let removed: Vec<String> = filters.into_iter().filter(|f| set.remove(f)).collect();
                if set.is_empty() {
                    self.routes.remove(&node);
                }
                if !removed.is_empty() {
                    changes.push(Change::RoutesRemoved {
                        node,
                        filters: removed,
                    });
                }
                CommandResult::Done
            }
            Command::SetRetained { topic, message } => {
                let changed = if message.is_empty() {
                    self.retained.remove(&topic).is_some()
                } else {
                    self.retained
                        .insert(topic.clone(), message.clone())
                        .as_ref()
                        != Some(&message)
                };
                if changed {
                    changes.push(Change::Retained { topic, message });
                }
                CommandResult::Done
            }
            Command::ClaimClient { client_id, node } => {
                let previous = self.owners.insert(client_id.clone(), node);
                if previous != Some(node) {
                    changes.push(Change::Owner {
                        client_id,
                        owner: Some(node),
                        previous,
                    });
                }
                CommandResult::Claimed { previous }
            }
            Command::SetSession {
                client_id,
                node,
                record,
            } => {
                if !record.is_empty() {
                    self.sessions.insert(client_id, (node, record));
                } else if self
                    .sessions
                    .get(&client_id)
                    .is_some_and(|(held, _)| *held == node)
                {
                    self.sessions.remove(&client_id);
                }
                CommandResult::Done
            }
            Command::ReleaseClient { client_id, node } => {
                if self.owners.get(&client_id) == Some(&node) {
                    self.owners.remove(&client_id);
                    changes.push(Change::Owner {
                        client_id,
                        owner: None,
                        previous: Some(node),
                    });
                }
                CommandResult::Done
            }
        }
    }

    /// Records a new membership and reports it.
    pub(crate) fn set_membership(
        &mut self,
        membership: StoredMembership<NodeId, NodeInfo>,
        changes: &mut Vec<Change>,
    ) {
        self.membership = membership;
        changes.push(Change::Members {
            voters: self.voters(),
            learners: self.learners(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(state: &mut ClusterState, command: Command) -> (CommandResult, Vec<Change>) {
        let mut changes = Vec::new();
        let result = state.apply(command, &mut changes);
        (result, changes)
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_session_record_moves_with_its_node_and_a_stale_removal_is_ignored() {
        let mut state = ClusterState::default();
        let set = |node, record: &'static [u8]| Command::SetSession {
            client_id: "sensor".into(),
            node,
            record: Bytes::from_static(record),
        };
        assert_eq!(apply(&mut state, set(1, b"on-1")).0, CommandResult::Done);
        assert_eq!(state.sessions()["sensor"], (1, Bytes::from_static(b"on-1")));
        // Handed over to node 2, which records it; node 1's late removal
        // must not erase node 2's entry.
        apply(&mut state, set(2, b"on-2"));
        apply(&mut state, set(1, b""));
        assert_eq!(state.sessions()["sensor"], (2, Bytes::from_static(b"on-2")));
        apply(&mut state, set(2, b""));
        assert!(state.sessions().is_empty());
    }

    #[test]
    fn set_routes_reports_only_the_difference() {
        let mut state = ClusterState::default();
        apply(
            &mut state,
            Command::AddRoutes {
                node: 1,
                filters: strings(&["a", "b"]),
            },
        );
        let (_, changes) = apply(
            &mut state,
            Command::SetRoutes {
                node: 1,
                filters: strings(&["b", "c"]),
            },
        );
        assert_eq!(
            changes,
            vec![
                Change::RoutesRemoved {
                    node: 1,
                    filters: strings(&["a"])
                },
                Change::RoutesAdded {
                    node: 1,
                    filters: strings(&["c"])
                },
            ]
        );
        assert_eq!(state.routes_of(1).collect::<Vec<_>>(), vec!["b", "c"]);
        let (_, changes) = apply(
            &mut state,
            Command::SetRoutes {
                node: 1,
                filters: vec![],
            },
        );
        assert_eq!(
            changes,
            vec![Change::RoutesRemoved {
                node: 1,
                filters: strings(&["b", "c"])
            }]
        );
        assert!(state.routes().is_empty());
    }

    #[test]
    fn add_and_remove_routes_ignore_no_ops() {
        let mut state = ClusterState::default();
        let (_, changes) = apply(
            &mut state,
            Command::AddRoutes {
                node: 2,
                filters: strings(&["x", "x"]),
            },
        );
        assert_eq!(
            changes,
            vec![Change::RoutesAdded {
                node: 2,
                filters: strings(&["x"])
            }]
        );
        let (_, changes) = apply(
            &mut state,
            Command::AddRoutes {
                node: 2,
                filters: strings(&["x"]),
            },
        );
        assert!(changes.is_empty());
        let (_, changes) = apply(
            &mut state,
            Command::RemoveRoutes {
                node: 2,
                filters: strings(&["y"]),
            },
        );
        assert!(changes.is_empty());
        let (_, changes) = apply(
            &mut state,
            Command::RemoveRoutes {
                node: 3,
                filters: strings(&["x"]),
            },
        );
        assert!(changes.is_empty());
        let (_, changes) = apply(
            &mut state,
            Command::RemoveRoutes {
                node: 2,
                filters: strings(&["x"]),
            },
        );
        assert_eq!(
            changes,
            vec![Change::RoutesRemoved {
                node: 2,
                filters: strings(&["x"])
            }]
        );
        assert!(state.routes().is_empty(), "an empty route set is dropped");
        let (_, changes) = apply(
            &mut state,
            Command::AddRoutes {
                node: 4,
                filters: vec![],
            },
        );
        assert!(changes.is_empty());
        assert!(state.routes().is_empty());
    }

    #[test]
    fn retained_set_replace_and_remove() {
        let mut state = ClusterState::default();
        let msg = Bytes::from_static(b"m1");
        let (_, changes) = apply(
            &mut state,
            Command::SetRetained {
                topic: "t".into(),
                message: msg.clone(),
            },
        );
        assert_eq!(
            changes,
            vec![Change::Retained {
                topic: "t".into(),
                message: msg.clone()
            }]
        );
        let (_, changes) = apply(
            &mut state,
            Command::SetRetained {
                topic: "t".into(),
                message: msg.clone(),
            },
        );
        assert!(changes.is_empty(), "the same message again changes nothing");
        let (_, changes) = apply(
            &mut state,
            Command::SetRetained {
                topic: "t".into(),
                message: Bytes::new(),
            },
        );
        assert_eq!(
            changes,
            vec![Change::Retained {
                topic: "t".into(),
                message: Bytes::new()
            }]
        );
        assert!(state.retained().is_empty());
        let (_, changes) = apply(
            &mut state,
            Command::SetRetained {
                topic: "t".into(),
                message: Bytes::new(),
            },
        );
        assert!(changes.is_empty());
    }

    #[test]
    fn claim_returns_previous_owner_and_release_needs_ownership() {
        let mut state = ClusterState::default();
        let claim = |node| Command::ClaimClient {
            client_id: "c".into(),
            node,
        };
        assert_eq!(
            apply(&mut state, claim(1)).0,
            CommandResult::Claimed { previous: None }
        );
        let (result, changes) = apply(&mut state, claim(2));
        assert_eq!(result, CommandResult::Claimed { previous: Some(1) });
        assert_eq!(
            changes,
            vec![Change::Owner {
                client_id: "c".into(),
                owner: Some(2),
                previous: Some(1)
            }]
        );
        let (_, changes) = apply(
            &mut state,
            Command::ReleaseClient {
                client_id: "c".into(),
                node: 1,
            },
        );
        assert!(changes.is_empty(), "a stale release is ignored");
        assert_eq!(state.owner_of("c"), Some(2));
        let (_, changes) = apply(
            &mut state,
            Command::ReleaseClient {
                client_id: "c".into(),
                node: 2,
            },
        );
        assert_eq!(
            changes,
            vec![Change::Owner {
                client_id: "c".into(),
                owner: None,
                previous: Some(2)
            }]
        );
        assert_eq!(state.owner_of("c"), None);
    }
}
