//! The session of one client, as pure data and logic.
//!
//! A [`Session`] holds what MQTT says outlives a connection: subscriptions,
//! outgoing QoS 1/2 messages in flight, messages queued for delivery,
//! incoming QoS 2 packet identifiers awaiting PUBREL, the will message and
//! the session expiry. It does no I/O and reads no clock: every method that
//! depends on time takes `now`.
//!
//! A persistent session (expiry interval above 0) records every change as
//! an [`Op`]; the broker drains them with [`Session::take_changes`] and hands
//! them to a [`SessionStore`](crate::SessionStore). A session that ends with
//! its connection records nothing. QoS 0 messages are queued in memory only:
//! a restart may lose them, as MQTT allows.
//!
//! # Memory of an idle session
//!
//! The broker keeps a session for every client, connected or not, and most
//! clients are idle most of the time: nothing queued, nothing in flight, no
//! incoming QoS 2 exchange open. What an idle client costs is the broker's
//! budget (docs/performance.md, "Idle connections"), so a session keeps its
//! delivery state (the queue, the in-flight window and the incoming QoS 2
//! identifiers: 128 bytes, besides their buffers) in a box of its own,
//! allocated when a message or identifier first needs it and freed by
//! [`Session::release_idle_memory`] once all of it is empty. The journal of
//! changes for the store is boxed too, and only a persistent session fills
//! it: an idle session is 128 bytes rather than 272 (x86_64). What must
//! outlive the box stays inline: the limits, the next sequence number of
//! the queue (the store keys queued messages by it, and a cluster handover
//! marks its place with it), the packet identifier to try next and the
//! drop counters (boxed apart: most sessions never drop). The read accessors
//! ([`Session::queue`], [`Session::in_flight`], [`Session::incoming_qos2`])
//! answer from a shared empty value while the box is absent.

#[cfg(test)]
mod idle_tests;
mod in_flight;
mod journal;
mod queue;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;

use tern_codec::{ByteString, PacketId, Publish, QoS, SubscriptionOptions, TopicFilter};

pub use in_flight::{AckOutcome, Acknowledgement, InFlight, InFlightState, InFlightWindow};
pub use queue::{DropCounters, DropReason, MessageQueue, Pushed, Queued};

use crate::store::{Op, SessionRecord, StoredSession};
use crate::{Message, SessionError, SessionExpiry, Timestamp};

/// One subscription of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The options of the SUBSCRIBE entry.
    pub options: SubscriptionOptions,
    /// The Subscription Identifier to echo in matching messages (MQTT 5).
    pub identifier: Option<NonZeroU32>,
}

/// A will message and its delay (MQTT 5 Will Delay Interval, seconds).
///
/// The will keeps its Message Expiry Interval *relative*: MQTT 5
/// (§3.1.3.2.4) counts a will's expiry from its publication, which may
/// come long after CONNECT (a Will Delay Interval, a session that outlives
/// its connection). [`Will::into_message`] turns it into a [`Message`]
/// with an absolute expiry time at publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Normalised: no packet identifier, DUP or topic alias; the Message
    /// Expiry Interval property is kept.
    publish: Publish,
    delay: u32,
}

impl Will {
    /// The will `publish` (its QoS and retain flag are those of the will),
    /// published `delay` seconds after the connection ends. Packet
    /// identifier, DUP and topic alias are cleared.
    pub fn new(mut publish: Publish, delay: u32) -> Self {
        publish.packet_id = None;
        publish.dup = false;
        if publish.properties().topic_alias.is_some() {
            publish.properties_mut().topic_alias = None;
        }
        Self { publish, delay }
    }

    /// The will as a PUBLISH, with its Message Expiry Interval (relative).
    pub fn publish(&self) -> &Publish {
        &self.publish
    }

    /// Seconds between the end of the connection and publication.
    pub fn delay(&self) -> u32 {
        self.delay
    }

    /// The Message Expiry Interval, counted from publication.
    pub fn expiry_interval(&self) -> Option<u32> {
        self.publish.properties().message_expiry_interval
    }

    /// The message published at `published_at`: its expiry counts from then.
    pub fn into_message(self, published_at: Timestamp) -> Message {
        Message::new(self.publish, published_at)
    }
}

/// Per-session limits, named as Mosquitto names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Most messages queued for delivery; see [`MessageQueue`] for the drop
    /// policy. At least 1; a session holds at most `u32::MAX` (a larger
    /// value counts as that).
    pub max_queued_messages: usize,
    /// Most QoS 1 and 2 messages in flight (the client's Receive Maximum).
    pub max_inflight_messages: u16,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            max_queued_messages: 1000,
            max_inflight_messages: u16::MAX,
        }
    }
}

/// A packet to send again when a client resumes its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resend {
    /// A PUBLISH whose acknowledgement never came, with DUP set.
    Publish(Publish),
    /// A PUBREL whose PUBCOMP never came.
    PubRel(PacketId),
}

/// The delivery state of a session: what an idle session holds none of,
/// boxed apart so that it costs an idle session one pointer (see the
/// module docs, "Memory of an idle session").
#[derive(Debug, Clone, Default)]
struct Delivery {
    queue: MessageQueue,
    in_flight: InFlightWindow,
    incoming_qos2: BTreeSet<PacketId>,
}

impl Delivery {
    const fn new() -> Self {
        Self {
            queue: MessageQueue::new(),
            in_flight: InFlightWindow::new(),
            incoming_qos2: BTreeSet::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty() && self.incoming_qos2.is_empty()
    }
}

/// What a session without its [`Delivery`] box holds: nothing.
static NO_DELIVERY: Delivery = Delivery::new();

/// The state of one client's session; see the module docs.
#[derive(Debug, Clone)]
pub struct Session {
    record: SessionRecord,
    /// The changes for the store not yet taken ([`Session::take_changes`]):
    /// only a persistent session records any, so boxed (8 bytes rather
    /// than 24 in every clean session) and `None` once taken.
    #[allow(clippy::box_collection)] // The box is the point: 8 bytes, not 24.
    changes: Option<Box<Vec<Op>>>,
    /// Allocated by the first message queued or identifier received;
    /// freed, once empty, by [`Session::release_idle_memory`] only (not at
    /// every acknowledgement, which would allocate it again for the next
    /// message of a busy session).
    delivery: Option<Box<Delivery>>,
    // What follows outlives the box.
    /// The sequence number of the next message queued.
    next_seq: u64,
    /// Allocated at the first drop: most sessions never drop.
    drops: Option<Box<DropCounters>>,
    /// Most messages queued, at least 1.
    max_queued_messages: u32,
    /// Most QoS 1 and 2 messages in flight, at least 1: the Receive
    /// Maximum of the client's connection.
    max_inflight_messages: u16,
    /// The packet identifier the next allocation tries first.
    next_packet_id: u16,
}

impl Session {
    /// A new session for a client connected now.
    pub fn new(client_id: ByteString, expiry: SessionExpiry, limits: SessionLimits) -> Self {
        let record = SessionRecord {
            client_id,
            expiry,
            disconnected_at: None,
            subscriptions: BTreeMap::new(),
            will: None,
        };
        let mut session = Self::with_delivery(record, None, 0, limits);
        session.journal_record();
        session
    }

    fn with_delivery(
        record: SessionRecord,
        delivery: Option<Box<Delivery>>,
        next_seq: u64,
        limits: SessionLimits,
    ) -> Self {
        Self {
            record,
            changes: None,
            delivery,
            next_seq,
            drops: None,
            max_queued_messages: u32::try_from(limits.max_queued_messages)
                .unwrap_or(u32::MAX)
                .max(1),
            max_inflight_messages: limits.max_inflight_messages.max(1),
            next_packet_id: 1,
        }
    }

    /// A session loaded from a store. A session stored as connected (the
    /// broker stopped while its client was connected) is taken as
    /// disconnected at `now`, and that change is recorded.
    pub fn restore(stored: StoredSession, limits: SessionLimits, now: Timestamp) -> Self {
        // New messages get sequence numbers above the stored ones.
        let next_seq = stored.queue.last().map_or(0, |last| last.seq + 1);
        let mut in_flight = InFlightWindow::new();
        for (packet_id, entry) in stored.in_flight {
            in_flight.insert(packet_id, entry);
        }
        let delivery = Delivery {
            queue: MessageQueue::restore(stored.queue),
            in_flight,
            incoming_qos2: stored.incoming_qos2.into_iter().collect(),
        };
        let delivery = (!delivery.is_empty()).then(|| Box::new(delivery));
        let mut session = Self::with_delivery(stored.record, delivery, next_seq, limits);
        if session.record.disconnected_at.is_none() {
            session.record.disconnected_at = Some(now);
            session.journal_record();
        }
        session
    }

    /// The client identifier.
    pub fn client_id(&self) -> &ByteString {
        &self.record.client_id
    }

    /// The stored part of the session: identity, expiry, subscriptions, will.
    pub fn record(&self) -> &SessionRecord {
        &self.record
    }

    /// The session expiry setting.
    pub fn expiry(&self) -> SessionExpiry {
        self.record.expiry
    }

    /// Changes the session expiry (the DISCONNECT property of MQTT 5).
    /// Becoming non-persistent deletes the stored session; becoming
    /// persistent stores all of it.
    pub fn set_expiry(&mut self, expiry: SessionExpiry) {
        let was_persistent = self.record.expiry.is_persistent();
        self.record.expiry = expiry;
        match (was_persistent, expiry.is_persistent()) {
            (true, false) => {
                let client_id = self.record.client_id.clone();
                self.changes_mut().push(Op::RemoveSession(client_id));
            }
            (false, true) => {
                let ops = self.snapshot_ops();
                self.changes_mut().extend(ops);
            }
            _ => self.journal_record(),
        }
    }

    /// True while a connection is attached.
    pub fn is_connected(&self) -> bool {
        self.record.disconnected_at.is_none()
    }

    /// A client (re)connects at `now` to this session. Returns the packets
    /// to send again, in packet identifier order; in-flight messages are
    /// resent even if expired, since their delivery had started.
    pub fn connect(
        &mut self,
        now: Timestamp,
        max_inflight_messages: u16,
        will: Option<Will>,
    ) -> Vec<Resend> {
        self.record.disconnected_at = None;
        self.record.will = will.map(Box::new);
        self.max_inflight_messages = max_inflight_messages.max(1);
        self.journal_record();
        self.in_flight()
            .iter()
            .map(|(packet_id, entry)| match entry.message() {
                Some(message) => Resend::Publish(message.to_publish(now, Some(packet_id), true)),
                None => Resend::PubRel(packet_id),
            })
            .collect()
    }

    /// The connection ended at `now`. The session lives on until
    /// [`Session::expires_at`]; a session with expiry 0 ends now.
    pub fn disconnect(&mut self, now: Timestamp) {
        self.record.disconnected_at = Some(now);
        self.journal_record();
    }

    /// When the session ends: `None` while connected or if it never ends.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.record.expires_at()
    }

    /// True once the session has ended and should be discarded.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at().is_some_and(|at| now >= at)
    }

    /// Adds or replaces the subscription to `filter`; returns the one it
    /// replaced.
    pub fn subscribe(
        &mut self,
        filter: TopicFilter,
        subscription: Subscription,
    ) -> Option<Subscription> {
        let previous = self.record.subscriptions.insert(filter, subscription);
        self.journal_record();
        previous
    }

    /// Removes the subscription to `filter`; false if there was none.
    pub fn unsubscribe(&mut self, filter: &TopicFilter) -> bool {
        let removed = self.record.subscriptions.remove(filter).is_some();
        if removed {
            self.journal_record();
        }
        removed
    }

    /// The subscriptions, in filter order.
    pub fn subscriptions(&self) -> &BTreeMap<TopicFilter, Subscription> {
        &self.record.subscriptions
    }

    /// Queues `message` for delivery, applying the queue's drop policy.
    /// Returns why a message was dropped, if one was.
    pub fn enqueue(&mut self, message: Message) -> Option<DropReason> {
        let store = message.qos() != QoS::AtMostOnce && self.is_journaled();
        let message_for_store = store.then(|| message.clone());
        let seq = self.next_seq;
        self.next_seq += 1;
        let capacity = self.queue_capacity();
        let pushed = self.delivery_mut().queue.push(message, seq, capacity);
        let mut reason = None;
        if let Some((dropped, why)) = pushed.dropped {
            self.count_drop(why);
            reason = Some(why);
            if pushed.seq.is_some() {
                self.journal_removed(&dropped);
            }
        }
        if let (Some(seq), Some(message)) = (pushed.seq, message_for_store) {
            self.journal(|client_id| Op::Enqueue {
                client_id,
                seq,
                message,
            });
        }
        reason
    }

    /// Takes the next message to send at `now`, if the in-flight window has
    /// room for it. QoS 1 and 2 messages get a packet identifier and move
    /// in flight. Expired messages at the front are dropped and counted.
    pub fn next_delivery(&mut self, now: Timestamp) -> Option<Publish> {
        let room = self.has_room();
        let delivery = self.delivery.as_deref_mut()?;
        let mut expired = Vec::new();
        let queued = delivery.queue.pop(
            now,
            |message| room || message.qos() == QoS::AtMostOnce,
            &mut expired,
        );
        for dropped in &expired {
            self.count_drop(DropReason::Expired);
            self.journal_removed(dropped);
        }
        let queued = queued?;
        if queued.message.qos() == QoS::AtMostOnce {
            return Some(queued.message.to_publish(now, None, false));
        }
        // A message was queued, so the box is there.
        let delivery = self.delivery.get_or_insert_default();
        let Some(packet_id) = delivery.in_flight.allocate(&mut self.next_packet_id) else {
            // Unreachable while `room` holds; keep the message rather than lose it.
            delivery.queue.unpop(queued);
            return None;
        };
        let publish = queued.message.to_publish(now, Some(packet_id), false);
        let entry = if queued.message.qos() == QoS::AtLeastOnce {
            InFlight::AwaitingPubAck(queued.message)
        } else {
            InFlight::AwaitingPubRec(queued.message)
        };
        let seq = queued.seq;
        self.journal(|client_id| Op::Dequeue { client_id, seq });
        self.journal(|client_id| Op::PutInFlight {
            client_id,
            packet_id,
            entry: entry.clone(),
        });
        self.delivery_mut().in_flight.push(packet_id, entry);
        Some(publish)
    }

    /// Drops a message just taken with [`Session::next_delivery`] instead
    /// of sending it (one larger than the client's Maximum Packet Size, for
    /// example), counting the drop under `reason`. A QoS 1 or 2 message
    /// (`packet_id` given) leaves the in-flight window and the store, and
    /// its packet identifier is free again. Returns false, counting
    /// nothing, if `packet_id` has no message in flight (none, or a QoS 2
    /// exchange past PUBREC, whose message was delivered).
    pub fn drop_delivery(&mut self, packet_id: Option<PacketId>, reason: DropReason) -> bool {
        if let Some(packet_id) = packet_id {
            let Some(delivery) = self.delivery.as_deref_mut() else {
                return false;
            };
            let has_message = delivery
                .in_flight
                .get(packet_id)
                .is_some_and(|entry| entry.message().is_some());
            if !has_message {
                return false;
            }
            delivery.in_flight.remove(packet_id);
            self.journal(|client_id| Op::RemoveInFlight {
                client_id,
                packet_id,
            });
        }
        self.count_drop(reason);
        true
    }

    /// Applies PUBACK, PUBREC or PUBCOMP from the client.
    pub fn acknowledge(
        &mut self,
        packet_id: PacketId,
        ack: Acknowledgement,
    ) -> Result<AckOutcome, SessionError> {
        let outcome = match self.delivery.as_deref_mut() {
            Some(delivery) => delivery.in_flight.acknowledge(packet_id, ack)?,
            None => return Err(SessionError::PacketIdNotFound { packet_id, ack }),
        };
        self.journal(|client_id| match outcome {
            AckOutcome::Completed => Op::RemoveInFlight {
                client_id,
                packet_id,
            },
            AckOutcome::SendPubRel => Op::PutInFlight {
                client_id,
                packet_id,
                entry: InFlight::AwaitingPubComp,
            },
        });
        Ok(outcome)
    }

    /// A QoS 2 PUBLISH arrived with `packet_id`. True if it is new (route
    /// it); false if it is a redelivery of one not yet released.
    pub fn receive_qos2(&mut self, packet_id: PacketId) -> bool {
        let new = self.delivery_mut().incoming_qos2.insert(packet_id);
        if new {
            self.journal(|client_id| Op::PutIncomingQos2 {
                client_id,
                packet_id,
            });
        }
        new
    }

    /// PUBREL arrived for `packet_id`. False if it was unknown (answer
    /// PUBCOMP with reason 0x92).
    pub fn release_qos2(&mut self, packet_id: PacketId) -> bool {
        let known = self
            .delivery
            .as_deref_mut()
            .is_some_and(|delivery| delivery.incoming_qos2.remove(&packet_id));
        if known {
            self.journal(|client_id| Op::RemoveIncomingQos2 {
                client_id,
                packet_id,
            });
        }
        known
    }

    /// Incoming QoS 2 packet identifiers awaiting PUBREL.
    pub fn incoming_qos2(&self) -> &BTreeSet<PacketId> {
        &self.delivery().incoming_qos2
    }

    /// The will, if the connection set one and it is not yet published.
    pub fn will(&self) -> Option<&Will> {
        self.record.will.as_deref()
    }

    /// Discards the will (a normal DISCONNECT).
    pub fn discard_will(&mut self) {
        if self.record.will.take().is_some() {
            self.journal_record();
        }
    }

    /// When the will is due: the earlier of the will delay and the end of
    /// the session, counted from the disconnection. `None` while connected.
    pub fn will_due_at(&self) -> Option<Timestamp> {
        let disconnected_at = self.record.disconnected_at?;
        let will = self.record.will.as_deref()?;
        let due = disconnected_at.saturating_add_secs(will.delay);
        Some(self.expires_at().map_or(due, |end| due.min(end)))
    }

    /// Takes the will if it is due at `now`, for the broker to publish
    /// now: the message's expiry counts from `now`.
    pub fn take_due_will(&mut self, now: Timestamp) -> Option<Message> {
        if self.will_due_at()? > now {
            return None;
        }
        self.take_will().map(|will| will.into_message(now))
    }

    /// Takes the will whether or not it is due, connected or not (a
    /// session that ends early, replaced by a clean start, owes its will
    /// now). The caller publishes it with [`Will::into_message`].
    pub fn take_will(&mut self) -> Option<Will> {
        let will = self.record.will.take()?;
        self.journal_record();
        Some(*will)
    }

    /// Drops every queued message expired at `now`, wherever it is in the
    /// queue: an optional sweep. Without it, expired messages are dropped
    /// when they reach the front (the queue's documented policy).
    pub fn drop_expired(&mut self, now: Timestamp) -> usize {
        let Some(delivery) = self.delivery.as_deref_mut() else {
            return 0;
        };
        let expired = delivery.queue.remove_expired(now);
        for dropped in &expired {
            self.count_drop(DropReason::Expired);
            self.journal_removed(dropped);
        }
        expired.len()
    }

    /// The queue of messages waiting for delivery.
    pub fn queue(&self) -> &MessageQueue {
        &self.delivery().queue
    }

    /// Outgoing messages in flight.
    pub fn in_flight(&self) -> &InFlightWindow {
        &self.delivery().in_flight
    }

    /// The limits in force: the queue's capacity (as given to
    /// [`Session::new`] or [`Session::restore`], at least 1 and at most
    /// `u32::MAX`) and the in-flight limit of the latest
    /// [`connect`](Self::connect).
    pub fn limits(&self) -> SessionLimits {
        SessionLimits {
            max_queued_messages: self.queue_capacity(),
            max_inflight_messages: self.max_inflight_messages,
        }
    }

    /// Whether [`next_delivery`](Self::next_delivery) has a message to
    /// give now: the first queued one is QoS 0, or the in-flight window has
    /// room for it. When it has not, an acknowledgement from the client
    /// is what makes room, so there is no point in waking its connection.
    pub fn can_deliver(&self) -> bool {
        self.queue()
            .front()
            .is_some_and(|front| self.has_room() || front.message.qos() == QoS::AtMostOnce)
    }

    /// Messages dropped so far, by reason.
    pub fn drops(&self) -> DropCounters {
        self.drops.as_deref().copied().unwrap_or_default()
    }

    /// Frees the memory of the session's delivery state if it holds
    /// nothing: no message queued, none in flight, no incoming QoS 2
    /// identifier awaiting PUBREL. Short of that, an empty queue's buffer
    /// is freed. For the broker to call when a connection goes idle or a
    /// session is detached: it changes no behaviour, only memory. Sequence
    /// numbers, packet identifiers, limits and drop counters carry on as if
    /// nothing had been freed; the next message queued or identifier
    /// received allocates the state again (128 bytes, then the buffers).
    /// See the module docs, "Memory of an idle session".
    pub fn release_idle_memory(&mut self) {
        let Some(delivery) = self.delivery.as_deref_mut() else {
            return;
        };
        if delivery.is_empty() {
            self.delivery = None;
        } else {
            delivery.queue.shrink_if_empty();
        }
    }

    fn delivery(&self) -> &Delivery {
        self.delivery.as_deref().unwrap_or(&NO_DELIVERY)
    }

    fn delivery_mut(&mut self) -> &mut Delivery {
        self.delivery.get_or_insert_default()
    }

    fn queue_capacity(&self) -> usize {
        usize::try_from(self.max_queued_messages).unwrap_or(usize::MAX)
    }

    /// True when another QoS 1 or 2 message may go in flight. Entries over
    /// the limit (a new connection lowered it) stay; no new ones are
    /// admitted until below it.
    fn has_room(&self) -> bool {
        self.in_flight().len() < usize::from(self.max_inflight_messages)
    }

    fn count_drop(&mut self, reason: DropReason) {
        self.drops.get_or_insert_default().count(reason);
    }
}
