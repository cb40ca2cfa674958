//! Group commit: one thread applies every write, another makes them durable.
//!
//! Writers send jobs over an unbounded channel and get a [`Pending`] back
//! (the bound is the [`Backlog`](super::backlog::Backlog) callers wait on). The
//! *committer* takes the first job, then every job already waiting (up to a
//! limit): that is one *group*. It builds the whole group into one overlay
//! and applies it as one atomic sled batch. Then, with
//! [`Durability::Flush`], it hands the group's replies to the *flusher*
//! thread and goes on with the next group; the flusher takes every group
//! handed over so far, flushes once, and completes all their `Pending`s.
//! One sync thus covers every write applied before it started, and
//! applying and syncing overlap: under load one flush covers many writes
//! and the cost of a sync is shared instead of paid per message. With
//! [`Durability::Periodic`] and [`Durability::None`] the committer completes
//! the `Pending`s after applying, and the flusher syncs on its own schedule.
//!
//! Being the only writer also keeps the indexes exact: reads of old values
//! (to delete their index entries) cannot race with another writer.
//!
//! [`Pending`]: crate::Pending

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};

use super::backlog::Backlog;
use std::thread::JoinHandle;

use futures::channel::oneshot;

use super::apply::{Overlay, Staging};
use super::sled_error;
use crate::store::{Durability, Expired, Op};
use crate::{StoreError, Timestamp};

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Work for the committer.
pub(super) enum Job {
    Write(Vec<Op>, Reply<()>),
    Expire(Timestamp, Reply<Expired>),
    Flush(Reply<()>),
}

/// A job's outcome, held until its group is as durable as promised.
pub(super) enum Outcome {
    Write(Reply<()>, Result<(), StoreError>),
    Expire(Reply<Expired>, Result<Expired, StoreError>),
    /// An explicit flush: completed by the flusher after a sync.
    Flush(Reply<()>),
}

impl Outcome {
    /// Completes the writer's `Pending`, with `failure` if the group's
    /// apply or sync failed. A writer that stopped waiting dropped its
    /// receiver: then there is nothing to do.
    pub(super) fn complete(self, failure: Option<&StoreError>, path: &std::path::Path) {
        let fail = |result: Result<(), StoreError>| match failure {
            Some(error) => Err(error.clone()),
            None => result.map_err(|error| error.at_path(path)),
        };
        match self {
            Self::Write(reply, result) => {
                let _ = reply.send(fail(result));
            }
            Self::Flush(reply) => {
                let _ = reply.send(fail(Ok(())));
            }
            Self::Expire(reply, result) => {
                let result = match failure {
                    Some(error) => Err(error.clone()),
                    None => result.map_err(|error| error.at_path(path)),
                };
                let _ = reply.send(result);
            }
        }
    }
}

pub(super) struct Committer {
    pub(super) db: sled::Db,
    /// The data directory, for error messages.
    pub(super) path: PathBuf,
    pub(super) durability: Durability,
    pub(super) jobs: Receiver<Job>,
    pub(super) max_group_jobs: usize,
    /// Set after each applied batch; cleared by the flusher before a sync.
    pub(super) dirty: Arc<AtomicBool>,
    /// Groups whose replies wait for a sync.
    pub(super) flusher: Option<SyncSender<Vec<Outcome>>>,
    pub(super) flusher_thread: Option<JoinHandle<Result<(), StoreError>>>,
    pub(super) stats: Arc<Counters>,
    /// Jobs submitted and not yet applied.
    pub(super) backlog: Arc<Backlog>,
}

/// What the committer and flusher have done, for [`CommitStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) writes: AtomicU64,
    pub(super) groups: AtomicU64,
    pub(super) syncs: AtomicU64,
}

impl Counters {
    pub(super) fn snapshot(&self) -> CommitStats {
        CommitStats {
            writes: self.writes.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
        }
    }
}

/// Counters of the group commit since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Writes applied (including refused ones).
    pub writes: u64,
    /// Groups committed: atomic sled batches.
    pub groups: u64,
    /// Syncs to disk (sled flushes).
    pub syncs: u64,
}

impl Committer {
    /// Runs until every sender is gone; then stops the flusher, which
    /// syncs a last time, and returns its verdict.
    pub(super) fn run(mut self) -> Result<(), StoreError> {
        while let Ok(first) = self.jobs.recv() {
            let mut group = vec![first];
            while group.len() < self.max_group_jobs {
                match self.jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let count = group.len();
            self.commit(group);
            self.backlog.removed(count);
        }
        self.backlog.wake_all();
        self.flusher = None;
        match self.flusher_thread.take() {
            Some(handle) => handle.join().unwrap_or(Err(StoreError::Closed)),
            None => Ok(()),
        }
    }

    fn commit(&mut self, group: Vec<Job>) {
        let tree: &sled::Tree = &self.db;
        let mut overlay = Overlay::new();
        let mut outcomes = Vec::with_capacity(group.len());
        self.stats.groups.fetch_add(1, Ordering::Relaxed);
        for job in group {
            outcomes.push(match job {
                Job::Write(ops, reply) => {
                    self.stats.writes.fetch_add(1, Ordering::Relaxed);
                    Outcome::Write(reply, Staging::new(tree, &mut overlay).write(&ops))
                }
                Job::Expire(now, reply) => {
                    Outcome::Expire(reply, Staging::new(tree, &mut overlay).expire(now))
                }
                Job::Flush(reply) => Outcome::Flush(reply),
            });
        }

        if !overlay.is_empty() {
            let mut batch = sled::Batch::default();
            for (key, value) in overlay {
                match value {
                    Some(value) => batch.insert(key, value),
                    None => batch.remove(key),
                }
            }
            if let Err(error) = self.db.apply_batch(batch) {
                let failure = sled_error(error).at_path(&self.path);
                for outcome in outcomes {
                    outcome.complete(Some(&failure), &self.path);
                }
                return;
            }
            self.dirty.store(true, Ordering::Release);
        }

        let (now, later): (Vec<Outcome>, Vec<Outcome>) =
            outcomes.into_iter().partition(|outcome| match outcome {
                Outcome::Flush(_) => false,
                // A failed write applied nothing: nothing to wait for.
                Outcome::Write(_, result) => {
                    result.is_err() || self.durability != Durability::Flush
                }
                Outcome::Expire(_, result) => {
                    result.is_err() || self.durability != Durability::Flush
                }
            });
        for outcome in now {
            outcome.complete(None, &self.path);
        }
        if later.is_empty() {
            return;
        }
        let sent = match &self.flusher {
            Some(flusher) => flusher.send(later),
            None => Err(std::sync::mpsc::SendError(later)),
        };
        if let Err(std::sync::mpsc::SendError(outcomes)) = sent {
            for outcome in outcomes {
                outcome.complete(Some(&StoreError::Closed), &self.path);
            }
        }
    }
}
