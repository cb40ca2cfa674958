//! The tasks of a run: publishers, subscribers, and idle connections (a
//! subscriber with no subscription). Each task owns one [`Link`]; they meet
//! only in [`Shared`] counters and the [`Phase`] of the run.
//!
//! Closed loop (`--inflight N`): a publisher stops while N of its messages
//! are published but not yet delivered. Subscribers credit each publisher
//! once per read batch (one atomic add per publisher seen in the batch). A
//! publisher whose window is full waits until a quarter of it is free again
//! and asks to be woken only then (`wake_at`), so that it publishes in
//! bursts and neither side pays a wake-up and a system call per message. With several receivers per message (fan-out) a message counts
//! as delivered when `receivers` receipts have come back, on average. A
//! message the broker drops (QoS 0 under overload) would close the window
//! for good, so a publisher whose window has not moved for a second writes
//! off what is outstanding and counts a stall.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytestring::ByteString;
use tern_client::Event;
use tern_codec::{Publish, QoS};
use tokio::sync::{Notify, watch};
use tokio::time::{Duration, Instant, sleep_until};

use super::error::BenchError;
use super::link::{Link, WRITE_HIGH_WATER};
use super::payload::{PayloadWriter, now_ns};
use super::tracker::Tracker;

/// How long a closed window may stay shut before its messages are written off.
const STALL_AFTER: Duration = Duration::from_secs(1);

/// Where a run is. Tasks watch it; only the run's owner changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Connections and subscriptions are being set up.
    Setup,
    /// Publishers publish.
    Publishing,
    /// Publishers have stopped; subscribers take what is still coming.
    Draining,
    /// Everybody disconnects.
    Done,
}

/// The counters of one publisher, shared with the subscribers that credit it.
#[derive(Debug)]
pub struct PublisherCell {
    /// Messages published so far.
    pub sent: AtomicU64,
    /// Receipts of its messages by subscribers of this run.
    pub delivered: AtomicU64,
    /// `delivered` at which the publisher wants waking (`u64::MAX`: never).
    pub wake_at: AtomicU64,
    /// Woken when `delivered` reaches `wake_at`.
    pub wake: Notify,
}

impl Default for PublisherCell {
    fn default() -> Self {
        Self {
            sent: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
        }
    }
}

/// What every task of a run shares.
#[derive(Debug)]
pub struct Shared {
    /// One cell per publisher, by index.
    pub publishers: Box<[PublisherCell]>,
    /// Messages received by all subscribers.
    pub received: AtomicU64,
    /// Connections that failed.
    pub errors: AtomicU64,
    /// Connections established.
    pub connected: AtomicU64,
    /// Subscribers credit publishers (closed loop is on).
    pub credit: bool,
}

/// How one publisher publishes.
#[derive(Debug, Clone)]
pub struct PublisherPlan {
    /// Its index in the run.
    pub index: u32,
    /// The run id stamped into payloads.
    pub run: u32,
    /// The topic it publishes to.
    pub topic: ByteString,
    /// QoS of its messages.
    pub qos: QoS,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages per second, or as fast as allowed.
    pub rate: Option<f64>,
    /// Stop after this many messages.
    pub limit: Option<u64>,
    /// Closed loop: most messages not yet delivered.
    pub inflight: Option<u64>,
    /// Receipts that make one message delivered; 0 counts acknowledgments
    /// instead (no subscriber in the run).
    pub receivers: u64,
}

/// What a publisher did.
#[derive(Debug, Default)]
pub struct PublisherOutcome {
    /// Messages published.
    pub sent: u64,
    /// QoS 1 and 2 messages the broker acknowledged.
    pub acked: u64,
    /// Acknowledgments with a failure reason code.
    pub refused: u64,
    /// Times the closed-loop window was written off.
    pub stalls: u64,
    /// Why the connection failed, if it did.
    pub error: Option<BenchError>,
}

/// Publishes by `plan` until the phase leaves [`Phase::Publishing`], then
/// waits for outstanding acknowledgments and disconnects.
pub async fn publisher(
    mut link: Link,
    plan: PublisherPlan,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> PublisherOutcome {
    let mut outcome = PublisherOutcome::default();
    let result = publish_loop(&mut link, &plan, &shared, &mut phase, &mut outcome).await;
    let result = match result {
        Ok(()) => link.close().await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        shared.errors.fetch_add(1, Ordering::Relaxed);
        outcome.error = Some(error);
    }
    outcome
}

async fn publish_loop(
    link: &mut Link,
    plan: &PublisherPlan,
    shared: &Shared,
    phase: &mut watch::Receiver<Phase>,
    outcome: &mut PublisherOutcome,
) -> Result<(), BenchError> {
    let cell = &shared.publishers[plan.index as usize];
    let mut payloads = PayloadWriter::new(plan.run, plan.index, plan.size);
    // Wait for the start; a closed channel means the run is over.
    let _ = phase.wait_for(|phase| *phase >= Phase::Publishing).await;
    let start = Instant::now();
    let mut forgiven = 0;
    // Set when the window fills; cleared when a quarter of it is free.
    let mut refilling = false;
    let mut last_credit = (0, start);
    loop {
        let now = Instant::now();
        let publishing = *phase.borrow() == Phase::Publishing
            && plan.limit.is_none_or(|limit| payloads.count() < limit);
        let credit = match plan.receivers {
            0 => outcome.acked,
            receivers => cell.delivered.load(Ordering::Acquire) / receivers,
        };
        if credit != last_credit.0 {
            last_credit = (credit, now);
        }
        let credit = credit.max(forgiven);
        let outstanding = payloads.count().saturating_sub(credit);
        let window_shut = match plan.inflight {
            None => false,
            Some(inflight) => {
                let reopen_at = inflight - (inflight / 4).max(1);
                refilling = if refilling {
                    outstanding > reopen_at
                } else {
                    outstanding >= inflight
                };
                if refilling && plan.receivers > 0 {
                    // Wake me when the receipts bring `outstanding` to `reopen_at`.
                    let wanted = (payloads.count() - reopen_at) * plan.receivers;
                    cell.wake_at.store(wanted, Ordering::SeqCst);
                    refilling = cell.delivered.load(Ordering::SeqCst) < wanted;
                }
                refilling
            }
        };
        let due = plan.rate.map(|rate| {
            let elapsed = now.duration_since(start).as_secs_f64();
            // Messages due by now, counted from the start of publishing.
            (
                (elapsed * rate) as u64 + 1,
                start + Duration::from_secs_f64(payloads.count() as f64 / rate),
            )
        });
        let rate_wait = due
            .filter(|(due, _)| payloads.count() >= *due)
            .map(|(_, at)| at);
        if publishing && !window_shut && rate_wait.is_none() {
            let sent_ns = now_ns();
            let std_now = now.into_std();
            let mut budget = due.map_or(u64::MAX, |(due, _)| due - payloads.count());
            if let Some(inflight) = plan.inflight {
                budget = budget.min(inflight - payloads.count().saturating_sub(credit));
            }
            if let Some(limit) = plan.limit {
                budget = budget.min(limit - payloads.count());
            }
            while budget > 0
                && link.write_buf.len() < WRITE_HIGH_WATER
                && link.session.queued_publishes() == 0
            {
                let mut message = Publish::new(plan.topic.clone(), payloads.next(sent_ns));
                message.qos = plan.qos;
                link.session
                    .publish(message, std_now)
                    .map_err(BenchError::Command)?;
                budget -= 1;
            }
            outcome.sent = payloads.count();
            cell.sent.store(outcome.sent, Ordering::Relaxed);
        }
        let acked_before = outcome.acked;
        link.carry_out(|event| {
            if let Event::PublishCompleted { reason, .. } = event {
                outcome.acked += 1;
                if !reason.is_success() {
                    outcome.refused += 1;
                }
            }
        })?;
        let unacked = plan.qos != QoS::AtMostOnce && outcome.acked < outcome.sent;
        if !publishing && (!unacked || *phase.borrow() == Phase::Done) {
            return Ok(());
        }
        if window_shut && plan.receivers == 0 && outcome.acked != acked_before {
            // Without subscribers the acknowledgements just taken are the
            // credit: the window may be open again, so look before waiting
            // for more input (which may never come: they were all read).
            continue;
        }
        let stalled_at = last_credit.1 + STALL_AFTER;
        if window_shut && publishing && now >= stalled_at {
            forgiven = payloads.count();
            refilling = false;
            outcome.stalls += 1;
            last_credit.1 = now;
            continue;
        }
        tokio::select! {
            wake = link.wait() => { wake?; }
            () = cell.wake.notified(), if window_shut && plan.receivers > 0 => {}
            () = sleep_until(stalled_at), if window_shut && publishing => {}
            () = sleep_until(rate_wait.unwrap_or(now)), if rate_wait.is_some() && publishing => {}
            changed = phase.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}

/// What a subscriber (or idle connection) saw.
#[derive(Debug)]
pub struct SubscriberOutcome {
    /// Its measurements.
    pub tracker: Tracker,
    /// Why the connection failed, if it did.
    pub error: Option<BenchError>,
}

/// Receives until [`Phase::Done`], recording every message in `tracker`.
pub async fn subscriber(
    mut link: Link,
    mut tracker: Tracker,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) -> SubscriberOutcome {
    let result = match receive_loop(&mut link, &mut tracker, &shared, &mut phase).await {
        Ok(()) => link.close().await,
        Err(error) => Err(error),
    };
    let error = result.err();
    if error.is_some() {
        shared.errors.fetch_add(1, Ordering::Relaxed);
    }
    SubscriberOutcome { tracker, error }
}

async fn receive_loop(
    link: &mut Link,
    tracker: &mut Tracker,
    shared: &Shared,
    phase: &mut watch::Receiver<Phase>,
) -> Result<(), BenchError> {
    let mut credits = vec![0u64; tracker.own.len()];
    let mut touched: Vec<u32> = Vec::new();
    loop {
        let received_ns = now_ns();
        let mut got = 0;
        link.carry_out(|event| {
            if let Event::Message(message) = event {
                got += 1;
                if let Some(publisher) = tracker.record(&message.payload, received_ns) {
                    let slot = &mut credits[publisher as usize];
                    if *slot == 0 {
                        touched.push(publisher);
                    }
                    *slot += 1;
                }
            }
        })?;
        if got > 0 {
            shared.received.fetch_add(got, Ordering::Relaxed);
        }
        for publisher in touched.drain(..) {
            let count = std::mem::take(&mut credits[publisher as usize]);
            if shared.credit {
                let cell = &shared.publishers[publisher as usize];
                let delivered = cell.delivered.fetch_add(count, Ordering::SeqCst) + count;
                if delivered >= cell.wake_at.load(Ordering::SeqCst) {
                    cell.wake_at.store(u64::MAX, Ordering::Release);
                    cell.wake.notify_one();
                }
            }
        }
        if *phase.borrow() == Phase::Done {
            return Ok(());
        }
        tokio::select! {
            wake = link.wait() => { wake?; }
            changed = phase.changed() => if changed.is_err() { return Ok(()) },
        }
    }
}
