//! The test suite every [`SessionStore`] implementation must pass.
//!
//! Implement [`Harness`] for the store and expand
//! [`session_store_conformance!`](crate::session_store_conformance) in a
//! test module: it generates one `#[test]` per check below. The memory
//! store and the sled store both run it (see `tests/conformance.rs`), so
//! the sled store is held to the behaviour of the simple in-memory
//! reference, and a future engine to both.
//!
//! Checks panic with a message on failure, like `assert!`.

mod checks;

use std::collections::BTreeMap;

use tern_codec::{PacketId, Publish, QoS};

use crate::store::{Op, SessionRecord, SessionStore, StoreSummary};

use crate::{Message, SessionExpiry, Timestamp};
pub use checks::*;

/// Opens stores for the suite.
pub trait Harness {
    /// The store under test.
    type Store: SessionStore;
    /// A new, empty store.
    fn open(&mut self) -> Self::Store;
    /// The same store closed and opened again. A durable store must keep
    /// every completed write; a memory store returns `store` itself.
    fn reopen(&mut self, store: Self::Store) -> Self::Store;
}

/// Generates one `#[test]` per conformance check, for the harness that
/// `$harness` evaluates to (evaluated once per test).
#[macro_export]
macro_rules! session_store_conformance {
    ($harness:expr) => {
        $crate::session_store_conformance!(@tests $harness;
            empty_store,
            sessions_round_trip,
            queue_keeps_order_and_removal_is_idempotent,
            in_flight_states_round_trip,
            incoming_qos2_round_trip,
            removing_a_session_removes_everything,
            a_failed_write_applies_nothing,
            unreadable_values_are_refused,
            retained_messages_round_trip,
            sessions_expire_on_time,
            messages_expire_on_time,
            moving_an_expiry_moves_its_index_entry,
            concurrent_writers_all_land,
            session_model_round_trip,
            writes_survive_reopen,
            an_idle_store_is_ready_for_writes,
        );
    };
    (@tests $harness:expr; $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::$name($harness);
            }
        )*
    };
}

fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

fn id(value: u16) -> PacketId {
    PacketId::new(value).expect("conformance packet ids are non-zero")
}

/// A message on `topic` with `qos`, expiring at `expires_at` (ms).
pub fn message(topic: &str, qos: QoS, expires_at: Option<u64>) -> Message {
    let mut publish = Publish::new(topic, format!("payload of {topic}"));
    publish.qos = qos;
    publish.properties_mut().user_properties = vec![("origin".into(), "conformance".into())];
    Message::with_expiry(publish, expires_at.map(at))
}

/// A session record for `client_id`.
pub fn record(
    client_id: &str,
    expiry: SessionExpiry,
    disconnected_at: Option<u64>,
) -> SessionRecord {
    SessionRecord {
        client_id: client_id.into(),
        expiry,
        disconnected_at: disconnected_at.map(at),
        subscriptions: BTreeMap::new(),
        will: None,
    }
}

fn put(record: SessionRecord) -> Op {
    Op::PutSession(Box::new(record))
}

fn enqueue(client_id: &str, seq: u64, message: Message) -> Op {
    Op::Enqueue {
        client_id: client_id.into(),
        seq,
        message,
    }
}

fn write<S: SessionStore>(store: &S, ops: Vec<Op>) {
    if let Err(error) = store.write(ops).wait() {
        panic!("write failed: {error}");
    }
}

fn verified<S: SessionStore>(store: &S) -> StoreSummary {
    match store.verify() {
        Ok(summary) => summary,
        Err(error) => panic!("verify failed: {error}"),
    }
}

fn seqs<S: SessionStore>(store: &S, client_id: &str) -> Vec<u64> {
    let stored = store
        .load_session(client_id)
        .expect("load")
        .expect("stored");
    stored.queue.iter().map(|queued| queued.seq).collect()
}
