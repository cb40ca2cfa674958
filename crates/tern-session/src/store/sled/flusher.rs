//! The flusher thread: makes applied writes durable and completes the
//! writers waiting for it (see `committer` for the whole design).
//!
//! It syncs when groups wait for it (taking every group waiting at once,
//! so one sync covers them all), when [`Durability::Periodic`]'s interval
//! has passed with unsynced writes, and a last time when it stops.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};

use super::committer::{Counters, Outcome};
use super::sled_error;
use crate::StoreError;
use crate::store::Durability;

pub(super) struct Flusher {
    pub(super) db: sled::Db,
    pub(super) path: PathBuf,
    pub(super) durability: Durability,
    pub(super) waiting: Receiver<Vec<Outcome>>,
    pub(super) dirty: Arc<AtomicBool>,
    /// A failed background sync, reported to the next flush or close.
    pub(super) background_error: Option<StoreError>,
    pub(super) stats: Arc<Counters>,
}

impl Flusher {
    /// Runs until the committer stops; returns the last sync's verdict.
    pub(super) fn run(mut self) -> Result<(), StoreError> {
        loop {
            let first = match self.durability {
                Durability::Periodic(interval) => match self.waiting.recv_timeout(interval) {
                    Ok(outcomes) => outcomes,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(error) = self.sync() {
                            self.background_error = Some(error);
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                Durability::Flush | Durability::None => match self.waiting.recv() {
                    Ok(outcomes) => outcomes,
                    Err(_) => break,
                },
            };
            let mut outcomes = first;
            while let Ok(more) = self.waiting.try_recv() {
                outcomes.extend(more);
            }
            let failure = self.sync().err().or_else(|| {
                let explicit = outcomes.iter().any(|o| matches!(o, Outcome::Flush(_)));
                if explicit {
                    self.background_error.take()
                } else {
                    None
                }
            });
            for outcome in outcomes {
                outcome.complete(failure.as_ref(), &self.path);
            }
        }
        self.sync()?;
        self.background_error.take().map_or(Ok(()), Err)
    }

    /// Makes everything applied so far durable, if anything is unsynced.
    fn sync(&mut self) -> Result<(), StoreError> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(error) = self.db.flush() {
                self.dirty.store(true, Ordering::Release);
                return Err(sled_error(error).at_path(&self.path));
            }
        }
        Ok(())
    }
}
