//! The accept loop of one listener. It tracks the tasks of the connections
//! it accepted (a `TaskTracker`: no allocation per task, unlike a
//! `JoinSet`'s entry, which every idle connection would hold) and waits
//! for them before it ends.
//!
//! Floods and exhaustion:
//! - with `max_connections` set, each connection holds a permit of the
//!   broker's semaphore (shared by every listener) for its whole life, and
//!   one of its listener's own semaphore when the listener has a limit; a
//!   connection accepted when either has none left is closed at once,
//!   before anything is read, and counted (`connections_refused`);
//! - an accept that fails for lack of resources (EMFILE, ENFILE, ENOBUFS:
//!   file descriptors or memory exhausted) makes the loop pause
//!   [`ACCEPT_BACKOFF`] instead of spinning, then accept again; errors of
//!   one aborted connection do not pause it. Failures are logged at most
//!   once per [`LOG_INTERVAL`], with the number left unlogged;
//! - with `max_connection_rate` set, a connection beyond the rate (over all
//!   listeners, bursts of one second's worth) is closed at once, before
//!   anything is read, and counted (`connections_rate_limited`);
//! - a socket that never sends CONNECT is closed after `connect_timeout`
//!   by its own protocol state machine, and one that does not finish its
//!   PROXY header, TLS handshake or WebSocket upgrade in that time by its
//!   transport (`transport`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio_util::task::TaskTracker;

use super::parking::ParkingLot;
use super::transport::{self, Listener};
use crate::broker::{Broker, stopped};
use crate::metrics::add;

/// The pause after an accept failed for lack of resources.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// At most one log line per this interval for each kind of event.
const LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Accepts connections until shutdown, then waits for every one of them
/// to end (they watch the same shutdown signal).
pub(crate) async fn accept_loop(
    socket: TcpListener,
    listener: Arc<Listener>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    lot: Option<Arc<ParkingLot>>,
) {
    let connections = TaskTracker::new();
    let signal = shutdown.clone();
    let mut accept_errors = RateLimited::default();
    let mut refusals = RateLimited::default();
    let mut rate_refusals = RateLimited::default();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let over_rate = broker.connection_rate.as_ref().is_some_and(|bucket| {
                        bucket
                            .lock()
                            .map_or(true, |mut bucket| !bucket.try_take_one(Instant::now()))
                    });
                    if over_rate {
                        drop(stream);
                        add(&broker.metrics.connections_rate_limited, 1);
                        if let Some(unlogged) = rate_refusals.allow(Instant::now()) {
                            tracing::warn!(
                                listener = %listener.name,
                                %peer,
                                limit = broker.config.max_connection_rate,
                                unlogged,
                                "max_connection_rate reached: connection closed"
                            );
                        }
                        continue;
                    }
                    let permits = match take_slots(&broker, &listener) {
                        Ok(permits) => permits,
                        Err(Full { setting, limit }) => {
                            // Closed before reading: the flood costs one
                            // accept, nothing more.
                            drop(stream);
                            add(&broker.metrics.connections_refused, 1);
                            if let Some(unlogged) = refusals.allow(Instant::now()) {
                                tracing::warn!(
                                    listener = %listener.name,
                                    %peer,
                                    limit,
                                    unlogged,
                                    "{setting} reached: connection closed"
                                );
                            }
                            continue;
                        }
                    };
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, %peer, "cannot disable Nagle's algorithm");
                    }
                    let broker = Arc::clone(&broker);
                    let listener = Arc::clone(&listener);
                    let signal = signal.clone();
                    let lot = lot.clone();
                    let task = connection_task(broker, listener, stream, peer, signal, lot, permits);
                    spawn_connection(&connections, task);
                }
                Err(error) => {
                    let exhausted = is_resource_exhaustion(&error);
                    if let Some(unlogged) = accept_errors.allow(Instant::now()) {
                        tracing::warn!(%error, unlogged, exhausted, "accepting a connection failed");
                    }
                    if exhausted {
                        // Out of file descriptors or memory: let some
                        // connections end rather than spin on accept.
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            },
        }
    }
    drop(socket);
    connections.close();
    connections.wait().await;
}

/// The task of one accepted connection; the connection holds its slots
/// until it ends (parked or not).
///
/// Tokio allocates this future whole for every connection, idle or not,
/// for the connection's whole life: it holds only its arguments and a
/// pointer to the phase that runs, the handshakes first, then the
/// connection (see [`transport::Serving`] and the size test below).
async fn connection_task(
    broker: Arc<Broker>,
    listener: Arc<Listener>,
    stream: TcpStream,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    lot: Option<Arc<ParkingLot>>,
    permits: Box<[OwnedSemaphorePermit]>,
) {
    let accepted = transport::accept(broker, listener, stream, peer, shutdown, lot, permits);
    if let Some(serving) = Box::pin(accepted).await {
        serving.await;
    }
}

/// A connection limit with no slot left.
struct Full {
    setting: &'static str,
    limit: i64,
}

/// A slot of the broker-wide and of the listener's own connection limit
/// (those that are set), held by the connection for its whole life; or
/// the limit that is full.
fn take_slots(broker: &Broker, listener: &Listener) -> Result<Box<[OwnedSemaphorePermit]>, Full> {
    let limits = [
        (
            &broker.connection_slots,
            "max_connections",
            broker.config.max_connections,
        ),
        (
            &listener.slots,
            "the listener's max_connections",
            listener.max_connections,
        ),
    ];
    // No allocation when neither limit is set (the default).
    let mut permits = Vec::new();
    for (slots, setting, limit) in limits {
        if let Some(slots) = slots {
            let permit = Arc::clone(slots)
                .try_acquire_owned()
                .map_err(|_| Full { setting, limit })?;
            permits.push(permit);
        }
    }
    Ok(permits.into_boxed_slice())
}

/// Whether an accept error means the process or system ran out of
/// something (then retrying at once would spin), rather than one
/// connection failing before it was accepted.
fn is_resource_exhaustion(error: &io::Error) -> bool {
    !matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::PermissionDenied
    )
}

/// Lets an event be logged at most once per [`LOG_INTERVAL`], counting
/// the occurrences in between.
#[derive(Debug, Default)]
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    /// `Some(occurrences not logged since the last line)` if this one may
    /// be logged at `now`; `None` if it is suppressed.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_INTERVAL);
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Spawns a connection's task on `tracker`. A panic in it is a bug,
/// whatever the client sent: it is logged, and the other connections go
/// on.
pub(super) fn spawn_connection(
    tracker: &TaskTracker,
    task: impl Future<Output = ()> + Send + 'static,
) {
    let logged = std::panic::AssertUnwindSafe(task)
        .catch_unwind()
        .map(|result| {
            if result.is_err() {
                tracing::error!("a connection task panicked; this is a bug, please report it");
            }
        });
    tracker.spawn(logged);
}

#[cfg(test)]
mod tests {
    use super::super::connection;
    use super::super::transport::proxy::Prefixed;
    use super::*;

    /// Bound of [`connection_task`]'s future, in bytes (see the test):
    /// it holds its arguments and a pointer to the phase that runs. 192
    /// bytes in a debug build on 2026-12-07 (rustc 1.95).
    const TASK_LIMIT: usize = 256;
    /// Bound of the future serving a plain TCP connection past its
    /// handshakes ([`connection::serve`]), in bytes: its state and the
    /// largest state of its loop. 1,464 in a debug build on 2026-12-07;
    /// the task and this together were 2,592 on 2026-11-25, and 16,256
    /// before the profile of docs/performance.md, "Idle connections".
    const SERVING_LIMIT: usize = 1_600;
    /// Bound of a parked connection's state ([`connection::Parked`], boxed
    /// in its slot of the parking lot), in bytes: what an idle plain TCP
    /// connection keeps of its own once parked, instead of the task and
    /// the serving future. 248 in a debug build on 2026-12-07 (368 before
    /// the protocol's rare parts shared one box and the takeover channels
    /// left); at most 256 keeps it in jemalloc's 256-byte size class (the
    /// next is 320).
    const PARKED_LIMIT: usize = 256;

    #[test]
    fn logs_at_most_once_per_interval_and_counts_the_rest() {
        let mut limit = RateLimited::default();
        let start = Instant::now();
        assert_eq!(limit.allow(start), Some(0));
        for millis in [1, 10, 999] {
            assert_eq!(limit.allow(start + Duration::from_millis(millis)), None);
        }
        assert_eq!(limit.allow(start + LOG_INTERVAL), Some(3));
        assert_eq!(limit.allow(start + LOG_INTERVAL), None);
    }

    /// The size of a future `make` returns, without running it.
    fn future_size<A, B, C, D, E, G, H, F: Future>(
        _make: impl FnOnce(A, B, C, D, E, G, H) -> F,
    ) -> usize {
        size_of::<F>()
    }

    fn serving_size<A, B, C, D, E, G, F: Future>(
        _make: impl FnOnce(A, B, C, D, E, G) -> F,
    ) -> usize {
        size_of::<F>()
    }

    /// Tokio allocates the whole future of every connection's task when it
    /// is spawned, and an idle connection holds it, and the future serving
    /// it, for its whole life: together they were 16 KB (a TLS or WebSocket
    /// connection's state inline, large arguments stored twice) before
    /// docs/performance.md's "Idle connections" profile. A future that
    /// grows past these bounds makes every idle connection larger: box the
    /// large, rare state instead.
    #[test]
    fn the_task_of_a_connection_stays_small() {
        let task = future_size(connection_task);
        let serving = serving_size(connection::serve::<Prefixed<TcpStream>>);
        let parked = size_of::<connection::Parked>();
        println!(
            "connection task {task} bytes, serving a TCP connection {serving} bytes, \
             parked {parked} bytes"
        );
        assert!(
            parked <= PARKED_LIMIT,
            "a parked connection takes {parked} bytes, more than {PARKED_LIMIT}"
        );
        assert!(
            task <= TASK_LIMIT,
            "a connection's task takes {task} bytes, more than {TASK_LIMIT}"
        );
        assert!(
            serving <= SERVING_LIMIT,
            "serving a connection takes {serving} bytes, more than {SERVING_LIMIT}"
        );
    }

    #[test]
    fn exhaustion_backs_off_but_an_aborted_connection_does_not() {
        let emfile = io::Error::from_raw_os_error(24);
        assert!(is_resource_exhaustion(&emfile));
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert!(!is_resource_exhaustion(&aborted));
    }
}
