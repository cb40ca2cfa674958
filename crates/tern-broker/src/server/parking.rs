//! The parking lot: where idle plain TCP connections wait without a task.
//!
//! Most connections of an IoT fleet are idle most of the time, and a
//! connection waiting in its own task holds that task, its future (room
//! for the connection state and every branch of its wait: a timer, a
//! notification, the shutdown watch, the read) and the runtime's
//! registration of its socket. A connection idle for
//! `park_idle_after_ms` instead hands its state here as a [`Parked`] and
//! its task ends: its socket is registered in this lot's own epoll
//! instance (`mio`), itself awaited by one task, and its keep-alive
//! deadline is a number in its slot (whole seconds since the lot was
//! made, rounded up), swept every [`SWEEP_INTERVAL`].
//!
//! A parked connection resumes, in a new task running the same
//! connection code, when:
//! - its socket is readable (the client sent something, or closed);
//! - something was queued for its session: a message it may be sent now,
//!   or a takeover by another connection (`Broker::parked_wakes`; the
//!   registry's docs say why no wake-up is missed);
//! - its deadline passed (keep-alive; up to two seconds late: the
//!   rounding up and the sweep's interval);
//! - the server shuts down (every parked connection resumes, sees the
//!   shutdown and ends as a running one does).
//!
//! A resumed connection does whatever woke it, as if it had never
//! stopped, and parks again once idle. A stale wake-up (the connection
//! had already resumed, its token reused) only resumes a connection for
//! nothing: it parks again later.
//!
//! The lot owns the tasks of resumed connections (a `TaskTracker`) and
//! waits for them before it ends, after the shutdown.
//!
//! A parked connection's state is boxed: the slab of slots stays small to
//! sweep, and connections move in and out of it, and through the lists
//! taken from it, as pointers.

#![allow(clippy::vec_box)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use super::connection::Parked;
use super::listener::spawn_connection;
use crate::broker::{Broker, stopped};

/// How often parked connections' deadlines are looked at.
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Readiness events taken from the lot's poller per call.
const EVENTS: usize = 1024;
/// Connections resumed between two yields to the runtime.
const RESUME_BATCH: usize = 256;

/// One parked connection: its deadline beside it, so that a sweep reads
/// the slots alone. 16 bytes: the slab's vector of them doubles as it
/// grows, so each byte here is up to two per parked connection.
struct Slot {
    /// [`seconds`] from the lot's epoch to the deadline, rounded up;
    /// [`NEVER`] without one.
    deadline: u32,
    connection: Box<Parked>,
}

/// The deadline of a connection without one (no keep-alive).
const NEVER: u32 = u32::MAX;

/// Whole seconds from `epoch` (the lot's) to `at`, rounded `up` or down,
/// saturated at `u32::MAX` (136 years).
fn seconds(epoch: Instant, at: Instant, up: bool) -> u32 {
    let since = at.saturating_duration_since(epoch);
    let whole = since.as_secs() + u64::from(up && since.subsec_nanos() > 0);
    u32::try_from(whole).unwrap_or(u32::MAX)
}

#[derive(Default)]
struct Slots {
    parked: Slab<Slot>,
    /// Set at shutdown: nothing parks any more.
    closed: bool,
}

/// A connection's place in the lot, its socket registered, while the
/// connection checks that it may park ([`ParkingLot::reserve`]).
pub(crate) struct Reservation<'a> {
    lot: &'a ParkingLot,
    slots: MutexGuard<'a, Slots>,
    token: usize,
    fd: RawFd,
    committed: bool,
}

impl Reservation<'_> {
    /// The token a wake-up for this connection names.
    pub(crate) fn token(&self) -> usize {
        self.token
    }

    /// Parks `connection` here. One whose socket was lost on the way (the
    /// runtime could not let go of it) is resumed at once, to end.
    pub(crate) fn commit(mut self, connection: Box<Parked>) {
        self.committed = true;
        let lost = connection.socket().is_none();
        let deadline = connection
            .deadline()
            .map_or(NEVER, |at| seconds(self.lot.epoch, at, true).min(NEVER - 1));
        let token = self.slots.parked.insert(Slot {
            deadline,
            connection,
        });
        debug_assert_eq!(token, self.token);
        self.lot.broker.metrics.set_parked(self.slots.parked.len());
        if lost {
            self.lot.broker.parked_wakes.wake(token);
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.lot.deregister(self.fd);
        }
    }
}

/// See the module docs.
pub(crate) struct ParkingLot {
    pub broker: Arc<Broker>,
    /// How long a connection is idle before it parks.
    pub after: Duration,
    /// Every connection, parked or not, ends when this says stop.
    pub shutdown: watch::Receiver<bool>,
    registry: Registry,
    /// When the lot was made: deadlines count seconds from it.
    epoch: Instant,
    slots: Mutex<Slots>,
    /// The tasks of resumed connections.
    tasks: TaskTracker,
}

impl std::fmt::Debug for ParkingLot {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ParkingLot")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl ParkingLot {
    /// A lot for connections idle `after`, and the poller its task
    /// ([`ParkingLot::run`]) waits on.
    pub(crate) fn new(
        broker: Arc<Broker>,
        after: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<(Arc<Self>, Poll)> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let lot = Arc::new(Self {
            broker,
            after,
            shutdown,
            registry,
            epoch: Instant::now(),
            slots: Mutex::default(),
            tasks: TaskTracker::new(),
        });
        Ok((lot, poll))
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Room to park the connection of socket `fd`: the socket registered
    /// in the lot's poller (which reports what the socket holds already),
    /// the lot locked until the reservation is committed or dropped.
    /// `None` if the server is shutting down or the socket cannot be
    /// registered: the connection then goes on running.
    pub(crate) fn reserve(&self, fd: RawFd) -> Option<Reservation<'_>> {
        let slots = self.slots();
        if slots.closed {
            return None;
        }
        let token = slots.parked.vacant_key();
        let registered =
            self.registry
                .register(&mut SourceFd(&fd), Token(token), Interest::READABLE);
        if let Err(error) = registered {
            tracing::debug!(%error, "the idle connection could not be parked");
            return None;
        }
        Some(Reservation {
            lot: self,
            slots,
            token,
            fd,
            committed: false,
        })
    }

    fn deregister(&self, fd: RawFd) {
        if let Err(error) = self.registry.deregister(&mut SourceFd(&fd)) {
            tracing::debug!(%error, "a parked socket could not be deregistered");
        }
    }

    /// Takes the connections parked under `tokens` (those still there).
    fn take(&self, tokens: impl IntoIterator<Item = usize>) -> Vec<Box<Parked>> {
        self.take_from(&mut self.slots(), tokens)
    }

    /// Takes the connections whose deadline is at or before `now`.
    fn take_due(&self, now: Instant) -> Vec<Box<Parked>> {
        let now = seconds(self.epoch, now, false);
        let mut slots = self.slots();
        let due: Vec<usize> = slots
            .parked
            .iter()
            .filter(|(_, slot)| slot.deadline <= now)
            .map(|(token, _)| token)
            .collect();
        self.take_from(&mut slots, due)
    }

    fn take_from(
        &self,
        slots: &mut Slots,
        tokens: impl IntoIterator<Item = usize>,
    ) -> Vec<Box<Parked>> {
        let taken: Vec<_> = tokens
            .into_iter()
            .filter_map(|token| slots.parked.try_remove(token))
            .map(|slot| slot.connection)
            .collect();
        if !taken.is_empty() {
            self.broker.metrics.set_parked(slots.parked.len());
        }
        taken
    }

    /// Closes the lot and takes every parked connection.
    fn close(&self) -> Vec<Box<Parked>> {
        let mut slots = self.slots();
        slots.closed = true;
        let taken = slots.parked.drain().map(|slot| slot.connection).collect();
        drop(slots);
        self.broker.metrics.set_parked(0);
        taken
    }

    /// Resumes `connection` in a task of its own.
    fn resume(self: &Arc<Self>, connection: Box<Parked>) {
        if let Some(fd) = connection.socket().map(AsRawFd::as_raw_fd) {
            self.deregister(fd);
        }
        connection.mark_resumed();
        spawn_connection(&self.tasks, connection.resume(Arc::clone(self)));
    }

    /// Resumes `connections`, letting other tasks run after every
    /// [`RESUME_BATCH`]: a message to a million parked subscribers must not
    /// hold a worker thread for seconds. (A connection taken from its slot
    /// and not resumed yet loses nothing: what woke it stays in its
    /// session and channels for its new task to see.)
    async fn resume_all(self: &Arc<Self>, connections: Vec<Box<Parked>>) {
        for (index, connection) in connections.into_iter().enumerate() {
            if index > 0 && index % RESUME_BATCH == 0 {
                tokio::task::yield_now().await;
            }
            self.resume(connection);
        }
    }

    /// Waits for parked sockets to become readable, for wake-ups and for
    /// deadlines, resuming the connections concerned, until shutdown;
    /// then resumes every parked connection and waits for every resumed
    /// one to end.
    pub(crate) async fn run(self: Arc<Self>, poll: Poll) {
        let mut shutdown = self.shutdown.clone();
        match watch_poller(poll) {
            Ok(poll) => self.serve(poll, &mut shutdown).await,
            Err(error) => {
                // Nothing can park; connections keep their tasks.
                tracing::error!(%error, "the parking lot cannot watch its poller: idle connections will not be parked");
                self.close();
                stopped(&mut shutdown).await;
            }
        }
        let parked = self.close();
        self.resume_all(parked).await;
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn serve(
        self: &Arc<Self>,
        mut poll: AsyncFd<Poll>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut events = Events::with_capacity(EVENTS);
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wakes = Arc::clone(&self.broker.parked_wakes);
        loop {
            tokio::select! {
                () = stopped(shutdown) => return,
                ready = poll.readable_mut() => {
                    let mut guard = match ready {
                        Ok(guard) => guard,
                        Err(error) => {
                            tracing::error!(%error, "the parking lot's poller failed: idle connections will not be parked");
                            return;
                        }
                    };
                    // Until the poller has nothing more: only then may its
                    // readiness be cleared without missing an event.
                    loop {
                        events.clear();
                        if let Err(error) = guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                            if error.kind() != io::ErrorKind::Interrupted {
                                tracing::error!(%error, "the parking lot's poller failed: idle connections will not be parked");
                                return;
                            }
                            continue;
                        }
                        if events.is_empty() {
                            guard.clear_ready();
                            break;
                        }
                        let ready = self.take(events.iter().map(|event| event.token().0));
                        self.resume_all(ready).await;
                    }
                }
                () = wakes.notify.notified() => {
                    let woken = self.take(wakes.take());
                    self.resume_all(woken).await;
                }
                _ = sweep.tick() => {
                    let due = self.take_due(Instant::now());
                    self.resume_all(due).await;
                }
            }
        }
    }
}

/// The lot's poller, registered with the runtime: readable when a parked
/// socket is.
#[allow(unsafe_code)]
fn watch_poller(poll: Poll) -> io::Result<AsyncFd<Poll>> {
    // SAFETY: the epoll descriptor is owned by `poll`, which the `AsyncFd`
    // owns until it is dropped and which is only ever polled through it,
    // never replaced or closed: the descriptor stays open and the same for
    // the `AsyncFd`'s whole life.
    let watched = unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) };
    watched.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_two_words() {
        assert_eq!(size_of::<Slot>(), 16);
    }

    #[test]
    fn deadlines_round_up_and_the_sweep_rounds_down() {
        let epoch = Instant::now();
        let at = |millis| epoch + Duration::from_millis(millis);
        // A deadline is never early: 10.3 s is due from 11 s on.
        assert_eq!(seconds(epoch, at(10_300), true), 11);
        assert_eq!(seconds(epoch, at(10_000), true), 10);
        assert_eq!(seconds(epoch, at(10_999), false), 10);
        assert_eq!(seconds(at(5_000), epoch, true), 0);
    }
}
