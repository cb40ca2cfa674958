//! Durable Raft storage on sled: the log, the vote, the committed index and the
//! last snapshot. This is the only file of tern-cluster that names sled.
//!
//! The seam is openraft's own storage traits: [`LogStore`] implements
//! `RaftLogStorage`, and with the in-memory state machine it passes openraft's
//! storage test suite (`openraft::testing::Suite`, run in this module's tests), so
//! another engine can replace sled behind the same traits and the same suite.
//!
//! Layout: one sled database in the data directory with three trees. `log` maps
//! the big-endian entry index to the encoded entry; `meta` holds the vote, the
//! committed log id and the last purged log id; `snapshot` holds the last snapshot
//! (its metadata and the encoded [`crate::ClusterState`]). Every write that openraft
//! must find after a crash (appended entries, the vote, a snapshot) is flushed to
//! disk before it is acknowledged.

// openraft's StorageError is large (224 bytes); the storage traits return it, so do we.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    AnyError, ErrorSubject, ErrorVerb, LogId, RaftLogId, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ClusterError;
use crate::raft::codec;
use crate::raft::{Entry, NodeId, StoredSnapshot, TypeConfig};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";
const CURRENT: &[u8] = b"current";

/// Held by every handle on the open database; when none is left, sled has been
/// closed and the directory can be opened again (a restart in the same process).
pub(crate) type OpenGuard = std::sync::Arc<()>;

/// Opens (or creates) the Raft storage in `dir`.
pub(crate) fn open(dir: &Path) -> Result<(LogStore, SnapshotStore), ClusterError> {
    std::fs::create_dir_all(dir).map_err(|e| storage_error(dir, &e))?;
    let db = sled::Config::new().path(dir).open().map_err(|e| match e {
        sled::Error::Io(io) if is_lock_error(&io) => ClusterError::DataDirLocked(dir.to_path_buf()),
        other => storage_error(dir, &other),
    })?;
    let tree = |name: &str| db.open_tree(name).map_err(|e| storage_error(dir, &e));
    let guard = OpenGuard::default();
    let log = LogStore {
        db: db.clone(),
        log: tree("log")?,
        meta: tree("meta")?,
        path: dir.to_path_buf(),
        _guard: guard.clone(),
    };
    let snapshots = SnapshotStore {
        tree: tree("snapshot")?,
        db,
        _guard: guard,
    };
    Ok((log, snapshots))
}

fn is_lock_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("lock")
}

fn storage_error(dir: &Path, e: &dyn std::fmt::Display) -> ClusterError {
    ClusterError::Storage {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    }
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::fmt::Display,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::error(e)).into()
}

/// The Raft log, vote and committed index (openraft's `RaftLogStorage`).
#[derive(Clone)]
pub(crate) struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    path: PathBuf,
    _guard: OpenGuard,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.path)
            .finish()
    }
}

impl LogStore {
    /// Tells when every handle on this database is gone.
    pub(crate) fn closed_signal(&self) -> std::sync::Weak<()> {
        std::sync::Arc::downgrade(&self._guard)
    }

    fn get_meta<T: DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let Some(bytes) = self
            .meta
            .get(key)
            .map_err(|e| io_error(subject.clone(), ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        codec::decode(&bytes)
            .map(Some)
            .map_err(|e| io_error(subject, ErrorVerb::Read, e))
    }

    fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes =
            codec::encode(value).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        self.meta
            .insert(key, bytes)
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))?;
        Ok(())
    }

    async fn flush(&self, subject: ErrorSubject<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.db
            .flush_async()
            .await
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))?;
        Ok(())
    }

    /// Removes every log entry whose index is in `range`.
    fn remove_range(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for item in self.log.range(range) {
            let (key, _) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            batch.remove(key);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(index_key(*i)),
            Bound::Excluded(i) => Bound::Excluded(index_key(*i)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut entries = Vec::new();
        for item in self.log.range((start, end)) {
            let (_, value) = item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let entry: Entry = codec::decode(&value)
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            self.get_meta(LAST_PURGED, ErrorSubject::Logs)?;
        let last = self
            .log
            .last()
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        let last_log_id = match last {
            Some((_, value)) => {
                let entry: Entry = codec::decode(&value)
                    .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Some(*entry.get_log_id())
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE, vote, ErrorSubject::Vote)?;
        self.flush(ErrorSubject::Vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE, ErrorSubject::Vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not flushed: losing it only means re-applying fewer entries at start-up
        // until the leader tells the commit index again.
        self.put_meta(COMMITTED, &committed, ErrorSubject::Store)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .get_meta::<Option<LogId<NodeId>>>(COMMITTED, ErrorSubject::Store)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            let log_id = *entry.get_log_id();
            let bytes = codec::encode(&entry)
                .map_err(|e| io_error(ErrorSubject::Log(log_id), ErrorVerb::Write, e))?;
            batch.insert(&index_key(log_id.index), bytes);
        }
        self.log
            .apply_batch(batch)
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        // Durable before openraft is told: a vote or an ack must never count an
        // entry that a crash could lose.
        let flushed = self
            .db
            .flush_async()
            .await
            .map(|_| ())
            .map_err(std::io::Error::other);
        callback.log_io_completed(flushed);
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_range(index_key(log_id.index)..)?;
        self.flush(ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: a crash in between leaves entries that are
        // already known to be purged, never a hole.
        self.put_meta(LAST_PURGED, &log_id, ErrorSubject::Logs)?;
        self.remove_range(..=index_key(log_id.index))
    }
}

/// The persisted copy of the last snapshot.
#[derive(Clone)]
pub(crate) struct SnapshotStore {
    db: sled::Db,
    tree: sled::Tree,
    _guard: OpenGuard,
}

impl SnapshotStore {
    /// The last snapshot saved, if any.
    pub(crate) fn load(&self) -> Result<Option<StoredSnapshot>, StorageError<NodeId>> {
        let Some(bytes) = self
            .tree
            .get(CURRENT)
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))?
        else {
            return Ok(None);
        };
        codec::decode(&bytes)
            .map(Some)
            .map_err(|e| io_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e))
    }

    /// Replaces the saved snapshot, durably.
    pub(crate) async fn save(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        let subject = ErrorSubject::Snapshot(Some(snapshot.meta.signature()));
        let bytes =
            codec::encode(snapshot).map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        self.tree
            .insert(CURRENT, bytes)
            .map_err(|e| io_error(subject.clone(), ErrorVerb::Write, e))?;
        self.db
            .flush_async()
            .await
            .map_err(|e| io_error(subject, ErrorVerb::Write, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::raft::NoObserver;
    use crate::raft::state_machine::StateMachine;

    struct SledBuilder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
            let dir = tempfile::tempdir()
                .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
            let (log, snapshots) =
                open(dir.path()).map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
            let state_machine = StateMachine::open(snapshots, Arc::new(NoObserver))?;
            Ok((dir, log, state_machine))
        }
    }

    /// The sled log store and the state machine pass openraft's own storage suite.
    #[test]
    fn passes_the_openraft_storage_suite() {
        Suite::test_all(SledBuilder).unwrap();
    }

    #[test]
    fn a_second_open_of_the_same_directory_is_refused_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = open(dir.path()).unwrap();
        match open(dir.path()) {
            Err(ClusterError::DataDirLocked(path)) => assert_eq!(path, dir.path()),
            Err(other) => panic!("expected DataDirLocked, got {other}"),
            Ok(_) => panic!("a locked directory was opened twice"),
        }
    }
}
