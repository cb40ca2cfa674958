//! MQTT sessions for Tern: the session model and its durable storage.
//!
//! - [`Session`] is the state MQTT keeps for a client across connections:
//!   subscriptions, outgoing QoS 1/2 messages in flight with their packet
//!   identifiers, the bounded queue of messages waiting for delivery (with
//!   a documented drop policy and counters), incoming QoS 2 packet
//!   identifiers awaiting PUBREL, the will and the session expiry. It is
//!   pure data and logic: no I/O, and no clock (time is an argument).
//!   Every change of a persistent session is recorded as an [`Op`].
//! - [`SessionStore`] applies those operations atomically and durably.
//!   [`MemoryStore`] keeps them in memory; [`SledStore`] on disk. Both pass
//!   the shared suite in [`conformance`].
//!
//! # Architecture invariants
//!
//! - **This is the only crate that names sled** (the Raft storage of
//!   tern-cluster will be the one other). sled 0.34's on-disk format will
//!   change before 1.0: every sled call is behind [`SessionStore`], so
//!   another engine can replace it by passing the same suite.
//! - **No async runtime.** The broker is async, but this crate has no
//!   tokio: a write returns a [`Pending`], a future any runtime can await
//!   (or a thread can [`wait`](Pending::wait) on). The sled store runs one
//!   plain thread of its own.
//!
//! # Durability
//!
//! [`Durability`] says what is on disk when a write's [`Pending`]
//! completes, so what the broker has promised when it sends PUBACK:
//!
//! - [`Durability::Flush`] (**the default**): on disk. Writes waiting at the
//!   same time share one flush (group commit): a committer thread applies
//!   every waiting write as one atomic batch, and a flusher thread syncs
//!   once for every batch applied so far, then completes them all. A single
//!   writer waits one sync per write; many writers together pay one sync
//!   for many writes. Nothing acknowledged is lost in a crash (the crash
//!   test checks it with SIGKILL).
//! - [`Durability::Periodic`]`(interval)`: complete once applied in memory,
//!   flushed in the background at most `interval` later. Much lower latency;
//!   a crash loses up to `interval` of acknowledged writes.
//! - [`Durability::None`]: never flushed except on close or
//!   [`SessionStore::flush`]. For tests and benchmarks.
//!
//! Writes are atomic whatever the setting: after a crash each write is
//! either all there or not at all.
//!
//! # Back-pressure
//!
//! [`SessionStore::write`] never blocks, so the broker may submit with a
//! session locked on an async worker. When the disk cannot keep up, writes
//! queue in the sled store; once [`SledConfig::queue_depth`] of them wait,
//! [`SessionStore::ready`] stays pending until the committer catches up.
//! Callers await it outside their locks before producing more (the broker:
//! before reading more from a client), which keeps the queue bounded.
//!
//! ```
//! use tern_codec::{Publish, QoS, SubscriptionOptions, TopicFilter};
//! use tern_session::{
//!     MemoryStore, Message, Session, SessionExpiry, SessionLimits, SessionStore, Subscription,
//!     Timestamp,
//! };
//!
//! let store = MemoryStore::new();
//! let now = Timestamp::from_millis(1_700_000_000_000);
//! let mut session = Session::new("sensor-1".into(), SessionExpiry::After(3600), SessionLimits::default());
//! let filter = TopicFilter::new("commands/#").unwrap();
//! let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
//! session.subscribe(filter, Subscription { options, identifier: None });
//! session.disconnect(now);
//!
//! let mut publish = Publish::new("commands/reboot", "now");
//! publish.qos = QoS::AtLeastOnce;
//! session.enqueue(Message::new(publish, now));
//! store.write(session.take_changes()).wait().unwrap();
//!
//! let stored = store.load_session("sensor-1").unwrap().unwrap();
//! assert_eq!(stored.queue.len(), 1);
//! ```

pub mod conformance;
mod error;
mod message;
pub mod session;
pub mod store;
mod time;

pub use error::{SessionError, StoreError};
pub use message::Message;
pub use session::{
    AckOutcome, Acknowledgement, DropCounters, DropReason, InFlight, InFlightState, Resend,
    Session, SessionLimits, Subscription, Will,
};
pub use store::memory::MemoryStore;
pub use store::sled::{CommitStats, SCHEMA_VERSION, SledConfig, SledStore};
pub use store::{
    Completer, Durability, Expired, Op, Pending, SessionRecord, SessionStore, StoreSummary,
    StoredSession,
};
pub use time::{SessionExpiry, Timestamp};
