//! Durable storage of sessions: the [`SessionStore`] trait, the operations
//! it applies and the values it returns.
//!
//! A store applies [`Op`]s, in batches that are atomic: after a crash either
//! all of a [`SessionStore::write`] is there or none of it. Each write
//! returns a [`Pending`] that completes when the write is as durable as the
//! store's [`Durability`] promises. Every implementation passes the suite in
//! [`crate::conformance`].

pub mod memory;
mod pending;
mod record;
pub mod sled;
pub mod transfer;

use std::collections::BTreeMap;
use std::time::Duration;

use tern_codec::{ByteString, PacketId, TopicFilter};

pub use pending::{Completer, Pending};

use crate::session::{InFlight, Queued, Subscription, Will};
use crate::{Message, SessionExpiry, StoreError, Timestamp};

/// The stored part of a session other than its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The client identifier (at most 65,535 bytes, as in MQTT).
    pub client_id: ByteString,
    /// The session expiry setting.
    pub expiry: SessionExpiry,
    /// When the connection ended; `None` while connected.
    pub disconnected_at: Option<Timestamp>,
    /// The subscriptions.
    pub subscriptions: BTreeMap<TopicFilter, Subscription>,
    /// The will message, until published or discarded (boxed: most
    /// sessions have none, and every session holds its record).
    pub will: Option<Box<Will>>,
}

impl SessionRecord {
    /// When the session ends: `None` while connected or if it never ends.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expiry.expires_at(self.disconnected_at?)
    }
}

/// One change to a store. Operations are idempotent: removing what is not
/// there does nothing. Messages, in-flight entries and incoming packet
/// identifiers can only be stored for a client whose session is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Stores or replaces a session record.
    PutSession(Box<SessionRecord>),
    /// Removes a session with all its messages and packet identifiers.
    RemoveSession(ByteString),
    /// Stores a queued message under its sequence number.
    Enqueue {
        /// The client.
        client_id: ByteString,
        /// The message's sequence number in the client's queue.
        seq: u64,
        /// The message.
        message: Message,
    },
    /// Removes a queued message.
    Dequeue {
        /// The client.
        client_id: ByteString,
        /// The message's sequence number.
        seq: u64,
    },
    /// Stores or replaces an outgoing message in flight.
    PutInFlight {
        /// The client.
        client_id: ByteString,
        /// The packet identifier it was sent with.
        packet_id: PacketId,
        /// Its state (and message).
        entry: InFlight,
    },
    /// Removes an outgoing message in flight.
    RemoveInFlight {
        /// The client.
        client_id: ByteString,
        /// Its packet identifier.
        packet_id: PacketId,
    },
    /// Stores an incoming QoS 2 packet identifier awaiting PUBREL.
    PutIncomingQos2 {
        /// The client.
        client_id: ByteString,
        /// The packet identifier.
        packet_id: PacketId,
    },
    /// Removes an incoming QoS 2 packet identifier.
    RemoveIncomingQos2 {
        /// The client.
        client_id: ByteString,
        /// The packet identifier.
        packet_id: PacketId,
    },
    /// Stores or replaces the retained message of its topic.
    PutRetained(Message),
    /// Removes the retained message of a topic.
    RemoveRetained(ByteString),
}

impl Op {
    /// The operation's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PutSession(_) => "PutSession",
            Self::RemoveSession(_) => "RemoveSession",
            Self::Enqueue { .. } => "Enqueue",
            Self::Dequeue { .. } => "Dequeue",
            Self::PutInFlight { .. } => "PutInFlight",
            Self::RemoveInFlight { .. } => "RemoveInFlight",
            Self::PutIncomingQos2 { .. } => "PutIncomingQos2",
            Self::RemoveIncomingQos2 { .. } => "RemoveIncomingQos2",
            Self::PutRetained(_) => "PutRetained",
            Self::RemoveRetained(_) => "RemoveRetained",
        }
    }

    /// Refuses values no store may keep: a client identifier over 65,535
    /// bytes, or a message whose topic is not a valid topic name (it could
    /// be written but not read back). Both stores check this, so that they
    /// refuse the same writes.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        let client_id = match self {
            Self::PutSession(record) => Some(&record.client_id),
            Self::RemoveSession(client_id)
            | Self::Enqueue { client_id, .. }
            | Self::Dequeue { client_id, .. }
            | Self::PutInFlight { client_id, .. }
            | Self::RemoveInFlight { client_id, .. }
            | Self::PutIncomingQos2 { client_id, .. }
            | Self::RemoveIncomingQos2 { client_id, .. } => Some(client_id),
            Self::PutRetained(_) | Self::RemoveRetained(_) => None,
        };
        if client_id.is_some_and(|client_id| client_id.len() > usize::from(u16::MAX)) {
            return Err(StoreError::InvalidWrite(format!(
                "{}: the client identifier is longer than 65,535 bytes",
                self.name()
            )));
        }
        let publish = match self {
            Self::PutSession(record) => record.will.as_deref().map(Will::publish),
            Self::Enqueue { message, .. } | Self::PutRetained(message) => Some(message.publish()),
            Self::PutInFlight { entry, .. } => entry.message().map(Message::publish),
            _ => None,
        };
        if let Some(publish) = publish
            && let Err(error) = publish.validate_topic()
        {
            return Err(StoreError::InvalidWrite(format!(
                "{}: the topic {:?} is not a valid topic name: {error}",
                self.name(),
                &*publish.topic
            )));
        }
        Ok(())
    }

    /// The client an operation needs a stored session for, if any.
    pub(crate) fn requires_session(&self) -> Option<&ByteString> {
        match self {
            Self::Enqueue { client_id, .. }
            | Self::PutInFlight { client_id, .. }
            | Self::PutIncomingQos2 { client_id, .. } => Some(client_id),
            _ => None,
        }
    }
}

/// A session as loaded from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The session record.
    pub record: SessionRecord,
    /// Queued messages, by increasing sequence number.
    pub queue: Vec<Queued>,
    /// Outgoing messages in flight, by packet identifier.
    pub in_flight: Vec<(PacketId, InFlight)>,
    /// Incoming QoS 2 packet identifiers awaiting PUBREL, ascending.
    pub incoming_qos2: Vec<PacketId>,
}

/// What [`SessionStore::expire`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Sessions that ended, with all they held.
    pub sessions: Vec<ByteString>,
    /// Queued messages whose expiry time passed (in sessions still alive).
    pub queued_messages: u64,
    /// Retained messages whose expiry time passed.
    pub retained_messages: u64,
}

/// Counts of what a store holds, as checked by [`SessionStore::verify`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSummary {
    /// Session records.
    pub sessions: u64,
    /// Queued messages.
    pub queued_messages: u64,
    /// Outgoing messages in flight.
    pub in_flight: u64,
    /// Incoming QoS 2 packet identifiers.
    pub incoming_qos2: u64,
    /// Retained messages.
    pub retained_messages: u64,
    /// Entries of the expiry index (sessions and messages with an expiry).
    pub expiry_entries: u64,
}

/// What is on disk when a write's [`Pending`] completes. The same setting
/// decides when the broker may send PUBACK for a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The write is on disk (flushed and synced) when its `Pending`
    /// completes. Concurrent writes share one flush (group commit), so the
    /// cost is one sync per group, not per message. The default.
    #[default]
    Flush,
    /// The write completes once applied in memory; the store flushes in the
    /// background at most this long after a write. A crash loses at most
    /// this interval of acknowledged writes. A background flush that fails
    /// is reported by the next [`SessionStore::flush`] (or close).
    Periodic(Duration),
    /// The write completes once applied in memory; the store never flushes
    /// on its own (only on close and [`SessionStore::flush`]): data reaches
    /// the disk when the engine's write buffers fill and the operating
    /// system writes them back. A crash may lose any acknowledged write
    /// since the last flush. For tests, benchmarks and caches.
    None,
}

/// Durable storage of sessions, queued and in-flight messages, and retained
/// messages. See the module docs; implementations must pass
/// [`crate::conformance`].
pub trait SessionStore: Send + Sync {
    /// Applies `ops` atomically, in order. Completes when the write is as
    /// durable as the store's [`Durability`]; reads see it by then. A write
    /// that fails applies nothing.
    fn write(&self, ops: Vec<Op>) -> Pending<()>;

    /// Removes the sessions, queued messages and retained messages whose
    /// expiry time is at or before `now`, walking only the due part of the
    /// expiry index. Everything due is removed in one atomic write: call it
    /// often (say every second) so that each call has little to do.
    /// Completes like [`SessionStore::write`].
    fn expire(&self, now: Timestamp) -> Pending<Expired>;

    /// Completes when everything written before is on disk, whatever the
    /// durability setting.
    fn flush(&self) -> Pending<()>;

    /// Completes when the store has room for more writes: the explicit
    /// back-pressure of a store whose writes queue up (see
    /// [`SledConfig::queue_depth`](crate::SledConfig::queue_depth)).
    /// [`SessionStore::write`] never blocks and never refuses for lack of
    /// room; a caller that produces writes in a loop awaits this between
    /// rounds, outside any lock, so that the queue stays bounded. The
    /// default (a store that applies writes at once) is always ready.
    fn ready(&self) -> Pending<()> {
        Pending::ready(Ok(()))
    }

    /// Loads one session with its messages.
    fn load_session(&self, client_id: &str) -> Result<Option<StoredSession>, StoreError>;

    /// The client identifiers of all stored sessions, in byte order.
    fn client_ids(&self) -> Result<Vec<ByteString>, StoreError>;

    /// All retained messages, in topic order.
    fn retained(&self) -> Result<Vec<Message>, StoreError>;

    /// Reads everything and checks that records decode, that every message
    /// belongs to a stored session and that the expiry index agrees with
    /// the records. Returns what the store holds.
    fn verify(&self) -> Result<StoreSummary, StoreError>;
}
