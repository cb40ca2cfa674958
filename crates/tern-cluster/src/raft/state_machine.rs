//! openraft's `RaftStateMachine` over [`ClusterState`]: the state lives in memory
//! (shared with [`crate::RaftNode::with_state`] behind a read-write lock), each
//! applied change is told to the [`StateObserver`], and snapshots are the whole
//! state, serialised and persisted through [`SnapshotStore`].
//!
//! At start the last snapshot is loaded (and the observer reset with it); openraft
//! then re-applies the committed log entries after it.

// openraft's StorageError is large (224 bytes); the storage traits return it, so do we.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership,
};

use crate::raft::codec;
use crate::raft::state::{ClusterState, StateObserver};
use crate::raft::store::SnapshotStore;
use crate::raft::{CommandResult, Entry, NodeId, NodeInfo, StoredSnapshot, TypeConfig};

/// The shared, in-memory replica of the cluster state.
pub(crate) type SharedState = Arc<RwLock<ClusterState>>;

/// Reads the shared state, recovering from a poisoned lock (the state is only
/// written by whole-command steps that cannot leave it half-changed).
pub(crate) fn read_state<R>(state: &SharedState, f: impl FnOnce(&ClusterState) -> R) -> R {
    let guard = state.read().unwrap_or_else(|e| e.into_inner());
    f(&guard)
}

fn write_state<R>(state: &SharedState, f: impl FnOnce(&mut ClusterState) -> R) -> R {
    let mut guard = state.write().unwrap_or_else(|e| e.into_inner());
    f(&mut guard)
}

fn snapshot_error(
    meta: Option<&SnapshotMeta<NodeId, NodeInfo>>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError<NodeId> {
    StorageIOError::new(
        ErrorSubject::Snapshot(meta.map(|m| m.signature())),
        verb,
        AnyError::error(e),
    )
    .into()
}

/// The state machine handed to openraft.
pub(crate) struct StateMachine {
    state: SharedState,
    observer: Arc<dyn StateObserver>,
    snapshots: SnapshotStore,
    /// Counts snapshots built by this process, to make snapshot ids unique.
    built: u64,
}

impl StateMachine {
    /// Loads the last snapshot, if any, and resets the observer with it.
    pub(crate) fn open(
        snapshots: SnapshotStore,
        observer: Arc<dyn StateObserver>,
    ) -> Result<Self, StorageError<NodeId>> {
        let state = match snapshots.load()? {
            Some(stored) => codec::decode::<ClusterState>(&stored.data)
                .map_err(|e| snapshot_error(Some(&stored.meta), ErrorVerb::Read, e))?,
            None => ClusterState::default(),
        };
        observer.reset(&state);
        Ok(Self {
            state: Arc::new(RwLock::new(state)),
            observer,
            snapshots,
            built: 0,
        })
    }

    /// The state this machine applies to, for local reads.
    pub(crate) fn shared(&self) -> SharedState {
        self.state.clone()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>), StorageError<NodeId>>
    {
        Ok(read_state(&self.state, |s| {
            (s.last_applied, s.membership.clone())
        }))
    }

    async fn apply<I>(
        &mut self,
        entries: I,
    ) -> Result<Vec<Vec<CommandResult>>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let mut changes = Vec::new();
        for entry in entries {
            let results = write_state(&self.state, |state| {
                state.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Vec::new(),
                    EntryPayload::Normal(commands) => commands
                        .into_iter()
                        .map(|command| state.apply(command, &mut changes))
                        .collect(),
                    EntryPayload::Membership(membership) => {
                        state.set_membership(
                            StoredMembership::new(Some(entry.log_id), membership),
                            &mut changes,
                        );
                        Vec::new()
                    }
                }
            });
            // The observer runs without the lock held, so it may read the state.
            for change in changes.drain(..) {
                self.observer.applied(&change);
            }
            responses.push(results);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.built += 1;
        SnapshotBuilder {
            state: self.state.clone(),
            snapshots: self.snapshots.clone(),
            number: self.built,
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let mut new_state: ClusterState =
            codec::decode(&data).map_err(|e| snapshot_error(Some(meta), ErrorVerb::Read, e))?;
        new_state.last_applied = meta.last_log_id;
        new_state.membership = meta.last_membership.clone();
        self.snapshots
            .save(&StoredSnapshot {
                meta: meta.clone(),
                data,
            })
            .await?;
        write_state(&self.state, |state| *state = new_state);
        read_state(&self.state, |state| self.observer.reset(state));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.snapshots.load()?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}

/// Builds a snapshot of the state as it is when the build starts.
pub(crate) struct SnapshotBuilder {
    state: SharedState,
    snapshots: SnapshotStore,
    number: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (data, last_applied, membership) = read_state(&self.state, |s| {
            (codec::encode(s), s.last_applied, s.membership.clone())
        });
        let data = data.map_err(|e| snapshot_error(None, ErrorVerb::Write, e))?;
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, self.number),
            None => format!("none-{}", self.number),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        self.snapshots
            .save(&StoredSnapshot {
                meta: meta.clone(),
                data: data.clone(),
            })
            .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
