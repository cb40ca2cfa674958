//! Idle polling: after the broker last read something, its runtime's
//! workers keep polling for I/O for a few tens of microseconds before they
//! go to sleep (`idle_poll_us`).
//!
//! Why: a worker with nothing to run sleeps in `epoll_wait`, and the next
//! packet wakes it. On the virtual machines brokers mostly run on, that
//! sleep and wake-up is expensive: the peer's send pays for waking the
//! sleeping thread (an inter-processor interrupt through the hypervisor)
//! and the worker pays for being switched back in. Under a stream of short
//! round trips, such as a subscriber acknowledging its window of QoS 1
//! messages, the pair came once per round trip and took about 40 % of the
//! broker's core (docs/performance.md, "Idle polling"). The Erlang VM's
//! schedulers (busy wait) and Go's runtime (spinning threads) do the same
//! for the same reason. It is off by default (`idle_poll_us = 0`): the
//! polling counts as CPU use, which CPU limits and autoscalers see, and
//! takes time from processes sharing the cores (EMQX turns the Erlang
//! VM's busy wait off for the same reasons).
//!
//! How: one task per runtime worker runs [`run`]. While something was read
//! in the last `window`, the task only yields: a worker whose other tasks
//! are done then polls the runtime's driver without blocking (`epoll_wait`
//! with a zero timeout) and runs the task again, so packets are picked up
//! with no sleep in between. Once nothing was read for `window`, the task
//! dozes and looks again every millisecond; after [`DROWSY`] without
//! reads, every [`DROWSY`]. So a light load (a packet now and then) costs
//! at most `window` per millisecond of one core (5 % at 50 µs), an idle
//! broker about nothing, and a busy one spins only through gaps between
//! reads shorter than `window`.
//!
//! The decision is [`IdlePoll`], a plain state machine tested without a
//! runtime; [`run`] feeds it the broker's count of bytes read.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::broker::{Broker, stopped};

/// The pause between looks once the window has passed without reads.
pub(crate) const DOZE: Duration = Duration::from_millis(1);

/// Quiet for this long, the task looks only this often.
pub(crate) const DROWSY: Duration = Duration::from_millis(100);

/// What the polling task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Yield to the runtime and look again at once.
    Spin,
    /// Sleep this long, then look again.
    Sleep(Duration),
}

/// When to spin and when to sleep, from a counter that grows with the
/// broker's reads.
#[derive(Debug)]
pub(crate) struct IdlePoll {
    window: Duration,
    seen: u64,
    last_activity: Instant,
}

impl IdlePoll {
    /// Spins for `window` after each change of the counter, which reads
    /// `count` at `now`.
    pub(crate) fn new(window: Duration, count: u64, now: Instant) -> Self {
        Self {
            window,
            seen: count,
            last_activity: now,
        }
    }

    /// The counter reads `count` at `now`: what to do next.
    pub(crate) fn next(&mut self, count: u64, now: Instant) -> Next {
        if count != self.seen {
            self.seen = count;
            self.last_activity = now;
        }
        let quiet = now.saturating_duration_since(self.last_activity);
        if quiet < self.window {
            Next::Spin
        } else if quiet < DROWSY {
            Next::Sleep(DOZE)
        } else {
            Next::Sleep(DROWSY)
        }
    }
}

/// Polls for `window` after each read the broker counts, until shutdown.
pub(super) async fn run(
    broker: Arc<Broker>,
    window: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let activity = || broker.metrics.bytes_received.load(Ordering::Relaxed);
    let mut poll = IdlePoll::new(window, activity(), Instant::now());
    // Spins for the first window after start-up: harmless.
    loop {
        match poll.next(activity(), Instant::now()) {
            Next::Spin => {
                // A watch's version check is one atomic load. Stops as
                // `stopped` does: on the signal, or once its sender is gone.
                let stop = match shutdown.has_changed() {
                    Ok(changed) => changed && *shutdown.borrow_and_update(),
                    Err(_closed) => true,
                };
                if stop {
                    return;
                }
                tokio::task::yield_now().await;
            }
            Next::Sleep(pause) => {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stopped(&mut shutdown) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_micros(50);

    fn at(start: Instant, micros: u64) -> Instant {
        start + Duration::from_micros(micros)
    }

    #[test]
    fn spins_while_reads_keep_coming_within_the_window() {
        let start = Instant::now();
        let mut poll = IdlePoll::new(WINDOW, 0, start);
        assert_eq!(poll.next(0, at(start, 10)), Next::Spin);
        assert_eq!(poll.next(7, at(start, 40)), Next::Spin);
        // 80 µs after start, but only 40 after the last read.
        assert_eq!(poll.next(7, at(start, 80)), Next::Spin);
        assert_eq!(poll.next(9, at(start, 120)), Next::Spin);
        assert_eq!(poll.next(9, at(start, 169)), Next::Spin);
    }

    #[test]
    fn dozes_once_the_window_passes_without_reads() {
        let start = Instant::now();
        let mut poll = IdlePoll::new(WINDOW, 5, start);
        assert_eq!(poll.next(5, at(start, 50)), Next::Sleep(DOZE));
        assert_eq!(poll.next(5, at(start, 60_000)), Next::Sleep(DOZE));
        // A read seen after a doze: spin again, from when it was seen.
        assert_eq!(poll.next(6, at(start, 61_000)), Next::Spin);
        assert_eq!(poll.next(6, at(start, 61_049)), Next::Spin);
        assert_eq!(poll.next(6, at(start, 61_050)), Next::Sleep(DOZE));
    }

    #[test]
    fn a_quiet_broker_looks_only_every_drowsy_period() {
        let start = Instant::now();
        let mut poll = IdlePoll::new(WINDOW, 0, start);
        assert_eq!(poll.next(0, at(start, 99_999)), Next::Sleep(DOZE));
        assert_eq!(poll.next(0, at(start, 100_000)), Next::Sleep(DROWSY));
        assert_eq!(poll.next(0, at(start, 5_000_000)), Next::Sleep(DROWSY));
        assert_eq!(poll.next(1, at(start, 5_100_000)), Next::Spin);
    }

    #[test]
    fn a_clock_read_before_the_last_read_counts_as_no_quiet() {
        let start = Instant::now();
        let mut poll = IdlePoll::new(WINDOW, 0, at(start, 100));
        assert_eq!(poll.next(0, start), Next::Spin);
    }
}
