//! [`SledStore`]: a [`SessionStore`] on disk, in sled 0.34.
//!
//! The data directory holds a marker file, `SCHEMA`, naming the schema
//! version, and sled's own files under `sled/`. All records live in sled's
//! default tree under the keys described in `keys`, in the binary format
//! described in `record`. Writes go through one committer thread that
//! batches concurrent writers into one atomic sled batch and one flush
//! (group commit, see `committer`), and a flusher thread makes them durable.
//!
//! sled 0.34 stops recovery at the first damaged log entry and opens with
//! what came before, without an error. Opening detects a store that lost
//! its schema record this way (the marker file says there should be one);
//! it cannot detect a store that lost only its most recent writes, which
//! is what a crash between flushes looks like as well.

mod apply;
mod backlog;
mod committer;
mod flusher;
mod keys;
mod open;

mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use tern_codec::ByteString;

use self::apply::{client_id, corrupt};
use self::backlog::Backlog;
pub use self::committer::CommitStats;
use self::committer::{Counters, Job};
use self::keys::Key;
use crate::session::Queued;
use crate::store::record;
use crate::store::{Durability, Expired, Op, Pending, SessionStore, StoreSummary, StoredSession};
use crate::{Message, StoreError, Timestamp};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Settings of a [`SledStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SledConfig {
    /// What is on disk when a write completes. Default: [`Durability::Flush`].
    pub durability: Durability,
    /// Bytes of sled's page cache. Default: 64 MiB.
    pub cache_capacity: u64,
    /// Most jobs combined into one commit group. Default: 1024.
    pub max_group_jobs: usize,
    /// Writes that may wait for the committer before
    /// [`SessionStore::ready`] asks callers to wait (back-pressure when
    /// the disk cannot keep up). A write itself never blocks. Default: 4096.
    pub queue_depth: usize,
}

impl Default for SledConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Flush,
            cache_capacity: 64 * 1024 * 1024,
            max_group_jobs: 1024,
            queue_depth: 4096,
        }
    }
}

/// A session store in a data directory; see the module docs.
///
/// [`SessionStore::write`] hands the write to the committer thread and
/// returns at once, never blocking, even with a lock held on an async
/// worker. Back-pressure is explicit: once `queue_depth` writes wait,
/// [`SessionStore::ready`] completes only when the committer has caught
/// up, and callers await it (outside their locks) before taking on more
/// work. Reads go to sled directly. Dropping the store flushes and stops its committer
/// and flusher threads; [`SledStore::close`] does the same and reports a
/// failure.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    path: PathBuf,
    jobs: Option<Sender<Job>>,
    committer: Option<JoinHandle<Result<(), StoreError>>>,
    stats: Arc<Counters>,
    backlog: Arc<Backlog>,
}

impl SledStore {
    /// Opens the store in `path`, creating the directory and an empty store
    /// if needed. A directory another process has open, a damaged store, a
    /// store of another schema version and a path that cannot be written
    /// are errors, never panics.
    pub fn open(path: impl AsRef<Path>, config: SledConfig) -> Result<Self, StoreError> {
        open::open(path.as_ref(), config)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counters of the group commit: how many writes shared how many
    /// batches and syncs.
    pub fn commit_stats(&self) -> CommitStats {
        self.stats.snapshot()
    }

    /// Flushes everything and stops the committer and flusher threads.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), StoreError> {
        self.jobs = None;
        match self.committer.take() {
            Some(handle) => handle.join().unwrap_or(Err(StoreError::Closed)),
            None => Ok(()),
        }
    }

    fn submit<T>(
        &self,
        job: impl FnOnce(futures::channel::oneshot::Sender<Result<T, StoreError>>) -> Job,
    ) -> Pending<T> {
        let (reply, pending) = Pending::channel();
        let Some(jobs) = &self.jobs else {
            return Pending::ready(Err(StoreError::Closed));
        };
        self.backlog.added();
        if jobs.send(job(reply)).is_err() {
            self.backlog.removed(1);
            return Pending::ready(Err(StoreError::Closed));
        }
        pending
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(sled::IVec, sled::IVec), StoreError>> {
        self.db
            .scan_prefix(prefix)
            .map(|item| item.map_err(sled_error))
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        // A failure here has nowhere to go; `close` reports it.
        let _ = self.stop();
    }
}

impl SessionStore for SledStore {
    fn write(&self, ops: Vec<Op>) -> Pending<()> {
        self.submit(|reply| Job::Write(ops, reply))
    }

    fn expire(&self, now: Timestamp) -> Pending<Expired> {
        self.submit(|reply| Job::Expire(now, reply))
    }

    fn flush(&self) -> Pending<()> {
        self.submit(Job::Flush)
    }

    fn ready(&self) -> Pending<()> {
        if self.jobs.is_none() {
            return Pending::ready(Err(StoreError::Closed));
        }
        self.backlog.ready()
    }

    fn load_session(&self, client_id: &str) -> Result<Option<StoredSession>, StoreError> {
        self.read_session(client_id)
            .map_err(|error| error.at_path(&self.path))
    }

    fn client_ids(&self) -> Result<Vec<ByteString>, StoreError> {
        self.read_client_ids()
            .map_err(|error| error.at_path(&self.path))
    }

    fn retained(&self) -> Result<Vec<Message>, StoreError> {
        self.read_retained()
            .map_err(|error| error.at_path(&self.path))
    }

    fn verify(&self) -> Result<StoreSummary, StoreError> {
        verify::verify(&self.db).map_err(|error| error.at_path(&self.path))
    }
}

impl SledStore {
    fn read_session(&self, client_id: &str) -> Result<Option<StoredSession>, StoreError> {
        let key = keys::session(client_id)?;
        let Some(value) = self.db.get(&key).map_err(sled_error)? else {
            return Ok(None);
        };
        let record = record::decode_session(ByteString::from(client_id), &value)
            .map_err(|detail| corrupt(&key, detail))?;
        let mut queue = Vec::new();
        for item in self.scan_prefix(&keys::client_prefix(keys::QUEUED, client_id)?) {
            let (key, value) = item?;
            let Some(Key::Queued(_, seq)) = keys::parse(&key) else {
                return Err(corrupt(&key, "not a queued-message key".into()));
            };
            let message = record::decode_message(&value).map_err(|detail| corrupt(&key, detail))?;
            queue.push(Queued { seq, message });
        }
        let mut in_flight = Vec::new();
        for item in self.scan_prefix(&keys::client_prefix(keys::IN_FLIGHT, client_id)?) {
            let (key, value) = item?;
            let Some(Key::InFlight(_, packet_id)) = keys::parse(&key) else {
                return Err(corrupt(&key, "not an in-flight key".into()));
            };
            let entry = record::decode_in_flight(&value).map_err(|detail| corrupt(&key, detail))?;
            in_flight.push((packet_id, entry));
        }
        let mut incoming_qos2 = Vec::new();
        for item in self.scan_prefix(&keys::client_prefix(keys::INCOMING, client_id)?) {
            let (key, _) = item?;
            let Some(Key::Incoming(_, packet_id)) = keys::parse(&key) else {
                return Err(corrupt(
                    &key,
                    "not an incoming packet identifier key".into(),
                ));
            };
            incoming_qos2.push(packet_id);
        }
        Ok(Some(StoredSession {
            record,
            queue,
            in_flight,
            incoming_qos2,
        }))
    }

    fn read_client_ids(&self) -> Result<Vec<ByteString>, StoreError> {
        let mut ids = Vec::new();
        for item in self.scan_prefix(&[keys::SESSION]) {
            let (key, _) = item?;
            let Some(Key::Session(client)) = keys::parse(&key) else {
                return Err(corrupt(&key, "not a session key".into()));
            };
            ids.push(client_id(client).map_err(|detail| corrupt(&key, detail))?);
        }
        // Keys order clients by length first; the trait promises byte order.
        ids.sort_unstable();
        Ok(ids)
    }

    fn read_retained(&self) -> Result<Vec<Message>, StoreError> {
        let mut messages = Vec::new();
        for item in self.scan_prefix(&[keys::RETAINED]) {
            let (key, value) = item?;
            messages.push(record::decode_message(&value).map_err(|detail| corrupt(&key, detail))?);
        }
        Ok(messages)
    }
}

/// Maps a sled error met while the store is open.
fn sled_error(error: sled::Error) -> StoreError {
    match error {
        // The path is filled in by `StoreError::at_path` where it is known.
        sled::Error::Io(error) => StoreError::io("read or write the session store in", "", error),
        sled::Error::Corruption { at, .. } => StoreError::Corrupt {
            path: PathBuf::new(),
            detail: format!("sled found a damaged log entry at {at:?}"),
        },
        other => StoreError::Engine(other.to_string()),
    }
}
