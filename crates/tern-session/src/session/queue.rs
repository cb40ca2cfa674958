//! The bounded queue of messages waiting for an offline or slow client.
//!
//! Drop policy, applied when a message arrives and the queue is full:
//!
//! 1. if the queue holds a QoS 0 message, the oldest QoS 0 message is
//!    dropped ([`DropReason::QueueFullQos0`]);
//! 2. otherwise, if the arriving message is QoS 0, it is dropped
//!    ([`DropReason::QueueFullQos0`]);
//! 3. otherwise the oldest message is dropped
//!    ([`DropReason::QueueFullOldest`]).
//!
//! Expiry plays no part in that choice: messages whose expiry time has
//! passed are dropped when they reach the front ([`DropReason::Expired`]),
//! or by an explicit sweep ([`MessageQueue::remove_expired`]). The session
//! counts every drop by reason ([`DropCounters`]), including those of
//! messages already taken for delivery ([`DropReason::PacketTooLarge`]).

use std::collections::VecDeque;

use tern_codec::QoS;

use crate::{Message, Timestamp};

/// Why a message was dropped instead of delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The queue was full and a QoS 0 message made room (or was refused).
    QueueFullQos0,
    /// The queue was full of QoS 1 and 2 messages; the oldest made room.
    QueueFullOldest,
    /// The message expired before it could be delivered.
    Expired,
    /// The message, taken for delivery, was larger than the client's
    /// Maximum Packet Size (MQTT 5 §3.1.2.11.4).
    PacketTooLarge,
    /// The message, taken for delivery, is on a topic the client may not
    /// read (the broker's ACL).
    NotAuthorized,
}

/// How many messages a session dropped, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DropCounters {
    /// Dropped under [`DropReason::QueueFullQos0`].
    pub queue_full_qos0: u64,
    /// Dropped under [`DropReason::QueueFullOldest`].
    pub queue_full_oldest: u64,
    /// Dropped under [`DropReason::Expired`].
    pub expired: u64,
    /// Dropped under [`DropReason::PacketTooLarge`].
    pub packet_too_large: u64,
    /// Dropped under [`DropReason::NotAuthorized`].
    pub not_authorized: u64,
}

impl DropCounters {
    /// Counts one drop.
    pub fn count(&mut self, reason: DropReason) {
        match reason {
            DropReason::QueueFullQos0 => self.queue_full_qos0 += 1,
            DropReason::QueueFullOldest => self.queue_full_oldest += 1,
            DropReason::Expired => self.expired += 1,
            DropReason::PacketTooLarge => self.packet_too_large += 1,
            DropReason::NotAuthorized => self.not_authorized += 1,
        }
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        self.queue_full_qos0
            + self.queue_full_oldest
            + self.expired
            + self.packet_too_large
            + self.not_authorized
    }
}

/// A message in the queue with its sequence number. Sequence numbers grow
/// by one per message pushed and are never reused by one session (the
/// session hands them out, and keeps counting while its queue is freed);
/// they order the stored copies of QoS 1 and 2 messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// Position in the queue's history.
    pub seq: u64,
    /// The message.
    pub message: Message,
}

/// What happened to a pushed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The sequence number of the pushed message; `None` if it was dropped.
    pub seq: Option<u64>,
    /// A message dropped to make room, or the pushed message itself.
    pub dropped: Option<(Queued, DropReason)>,
}

/// A bounded FIFO of messages with the drop policy of the module docs.
///
/// The queue holds its messages only. What outlives them is the session's:
/// the capacity (a setting), the next sequence number (given to
/// [`push`](Self::push)) and the drop counters (the session counts each
/// drop the queue reports). So a session can free an empty queue while its
/// client is idle and start a new one later without losing any of it; see
/// [`Session::release_idle_memory`](super::Session::release_idle_memory).
#[derive(Debug, Clone, Default)]
pub struct MessageQueue {
    messages: VecDeque<Queued>,
    qos0_len: usize,
}

impl MessageQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            messages: VecDeque::new(),
            qos0_len: 0,
        }
    }

    /// A queue holding stored `messages`, ordered by sequence number.
    /// Messages beyond the capacity stay until delivered: restoring never
    /// drops.
    pub fn restore(messages: Vec<Queued>) -> Self {
        debug_assert!(messages.windows(2).all(|pair| pair[0].seq < pair[1].seq));
        let qos0_len = messages
            .iter()
            .filter(|queued| queued.message.qos() == QoS::AtMostOnce)
            .count();
        Self {
            messages: messages.into(),
            qos0_len,
        }
    }

    /// Number of messages waiting.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// The next message to deliver, without removing it.
    pub fn front(&self) -> Option<&Queued> {
        self.messages.front()
    }

    /// The waiting messages, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.messages.iter()
    }

    /// Appends `message` under sequence number `seq` (above every queued
    /// one), applying the drop policy when the queue holds `capacity`
    /// messages or more. The caller counts the drop reported.
    pub fn push(&mut self, message: Message, seq: u64, capacity: usize) -> Pushed {
        debug_assert!(self.messages.back().is_none_or(|last| last.seq < seq));
        let mut dropped = None;
        if self.messages.len() >= capacity.max(1) {
            let victim = if self.qos0_len > 0 {
                let index = self
                    .messages
                    .iter()
                    .position(|queued| queued.message.qos() == QoS::AtMostOnce);
                index.map(|index| (index, DropReason::QueueFullQos0))
            } else if message.qos() == QoS::AtMostOnce {
                return Pushed {
                    seq: None,
                    dropped: Some((Queued { seq, message }, DropReason::QueueFullQos0)),
                };
            } else {
                Some((0, DropReason::QueueFullOldest))
            };
            if let Some((index, reason)) = victim
                && let Some(queued) = self.remove_at(index)
            {
                dropped = Some((queued, reason));
            }
        }
        if message.qos() == QoS::AtMostOnce {
            self.qos0_len += 1;
        }
        self.messages.push_back(Queued { seq, message });
        Pushed {
            seq: Some(seq),
            dropped,
        }
    }

    /// Removes and returns the next live message if `admit` accepts it.
    /// Expired messages met at the front on the way are removed and
    /// appended to `expired`, for the caller to count.
    pub fn pop(
        &mut self,
        now: Timestamp,
        admit: impl FnOnce(&Message) -> bool,
        expired: &mut Vec<Queued>,
    ) -> Option<Queued> {
        while self.front()?.message.is_expired(now) {
            let queued = self.remove_at(0)?;
            expired.push(queued);
        }
        if !admit(&self.front()?.message) {
            return None;
        }
        self.remove_at(0)
    }

    /// Puts back at the front a message just taken by [`MessageQueue::pop`].
    pub fn unpop(&mut self, queued: Queued) {
        debug_assert!(self.front().is_none_or(|front| front.seq > queued.seq));
        if queued.message.qos() == QoS::AtMostOnce {
            self.qos0_len += 1;
        }
        self.messages.push_front(queued);
    }

    /// Removes every expired message, wherever it is in the queue; returns
    /// them, for the caller to count and to delete their stored copies.
    pub fn remove_expired(&mut self, now: Timestamp) -> Vec<Queued> {
        let mut expired = Vec::new();
        let mut kept = VecDeque::with_capacity(self.messages.len());
        for queued in self.messages.drain(..) {
            if queued.message.is_expired(now) {
                expired.push(queued);
            } else {
                kept.push_back(queued);
            }
        }
        self.messages = kept;
        for queued in &expired {
            if queued.message.qos() == QoS::AtMostOnce {
                self.qos0_len -= 1;
            }
        }
        expired
    }

    /// Frees the buffer of an empty queue (a drained queue keeps the
    /// buffer its longest backlog needed).
    pub(super) fn shrink_if_empty(&mut self) {
        if self.messages.is_empty() {
            self.messages = VecDeque::new();
        }
    }

    fn remove_at(&mut self, index: usize) -> Option<Queued> {
        let queued = self.messages.remove(index)?;
        if queued.message.qos() == QoS::AtMostOnce {
            self.qos0_len -= 1;
        }
        Some(queued)
    }
}

#[cfg(test)]
mod tests {
    use tern_codec::Publish;

    use super::*;

    fn message(qos: QoS, topic: &str, expires_at: Option<u64>) -> Message {
        let mut publish = Publish::new(topic, "x");
        publish.qos = qos;
        Message::with_expiry(publish, expires_at.map(Timestamp::from_millis))
    }

    /// A queue with what its session keeps beside it: the capacity, the
    /// next sequence number and the drop counters.
    struct Kept {
        queue: MessageQueue,
        capacity: usize,
        next_seq: u64,
        drops: DropCounters,
    }

    impl Kept {
        fn new(capacity: usize) -> Self {
            Self {
                queue: MessageQueue::new(),
                capacity,
                next_seq: 0,
                drops: DropCounters::default(),
            }
        }

        fn push(&mut self, message: Message) -> Pushed {
            let seq = self.next_seq;
            self.next_seq += 1;
            let pushed = self.queue.push(message, seq, self.capacity);
            if let Some((_, reason)) = &pushed.dropped {
                self.drops.count(*reason);
            }
            pushed
        }

        fn pop(
            &mut self,
            now: Timestamp,
            admit: impl FnOnce(&Message) -> bool,
            expired: &mut Vec<Queued>,
        ) -> Option<Queued> {
            let before = expired.len();
            let taken = self.queue.pop(now, admit, expired);
            for _ in before..expired.len() {
                self.drops.count(DropReason::Expired);
            }
            taken
        }

        fn topics(&self) -> Vec<&str> {
            self.queue
                .iter()
                .map(|queued| queued.message.topic())
                .collect()
        }
    }

    #[test]
    fn full_queue_drops_the_oldest_qos0_message_first() {
        let mut queue = Kept::new(3);
        queue.push(message(QoS::AtLeastOnce, "a", None));
        queue.push(message(QoS::AtMostOnce, "b", None));
        queue.push(message(QoS::AtMostOnce, "c", None));
        let pushed = queue.push(message(QoS::AtLeastOnce, "d", None));
        assert_eq!(pushed.seq, Some(3));
        let (dropped, reason) = pushed.dropped.expect("a message was dropped");
        assert_eq!(
            (dropped.message.topic(), reason),
            ("b", DropReason::QueueFullQos0)
        );
        assert_eq!(queue.topics(), ["a", "c", "d"]);
        queue.push(message(QoS::ExactlyOnce, "e", None));
        assert_eq!(queue.topics(), ["a", "d", "e"]);
        assert_eq!(queue.drops.queue_full_qos0, 2);
        assert_eq!(queue.drops.queue_full_oldest, 0);
    }

    #[test]
    fn arriving_qos0_message_is_refused_when_full_of_qos1() {
        let mut queue = Kept::new(2);
        queue.push(message(QoS::AtLeastOnce, "a", None));
        queue.push(message(QoS::AtLeastOnce, "b", None));
        let pushed = queue.push(message(QoS::AtMostOnce, "c", None));
        assert_eq!(pushed.seq, None);
        assert_eq!(
            pushed.dropped.map(|(queued, reason)| (queued.seq, reason)),
            Some((2, DropReason::QueueFullQos0))
        );
        assert_eq!(queue.topics(), ["a", "b"]);
    }

    #[test]
    fn full_queue_of_qos1_drops_the_oldest() {
        let mut queue = Kept::new(2);
        for topic in ["a", "b", "c", "d"] {
            queue.push(message(QoS::AtLeastOnce, topic, None));
        }
        assert_eq!(queue.topics(), ["c", "d"]);
        assert_eq!(queue.drops.queue_full_oldest, 2);
        assert_eq!(queue.drops.total(), 2);
        assert_eq!(queue.queue.len(), queue.capacity);
    }

    #[test]
    fn expired_messages_are_dropped_when_dequeued() {
        let mut queue = Kept::new(10);
        queue.push(message(QoS::AtLeastOnce, "old", Some(100)));
        queue.push(message(QoS::AtMostOnce, "old0", Some(150)));
        queue.push(message(QoS::AtLeastOnce, "live", Some(1_000)));
        let mut expired = Vec::new();
        let next = queue.pop(Timestamp::from_millis(200), |_| true, &mut expired);
        assert_eq!(next.map(|queued| queued.seq), Some(2));
        assert_eq!(expired.iter().map(|q| q.seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(queue.drops.expired, 2);
        assert!(queue.queue.is_empty());
        assert_eq!(
            queue.pop(Timestamp::from_millis(200), |_| true, &mut expired),
            None
        );
    }

    #[test]
    fn a_full_queue_ignores_expiry_until_the_front() {
        // The documented policy: expired messages are dropped when they
        // reach the front, not first when the queue is full.
        let mut queue = Kept::new(2);
        queue.push(message(QoS::AtLeastOnce, "live", None));
        queue.push(message(QoS::AtLeastOnce, "dead", Some(5)));
        let pushed = queue.push(message(QoS::AtLeastOnce, "next", None));
        let (dropped, reason) = pushed.dropped.expect("full");
        assert_eq!(
            (dropped.message.topic(), reason),
            ("live", DropReason::QueueFullOldest)
        );
        let mut expired = Vec::new();
        let next = queue.pop(Timestamp::from_millis(10), |_| true, &mut expired);
        assert_eq!(
            next.map(|queued| queued.message.topic().to_owned()),
            Some("next".into())
        );
        assert_eq!(expired.len(), 1);
        assert_eq!(queue.drops.expired, 1);
    }

    #[test]
    fn pop_leaves_a_message_the_caller_cannot_take() {
        let mut queue = Kept::new(10);
        queue.push(message(QoS::AtLeastOnce, "dead", Some(1)));
        queue.push(message(QoS::AtLeastOnce, "live", None));
        let mut expired = Vec::new();
        let now = Timestamp::from_millis(10);
        assert_eq!(queue.pop(now, |_| false, &mut expired), None);
        assert_eq!(expired.len(), 1, "the expired front was dropped anyway");
        assert_eq!(queue.topics(), ["live"]);
        let taken = queue
            .pop(now, |_| true, &mut expired)
            .expect("a live message");
        queue.queue.unpop(taken);
        assert_eq!(queue.topics(), ["live"]);
    }

    #[test]
    fn remove_expired_reaches_past_the_front() {
        let mut queue = Kept::new(10);
        queue.push(message(QoS::AtLeastOnce, "live", None));
        queue.push(message(QoS::AtMostOnce, "dead", Some(5)));
        let expired = queue.queue.remove_expired(Timestamp::from_millis(5));
        assert_eq!(expired.len(), 1);
        assert_eq!(queue.topics(), ["live"]);
        // The QoS 0 count followed the removal: a full queue now drops the
        // oldest QoS 1 message.
        let mut restored = MessageQueue::restore(queue.queue.iter().cloned().collect());
        let pushed = restored.push(message(QoS::AtLeastOnce, "next", None), 2, 1);
        assert_eq!(
            pushed.dropped.map(|(_, reason)| reason),
            Some(DropReason::QueueFullOldest)
        );
    }

    #[test]
    fn an_emptied_queue_frees_its_buffer() {
        let mut queue = Kept::new(10);
        for topic in ["a", "b", "c"] {
            queue.push(message(QoS::AtLeastOnce, topic, None));
        }
        queue.queue.shrink_if_empty();
        assert_eq!(queue.queue.len(), 3, "a queue with messages keeps them");
        let mut expired = Vec::new();
        while queue
            .pop(Timestamp::from_millis(0), |_| true, &mut expired)
            .is_some()
        {}
        assert!(queue.queue.messages.capacity() > 0);
        queue.queue.shrink_if_empty();
        assert_eq!(queue.queue.messages.capacity(), 0);
    }
}
