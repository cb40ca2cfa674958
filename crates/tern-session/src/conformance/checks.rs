//! The checks of the conformance suite, one public function each.

use std::num::NonZeroU32;

use tern_codec::{ByteString, Publish, QoS, SubscriptionOptions, TopicFilter};

use super::{Harness, at, enqueue, id, message, put, record, seqs, verified, write};
use crate::session::{InFlight, Subscription, Will};
use crate::store::{Op, SessionRecord, SessionStore, StoreSummary};
use crate::{Session, SessionExpiry, SessionLimits, StoreError};

/// A new store holds nothing and verifies.
pub fn empty_store<H: Harness>(mut harness: H) {
    let store = harness.open();
    assert_eq!(
        store.client_ids().expect("client ids"),
        Vec::<ByteString>::new()
    );
    assert!(store.retained().expect("retained").is_empty());
    assert_eq!(store.load_session("nobody").expect("load"), None);
    assert_eq!(verified(&store), StoreSummary::default());
    store.flush().wait().expect("flush");
}

/// Session records come back exactly as written, and replace each other.
pub fn sessions_round_trip<H: Harness>(mut harness: H) {
    let store = harness.open();
    let mut rich = record("rich", SessionExpiry::After(90), Some(1_000));
    rich.subscriptions.insert(
        TopicFilter::new("$share/g/a/+").expect("valid"),
        Subscription {
            options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
            identifier: NonZeroU32::new(12),
        },
    );
    let mut will = Publish::new("will/rich", "gone");
    will.qos = QoS::AtLeastOnce;
    will.retain = true;
    will.properties_mut().message_expiry_interval = Some(50);
    will.properties_mut().user_properties = vec![("origin".into(), "conformance".into())];
    rich.will = Some(Box::new(Will::new(will, 15)));
    let plain = record("plain", SessionExpiry::Never, None);
    write(&store, vec![put(rich.clone()), put(plain.clone())]);
    let ids = store.client_ids().expect("client ids");
    assert_eq!(ids, [ByteString::from("plain"), ByteString::from("rich")]);
    let loaded = store.load_session("rich").expect("load").expect("stored");
    assert_eq!(loaded.record, rich);
    assert!(loaded.queue.is_empty() && loaded.in_flight.is_empty());

    let reconnected = SessionRecord {
        disconnected_at: None,
        ..rich
    };
    write(&store, vec![put(reconnected.clone())]);
    let loaded = store.load_session("rich").expect("load").expect("stored");
    assert_eq!(loaded.record, reconnected);
    assert_eq!(verified(&store).sessions, 2);
}

/// Queued messages load in sequence order; removing twice is harmless.
pub fn queue_keeps_order_and_removal_is_idempotent<H: Harness>(mut harness: H) {
    let store = harness.open();
    let mut ops = vec![put(record("c", SessionExpiry::Never, None))];
    for seq in [5, 1, 300, 256, 2] {
        ops.push(enqueue(
            "c",
            seq,
            message(&format!("t/{seq}"), QoS::AtLeastOnce, None),
        ));
    }
    // A client whose name extends "c" must not mix with it.
    ops.push(put(record("cc", SessionExpiry::Never, None)));
    ops.push(enqueue("cc", 3, message("other", QoS::AtLeastOnce, None)));
    write(&store, ops);
    assert_eq!(seqs(&store, "c"), [1, 2, 5, 256, 300]);
    let loaded = store.load_session("c").expect("load").expect("stored");
    assert_eq!(
        loaded.queue[2].message,
        message("t/5", QoS::AtLeastOnce, None)
    );

    let dequeue = |seq| Op::Dequeue {
        client_id: "c".into(),
        seq,
    };
    write(&store, vec![dequeue(1), dequeue(1), dequeue(999)]);
    write(&store, vec![dequeue(1)]);
    assert_eq!(seqs(&store, "c"), [2, 5, 256, 300]);
    assert_eq!(seqs(&store, "cc"), [3]);
    assert_eq!(verified(&store).queued_messages, 5);
}

/// In-flight entries in all three states round-trip and are replaced.
pub fn in_flight_states_round_trip<H: Harness>(mut harness: H) {
    let store = harness.open();
    let entry = |packet_id, entry| Op::PutInFlight {
        client_id: "c".into(),
        packet_id: id(packet_id),
        entry,
    };
    write(
        &store,
        vec![
            put(record("c", SessionExpiry::Never, None)),
            entry(
                3,
                InFlight::AwaitingPubAck(message("a", QoS::AtLeastOnce, Some(9))),
            ),
            entry(
                1,
                InFlight::AwaitingPubRec(message("b", QoS::ExactlyOnce, None)),
            ),
            entry(65_535, InFlight::AwaitingPubComp),
        ],
    );
    write(&store, vec![entry(1, InFlight::AwaitingPubComp)]);
    let loaded = store.load_session("c").expect("load").expect("stored");
    assert_eq!(
        loaded.in_flight,
        [
            (id(1), InFlight::AwaitingPubComp),
            (
                id(3),
                InFlight::AwaitingPubAck(message("a", QoS::AtLeastOnce, Some(9)))
            ),
            (id(65_535), InFlight::AwaitingPubComp),
        ]
    );
    write(
        &store,
        vec![Op::RemoveInFlight {
            client_id: "c".into(),
            packet_id: id(3),
        }],
    );
    assert_eq!(verified(&store).in_flight, 2);
    assert_eq!(
        verified(&store).expiry_entries,
        0,
        "in-flight messages are not expired"
    );
}

/// Incoming QoS 2 packet identifiers round-trip.
pub fn incoming_qos2_round_trip<H: Harness>(mut harness: H) {
    let store = harness.open();
    let incoming = |packet_id| Op::PutIncomingQos2 {
        client_id: "c".into(),
        packet_id: id(packet_id),
    };
    write(
        &store,
        vec![
            put(record("c", SessionExpiry::Never, None)),
            incoming(9),
            incoming(2),
            incoming(9),
        ],
    );
    let loaded = store.load_session("c").expect("load").expect("stored");
    assert_eq!(loaded.incoming_qos2, [id(2), id(9)]);
    write(
        &store,
        vec![Op::RemoveIncomingQos2 {
            client_id: "c".into(),
            packet_id: id(9),
        }],
    );
    assert_eq!(verified(&store).incoming_qos2, 1);
}

/// Removing a session removes its messages, identifiers and index entries.
pub fn removing_a_session_removes_everything<H: Harness>(mut harness: H) {
    let store = harness.open();
    write(
        &store,
        vec![
            put(record("gone", SessionExpiry::After(10), Some(0))),
            enqueue("gone", 1, message("a", QoS::AtLeastOnce, Some(100))),
            Op::PutInFlight {
                client_id: "gone".into(),
                packet_id: id(1),
                entry: InFlight::AwaitingPubComp,
            },
            Op::PutIncomingQos2 {
                client_id: "gone".into(),
                packet_id: id(1),
            },
            put(record("kept", SessionExpiry::Never, None)),
            enqueue("kept", 1, message("b", QoS::AtLeastOnce, Some(100))),
        ],
    );
    assert_eq!(verified(&store).expiry_entries, 3);
    write(
        &store,
        vec![
            Op::RemoveSession("gone".into()),
            Op::RemoveSession("never".into()),
        ],
    );
    assert_eq!(store.load_session("gone").expect("load"), None);
    let summary = verified(&store);
    assert_eq!(
        (
            summary.sessions,
            summary.queued_messages,
            summary.in_flight,
            summary.incoming_qos2
        ),
        (1, 1, 0, 0)
    );
    assert_eq!(summary.expiry_entries, 1);
}

/// A write with an invalid operation applies none of its operations.
pub fn a_failed_write_applies_nothing<H: Harness>(mut harness: H) {
    let store = harness.open();
    write(&store, vec![put(record("c", SessionExpiry::Never, None))]);
    let result = store
        .write(vec![
            enqueue("c", 1, message("a", QoS::AtLeastOnce, None)),
            put(record("new", SessionExpiry::Never, None)),
            Op::RemoveSession("c".into()),
            enqueue("c", 2, message("b", QoS::AtLeastOnce, None)),
        ])
        .wait();
    match result {
        Err(StoreError::UnknownSession { client_id, op }) => {
            assert_eq!((client_id.as_ref(), op), ("c", "Enqueue"));
        }
        other => panic!("expected UnknownSession, got {other:?}"),
    }
    assert_eq!(store.client_ids().expect("ids"), [ByteString::from("c")]);
    assert_eq!(seqs(&store, "c"), Vec::<u64>::new());
    // The store still works after a refused write.
    write(
        &store,
        vec![enqueue("c", 3, message("c", QoS::AtLeastOnce, None))],
    );
    assert_eq!(seqs(&store, "c"), [3]);
    verified(&store);
}

/// Values that could not be read back are refused, and nothing of their
/// write is applied.
pub fn unreadable_values_are_refused<H: Harness>(mut harness: H) {
    let store = harness.open();
    write(&store, vec![put(record("c", SessionExpiry::Never, None))]);
    for bad in [
        enqueue("c", 2, message("a/+", QoS::AtLeastOnce, None)),
        Op::PutRetained(message("", QoS::AtMostOnce, None)),
        put(record(&"x".repeat(70_000), SessionExpiry::Never, None)),
    ] {
        let name = bad.name();
        let result = store
            .write(vec![
                enqueue("c", 1, message("ok", QoS::AtLeastOnce, None)),
                bad,
            ])
            .wait();
        assert!(
            matches!(result, Err(StoreError::InvalidWrite(_))),
            "{name}: {result:?}"
        );
    }
    assert_eq!(seqs(&store, "c"), Vec::<u64>::new());
    assert!(store.retained().expect("retained").is_empty());
    verified(&store);
}

/// Retained messages are stored by topic, replaced and removed.
pub fn retained_messages_round_trip<H: Harness>(mut harness: H) {
    let store = harness.open();
    write(
        &store,
        vec![
            Op::PutRetained(message("b", QoS::AtLeastOnce, Some(10))),
            Op::PutRetained(message("a", QoS::AtMostOnce, None)),
            Op::PutRetained(message("b", QoS::ExactlyOnce, None)),
        ],
    );
    let retained = store.retained().expect("retained");
    assert_eq!(
        retained,
        [
            message("a", QoS::AtMostOnce, None),
            message("b", QoS::ExactlyOnce, None)
        ]
    );
    assert_eq!(
        verified(&store).expiry_entries,
        0,
        "the replaced expiry went too"
    );
    write(
        &store,
        vec![
            Op::RemoveRetained("a".into()),
            Op::RemoveRetained("zz".into()),
        ],
    );
    assert_eq!(store.retained().expect("retained").len(), 1);
}

/// Sessions are removed by `expire` exactly when due, with their messages.
pub fn sessions_expire_on_time<H: Harness>(mut harness: H) {
    let store = harness.open();
    write(
        &store,
        vec![
            put(record("short", SessionExpiry::After(1), Some(1_000))),
            enqueue("short", 0, message("a", QoS::AtLeastOnce, Some(500_000))),
            put(record("long", SessionExpiry::After(100), Some(1_000))),
            put(record("connected", SessionExpiry::After(1), None)),
            put(record("forever", SessionExpiry::Never, Some(0))),
        ],
    );
    let expired = store.expire(at(1_999)).wait().expect("expire");
    assert!(expired.sessions.is_empty());
    let expired = store.expire(at(2_000)).wait().expect("expire");
    assert_eq!(expired.sessions, [ByteString::from("short")]);
    assert_eq!(
        expired.queued_messages, 0,
        "messages of an ended session are not counted"
    );
    assert_eq!(store.load_session("short").expect("load"), None);
    let expired = store.expire(at(u64::MAX)).wait().expect("expire");
    assert_eq!(expired.sessions, [ByteString::from("long")]);
    let ids = store.client_ids().expect("ids");
    assert_eq!(
        ids,
        [ByteString::from("connected"), ByteString::from("forever")]
    );
    assert_eq!(verified(&store).expiry_entries, 0);
}

/// Queued and retained messages are removed by `expire` when due.
pub fn messages_expire_on_time<H: Harness>(mut harness: H) {
    let store = harness.open();
    write(
        &store,
        vec![
            put(record("c", SessionExpiry::Never, None)),
            enqueue("c", 1, message("a", QoS::AtLeastOnce, Some(100))),
            enqueue("c", 2, message("b", QoS::AtLeastOnce, Some(300))),
            enqueue("c", 3, message("c", QoS::AtLeastOnce, None)),
            Op::PutRetained(message("r1", QoS::AtMostOnce, Some(100))),
            Op::PutRetained(message("r2", QoS::AtMostOnce, Some(1_000))),
        ],
    );
    let expired = store.expire(at(100)).wait().expect("expire");
    assert_eq!((expired.queued_messages, expired.retained_messages), (1, 1));
    assert_eq!(seqs(&store, "c"), [2, 3]);
    let expired = store.expire(at(100)).wait().expect("expire");
    assert_eq!(expired, crate::Expired::default(), "nothing is due twice");
    let expired = store.expire(at(5_000)).wait().expect("expire");
    assert_eq!((expired.queued_messages, expired.retained_messages), (1, 1));
    assert_eq!(seqs(&store, "c"), [3]);
    assert_eq!(verified(&store).expiry_entries, 0);
}

/// A session that reconnects or changes expiry is indexed at its new time.
pub fn moving_an_expiry_moves_its_index_entry<H: Harness>(mut harness: H) {
    let store = harness.open();
    write(
        &store,
        vec![put(record("c", SessionExpiry::After(1), Some(0)))],
    );
    write(
        &store,
        vec![put(record("c", SessionExpiry::After(1), None))],
    );
    assert_eq!(verified(&store).expiry_entries, 0);
    write(
        &store,
        vec![put(record("c", SessionExpiry::After(10), Some(5_000)))],
    );
    let expired = store.expire(at(14_999)).wait().expect("expire");
    assert!(expired.sessions.is_empty(), "the old expiry time is gone");
    assert_eq!(verified(&store).expiry_entries, 1);
    let expired = store.expire(at(15_000)).wait().expect("expire");
    assert_eq!(expired.sessions.len(), 1);
}

/// Writes from many threads at once all land.
pub fn concurrent_writers_all_land<H: Harness>(mut harness: H) {
    const THREADS: u64 = 8;
    const WRITES: u64 = 40;
    let store = harness.open();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let store = &store;
            scope.spawn(move || {
                let client = format!("client-{thread}");
                write(
                    store,
                    vec![put(record(&client, SessionExpiry::Never, None))],
                );
                for seq in 0..WRITES {
                    let message = message(&client, QoS::AtLeastOnce, None);
                    write(store, vec![enqueue(&client, seq, message)]);
                }
            });
        }
    });
    let summary = verified(&store);
    assert_eq!(
        (summary.sessions, summary.queued_messages),
        (THREADS, THREADS * WRITES)
    );
}

/// A [`Session`]'s recorded changes, applied to a store, load back into an
/// equal session.
pub fn session_model_round_trip<H: Harness>(mut harness: H) {
    let store = harness.open();
    let limits = SessionLimits::default();
    let mut session = Session::new("model".into(), SessionExpiry::After(60), limits);
    session.subscribe(
        TopicFilter::new("a/#").expect("valid"),
        Subscription {
            options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
            identifier: None,
        },
    );
    for (index, qos) in [QoS::AtLeastOnce, QoS::ExactlyOnce, QoS::AtLeastOnce]
        .into_iter()
        .enumerate()
    {
        session.enqueue(message(&format!("a/{index}"), qos, None));
    }
    write(&store, session.take_changes());
    session.next_delivery(at(0));
    session.next_delivery(at(0));
    session.receive_qos2(id(77));
    session.disconnect(at(10));
    write(&store, session.take_changes());

    let stored = store.load_session("model").expect("load").expect("stored");
    let restored = Session::restore(stored, limits, at(20));
    assert_eq!(restored.record(), session.record());
    let queue = |s: &Session| s.queue().iter().cloned().collect::<Vec<_>>();
    assert_eq!(queue(&restored), queue(&session));
    let in_flight = |s: &Session| {
        s.in_flight()
            .iter()
            .map(|(k, v)| (k, v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(in_flight(&restored), in_flight(&session));
    assert_eq!(restored.incoming_qos2(), session.incoming_qos2());
}

/// Completed writes are there after the store is closed and reopened.
pub fn writes_survive_reopen<H: Harness>(mut harness: H) {
    let store = harness.open();
    write(
        &store,
        vec![
            put(record("c", SessionExpiry::After(5), Some(0))),
            enqueue("c", 1, message("a", QoS::AtLeastOnce, Some(100))),
            Op::PutRetained(message("r", QoS::AtMostOnce, None)),
        ],
    );
    let before = verified(&store);
    let store = harness.reopen(store);
    assert_eq!(verified(&store), before);
    assert_eq!(seqs(&store, "c"), [1]);
    let expired = store.expire(at(5_000)).wait().expect("expire");
    assert_eq!(expired.sessions, [ByteString::from("c")]);
    let store = harness.reopen(store);
    assert_eq!(store.client_ids().expect("ids"), Vec::<ByteString>::new());
    assert_eq!(store.retained().expect("retained").len(), 1);
}

/// With nothing waiting, [`SessionStore::ready`] completes at once, and
/// writes submitted before it are all applied once they complete.
pub fn an_idle_store_is_ready_for_writes<H: Harness>(mut harness: H) {
    let store = harness.open();
    if let Err(error) = store.ready().wait() {
        panic!("an idle store is not ready: {error}");
    }
    write(&store, vec![put(record("c", SessionExpiry::Never, None))]);
    let pending: Vec<_> = (0..64)
        .map(|seq| {
            store.write(vec![enqueue(
                "c",
                seq,
                message("t", QoS::AtLeastOnce, None),
            )])
        })
        .collect();
    if let Err(error) = store.ready().wait() {
        panic!("ready failed: {error}");
    }
    for write in pending {
        write.wait().expect("applied");
    }
    assert_eq!(verified(&store).queued_messages, 64);
}
