//! [`Backlog`]: how many writes wait for the committer, and the writers
//! waiting for it to shrink.
//!
//! Submitting a write never blocks (the job channel is unbounded), so an
//! async caller holding a lock never stalls a runtime thread. The bound is
//! kept by the callers instead: [`SessionStore::ready`] completes once
//! fewer than `limit` jobs wait, and the broker awaits it outside any lock
//! before it takes more input from a client. Memory is then bounded by
//! `limit` jobs plus what each caller submitted before it checked.
//!
//! [`SessionStore::ready`]: crate::SessionStore::ready

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::committer::Reply;
use crate::Pending;

/// Jobs submitted and not yet applied, and who waits for room.
#[derive(Debug)]
pub(super) struct Backlog {
    waiting: AtomicUsize,
    limit: usize,
    waiters: Mutex<Vec<Reply<()>>>,
}

impl Backlog {
    /// A backlog where callers of [`Backlog::ready`] wait from `limit` jobs.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            waiting: AtomicUsize::new(0),
            limit: limit.max(1),
            waiters: Mutex::new(Vec::new()),
        }
    }

    /// Jobs waiting now.
    pub(super) fn len(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// One job more was submitted.
    pub(super) fn added(&self) {
        self.waiting.fetch_add(1, Ordering::AcqRel);
    }

    /// `count` jobs were applied (or will never be): wake the waiters if
    /// there is room now.
    pub(super) fn removed(&self, count: usize) {
        let before = self.waiting.fetch_sub(count, Ordering::AcqRel);
        debug_assert!(before >= count, "more jobs removed than added");
        if before.saturating_sub(count) < self.limit {
            self.wake_all();
        }
    }

    /// Completes once fewer than `limit` jobs wait.
    pub(super) fn ready(&self) -> Pending<()> {
        if self.len() < self.limit {
            return Pending::ready(Ok(()));
        }
        let (reply, pending) = Pending::channel();
        self.waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reply);
        // The committer may have made room between the check and the push.
        if self.len() < self.limit {
            self.wake_all();
        }
        pending
    }

    /// Completes every waiter (also when the committer stops: they then
    /// meet the closed store on their next write).
    pub(super) fn wake_all(&self) {
        let waiters =
            std::mem::take(&mut *self.waiters.lock().unwrap_or_else(PoisonError::into_inner));
        for waiter in waiters {
            let _ = waiter.send(Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn ready_waits_from_the_limit_and_wakes_below_it() {
        let backlog = Backlog::new(2);
        backlog.added();
        assert!(backlog.ready().now_or_never().is_some(), "room left");
        backlog.added();
        backlog.added();
        let mut waiting = backlog.ready();
        assert!((&mut waiting).now_or_never().is_none(), "full");
        backlog.removed(1);
        assert!((&mut waiting).now_or_never().is_none(), "still 2 waiting");
        backlog.removed(1);
        assert!(matches!(waiting.now_or_never(), Some(Ok(()))));
        assert_eq!(backlog.len(), 1);
    }
}
