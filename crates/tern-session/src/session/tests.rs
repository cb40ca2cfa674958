//! Unit tests of the session model: no I/O, time passed in.

use tern_codec::{Publish, QoS, ReasonCode, SubscriptionOptions};

use super::*;

pub(super) const CLIENT: &str = "client-1";

pub(super) fn id(value: u16) -> PacketId {
    PacketId::new(value).expect("test ids are non-zero")
}

pub(super) fn at(millis: u64) -> Timestamp {
    Timestamp::from_millis(millis)
}

pub(super) fn message(qos: QoS, topic: &str) -> Message {
    let mut publish = Publish::new(topic, "payload");
    publish.qos = qos;
    Message::new(publish, at(0))
}

fn expiring(qos: QoS, topic: &str, now: u64, seconds: u32) -> Message {
    let mut publish = Publish::new(topic, "payload");
    publish.qos = qos;
    publish.properties_mut().message_expiry_interval = Some(seconds);
    Message::new(publish, at(now))
}

pub(super) fn session(expiry: SessionExpiry, limits: SessionLimits) -> Session {
    let mut session = Session::new(CLIENT.into(), expiry, limits);
    session.take_changes();
    session
}

pub(super) fn persistent() -> Session {
    session(SessionExpiry::After(60), SessionLimits::default())
}

pub(super) fn names(ops: &[Op]) -> Vec<&'static str> {
    ops.iter().map(Op::name).collect()
}

#[test]
fn only_persistent_sessions_record_changes() {
    let mut clean = Session::new(
        CLIENT.into(),
        SessionExpiry::OnDisconnect,
        SessionLimits::default(),
    );
    clean.enqueue(message(QoS::AtLeastOnce, "t"));
    assert!(clean.take_changes().is_empty());

    let mut kept = Session::new(
        CLIENT.into(),
        SessionExpiry::Never,
        SessionLimits::default(),
    );
    kept.enqueue(message(QoS::AtLeastOnce, "t"));
    kept.enqueue(message(QoS::AtMostOnce, "t"));
    assert_eq!(
        names(&kept.take_changes()),
        ["PutSession", "Enqueue"],
        "QoS 0 is not stored"
    );
}

#[test]
fn delivery_moves_a_message_in_flight_with_a_fresh_packet_id() {
    let mut session = persistent();
    session.enqueue(message(QoS::AtLeastOnce, "a"));
    let publish = session.next_delivery(at(10)).expect("a message to send");
    assert_eq!(publish.packet_id, Some(id(1)));
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    assert_eq!(
        session.in_flight().get(id(1)).map(InFlight::state),
        Some(InFlightState::AwaitingPubAck)
    );
    // Enqueued and taken in the same span: only the in-flight entry is written.
    assert_eq!(names(&session.take_changes()), ["PutInFlight"]);

    assert_eq!(
        session.acknowledge(id(1), Acknowledgement::PubAck),
        Ok(AckOutcome::Completed)
    );
    assert_eq!(names(&session.take_changes()), ["RemoveInFlight"]);
    assert!(session.in_flight().is_empty());
}

#[test]
fn queued_message_taken_later_is_dequeued_in_the_store() {
    let mut session = persistent();
    session.enqueue(message(QoS::AtLeastOnce, "a"));
    assert_eq!(names(&session.take_changes()), ["Enqueue"]);
    session.next_delivery(at(0)).expect("a message");
    assert_eq!(names(&session.take_changes()), ["Dequeue", "PutInFlight"]);
}

#[test]
fn qos2_exchange_through_the_session() {
    let mut session = persistent();
    session.enqueue(message(QoS::ExactlyOnce, "a"));
    let publish = session.next_delivery(at(0)).expect("a message");
    let packet_id = publish.packet_id.expect("QoS 2 has a packet id");
    session.take_changes();

    let error = session
        .acknowledge(packet_id, Acknowledgement::PubAck)
        .expect_err("wrong ack");
    assert_eq!(error.reason_code(), ReasonCode::ProtocolError);
    assert_eq!(
        session.acknowledge(packet_id, Acknowledgement::PubRec),
        Ok(AckOutcome::SendPubRel)
    );
    let changes = session.take_changes();
    assert!(matches!(
        &changes[..],
        [Op::PutInFlight {
            entry: InFlight::AwaitingPubComp,
            ..
        }]
    ));
    assert_eq!(
        session.acknowledge(packet_id, Acknowledgement::PubComp),
        Ok(AckOutcome::Completed)
    );
    assert_eq!(names(&session.take_changes()), ["RemoveInFlight"]);
    let error = session
        .acknowledge(packet_id, Acknowledgement::PubComp)
        .expect_err("gone");
    assert_eq!(error.reason_code(), ReasonCode::PacketIdentifierNotFound);
}

#[test]
fn the_in_flight_window_holds_back_qos1_but_not_qos0() {
    let limits = SessionLimits {
        max_queued_messages: 10,
        max_inflight_messages: 1,
    };
    let mut session = session(SessionExpiry::Never, limits);
    assert!(!session.can_deliver(), "nothing queued");
    session.enqueue(message(QoS::AtLeastOnce, "first"));
    session.enqueue(message(QoS::AtLeastOnce, "second"));
    assert!(session.can_deliver());
    assert!(session.next_delivery(at(0)).is_some());
    assert!(!session.can_deliver(), "the window of one is full");
    assert_eq!(session.next_delivery(at(0)), None, "window of one is full");
    assert_eq!(session.queue().len(), 1);
    session
        .acknowledge(id(1), Acknowledgement::PubAck)
        .expect("in flight");
    assert!(session.can_deliver(), "the acknowledgement made room");
    let second = session.next_delivery(at(0)).expect("room again");
    assert_eq!(
        (second.topic.as_ref(), second.packet_id),
        ("second", Some(id(2)))
    );

    let mut session = Session::new(CLIENT.into(), SessionExpiry::Never, limits);
    session.enqueue(message(QoS::AtLeastOnce, "held"));
    session.next_delivery(at(0));
    session.enqueue(message(QoS::AtMostOnce, "fire-and-forget"));
    assert!(session.can_deliver(), "QoS 0 needs no room in the window");
    assert_eq!(
        session.next_delivery(at(0)).map(|p| p.packet_id),
        Some(None)
    );
}

#[test]
fn expired_messages_are_dropped_and_counted_at_delivery() {
    let mut session = persistent();
    session.enqueue(expiring(QoS::AtLeastOnce, "dies", 0, 1));
    session.enqueue(expiring(QoS::AtLeastOnce, "lives", 0, 100));
    session.take_changes();
    let publish = session.next_delivery(at(40_000)).expect("the live one");
    assert_eq!(publish.topic, "lives");
    assert_eq!(
        publish.properties().message_expiry_interval,
        Some(60),
        "100 s less 40 s waited"
    );
    assert_eq!(session.drops().expired, 1);
    assert_eq!(
        names(&session.take_changes()),
        ["Dequeue", "Dequeue", "PutInFlight"]
    );
}

#[test]
fn drop_expired_reaches_the_whole_queue() {
    let mut session = persistent();
    session.enqueue(message(QoS::AtLeastOnce, "forever"));
    session.enqueue(expiring(QoS::AtLeastOnce, "short", 0, 1));
    session.take_changes();
    assert_eq!(session.drop_expired(at(1_000)), 1);
    assert_eq!(names(&session.take_changes()), ["Dequeue"]);
    assert_eq!(session.queue().len(), 1);
}

#[test]
fn a_full_queue_drops_by_policy_and_deletes_stored_copies() {
    let limits = SessionLimits {
        max_queued_messages: 2,
        max_inflight_messages: 10,
    };
    let mut session = session(SessionExpiry::Never, limits);
    session.enqueue(message(QoS::AtLeastOnce, "a"));
    session.enqueue(message(QoS::AtMostOnce, "b"));
    assert_eq!(
        names(&session.take_changes()),
        ["Enqueue"],
        "QoS 0 is not stored"
    );
    assert_eq!(
        session.enqueue(message(QoS::AtLeastOnce, "c")),
        Some(DropReason::QueueFullQos0)
    );
    assert_eq!(
        session.enqueue(message(QoS::AtMostOnce, "d")),
        Some(DropReason::QueueFullQos0)
    );
    assert_eq!(
        session.enqueue(message(QoS::AtLeastOnce, "e")),
        Some(DropReason::QueueFullOldest)
    );
    let drops = session.drops();
    assert_eq!(
        (
            drops.queue_full_qos0,
            drops.queue_full_oldest,
            drops.total()
        ),
        (2, 1, 3)
    );
    let changes = session.take_changes();
    // c and e stored; a deleted to make room for e.
    assert_eq!(names(&changes), ["Enqueue", "Dequeue", "Enqueue"]);
    assert!(matches!(changes[1], Op::Dequeue { seq: 0, .. }));
}

#[test]
fn resuming_resends_publishes_with_dup_and_pubrels() {
    let mut session = persistent();
    session.enqueue(message(QoS::AtLeastOnce, "one"));
    session.enqueue(message(QoS::ExactlyOnce, "two"));
    session.next_delivery(at(0));
    session.next_delivery(at(0));
    session
        .acknowledge(id(2), Acknowledgement::PubRec)
        .expect("in flight");
    session.disconnect(at(1_000));
    let resend = session.connect(at(2_000), 10, None);
    assert!(session.is_connected());
    assert_eq!(resend.len(), 2);
    let Resend::Publish(publish) = &resend[0] else {
        panic!("expected a PUBLISH, got {resend:?}");
    };
    assert!(publish.dup);
    assert_eq!(publish.packet_id, Some(id(1)));
    assert_eq!(resend[1], Resend::PubRel(id(2)));
}

#[test]
fn session_expiry_counts_from_the_disconnection() {
    let mut session = persistent();
    assert_eq!(
        session.expires_at(),
        None,
        "connected sessions do not expire"
    );
    session.disconnect(at(1_000));
    assert_eq!(session.expires_at(), Some(at(61_000)));
    assert!(!session.is_expired(at(60_999)));
    assert!(session.is_expired(at(61_000)));
    session.connect(at(30_000), 10, None);
    assert!(!session.is_expired(at(1_000_000)));

    let mut forever = Session::new(
        CLIENT.into(),
        SessionExpiry::Never,
        SessionLimits::default(),
    );
    forever.disconnect(at(0));
    assert!(!forever.is_expired(at(u64::MAX)));

    let mut clean = Session::new(
        CLIENT.into(),
        SessionExpiry::OnDisconnect,
        SessionLimits::default(),
    );
    clean.disconnect(at(5));
    assert!(clean.is_expired(at(5)), "expiry 0 ends with the connection");
}

#[test]
fn will_is_due_at_the_earlier_of_its_delay_and_the_session_end() {
    let will = |delay| Will::new(message(QoS::AtLeastOnce, "will").publish().clone(), delay);
    let mut session = persistent();
    session.connect(at(0), 10, Some(will(30)));
    assert_eq!(session.will_due_at(), None, "not while connected");
    session.disconnect(at(1_000));
    assert_eq!(session.will_due_at(), Some(at(31_000)));
    assert_eq!(session.take_due_will(at(30_999)), None);
    session.take_changes();
    assert_eq!(
        session
            .take_due_will(at(31_000))
            .map(|m| m.topic().to_owned()),
        Some("will".into())
    );
    assert_eq!(session.will(), None);
    assert_eq!(names(&session.take_changes()), ["PutSession"]);

    session.connect(at(2_000), 10, Some(will(600)));
    session.disconnect(at(2_000));
    assert_eq!(
        session.will_due_at(),
        Some(at(62_000)),
        "the session ends first"
    );

    session.connect(at(3_000), 10, Some(will(0)));
    session.discard_will();
    session.disconnect(at(3_000));
    assert_eq!(session.will_due_at(), None);
}

#[test]
fn incoming_qos2_ids_are_remembered_until_released() {
    let mut session = persistent();
    assert!(session.receive_qos2(id(5)));
    assert!(
        !session.receive_qos2(id(5)),
        "a redelivery is not routed twice"
    );
    assert!(session.release_qos2(id(5)));
    assert!(!session.release_qos2(id(5)));
    assert_eq!(
        names(&session.take_changes()),
        ["PutIncomingQos2", "RemoveIncomingQos2"]
    );
}

#[test]
fn subscriptions_are_replaced_and_removed() {
    let mut session = persistent();
    let filter = TopicFilter::new("a/+").expect("valid");
    let first = Subscription {
        options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
        identifier: None,
    };
    let second = Subscription {
        options: SubscriptionOptions::with_qos(QoS::ExactlyOnce),
        identifier: NonZeroU32::new(7),
    };
    assert_eq!(session.subscribe(filter.clone(), first), None);
    assert_eq!(session.subscribe(filter.clone(), second), Some(first));
    assert_eq!(session.subscriptions().get(&filter), Some(&second));
    assert!(session.unsubscribe(&filter));
    assert!(!session.unsubscribe(&filter));
    // Three record changes, one PutSession written.
    assert_eq!(names(&session.take_changes()), ["PutSession"]);
}

#[test]
fn coalescing_keeps_order_around_a_removal() {
    let mut session = persistent();
    session.set_expiry(SessionExpiry::OnDisconnect);
    session.set_expiry(SessionExpiry::Never);
    let changes = session.take_changes();
    assert_eq!(names(&changes), ["RemoveSession", "PutSession"]);
}

#[test]
fn becoming_persistent_stores_the_whole_session() {
    let mut session = Session::new(
        CLIENT.into(),
        SessionExpiry::OnDisconnect,
        SessionLimits::default(),
    );
    session.enqueue(message(QoS::AtLeastOnce, "queued"));
    session.enqueue(message(QoS::AtLeastOnce, "sent"));
    session.next_delivery(at(0));
    session.receive_qos2(id(9));
    assert!(session.take_changes().is_empty());
    session.set_expiry(SessionExpiry::After(10));
    assert_eq!(
        names(&session.take_changes()),
        ["PutSession", "Enqueue", "PutInFlight", "PutIncomingQos2"]
    );
}

#[test]
fn restoring_a_session_stored_as_connected_disconnects_it() {
    let mut original = persistent();
    original.enqueue(message(QoS::AtLeastOnce, "a"));
    original.enqueue(message(QoS::AtLeastOnce, "b"));
    original.next_delivery(at(0));
    let stored = StoredSession {
        record: original.record().clone(),
        queue: original.queue().iter().cloned().collect(),
        in_flight: original
            .in_flight()
            .iter()
            .map(|(id, e)| (id, e.clone()))
            .collect(),
        incoming_qos2: Vec::new(),
    };
    let mut restored = Session::restore(stored, SessionLimits::default(), at(5_000));
    assert!(!restored.is_connected());
    assert_eq!(restored.expires_at(), Some(at(65_000)));
    assert_eq!(names(&restored.take_changes()), ["PutSession"]);
    // New messages continue the sequence; new packet ids skip the one in use.
    restored.enqueue(message(QoS::AtLeastOnce, "c"));
    assert!(matches!(
        restored.take_changes()[..],
        [Op::Enqueue { seq: 2, .. }]
    ));
    restored.connect(at(6_000), 10, None);
    let next = restored.next_delivery(at(6_000));
    assert_eq!(next.and_then(|publish| publish.packet_id), Some(id(2)));
}

fn will_publish(expiry_interval: Option<u32>) -> Publish {
    let mut publish = Publish::new("will", "gone");
    publish.qos = QoS::AtLeastOnce;
    publish.properties_mut().message_expiry_interval = expiry_interval;
    publish
}

#[test]
fn a_delayed_will_counts_its_expiry_from_publication() {
    // MQTT 5 §3.1.3.2.4: the will's Message Expiry Interval starts when it
    // is published, not at CONNECT.
    let mut session = persistent();
    session.connect(at(0), 10, Some(Will::new(will_publish(Some(10)), 30)));
    session.disconnect(at(100_000));
    let published_at = at(130_000);
    let message = session.take_due_will(published_at).expect("due");
    assert_eq!(message.expires_at(), Some(at(140_000)));
    assert!(!message.is_expired(published_at));
    assert_eq!(
        message
            .to_publish(published_at, None, false)
            .properties()
            .message_expiry_interval,
        Some(10)
    );
}

#[test]
fn take_will_takes_it_whenever_asked() {
    let mut session = persistent();
    session.connect(at(0), 10, Some(Will::new(will_publish(None), 600)));
    let will = session.take_will().expect("taken while connected");
    assert_eq!((will.delay(), will.expiry_interval()), (600, None));
    assert_eq!(names(&session.take_changes()), ["PutSession"]);
    assert_eq!(session.take_will(), None);
    assert_eq!(
        will.into_message(at(5)).expires_at(),
        None,
        "no interval, no expiry"
    );
}

#[test]
fn a_message_in_flight_can_be_dropped_and_counted() {
    let mut session = persistent();
    session.enqueue(message(QoS::AtLeastOnce, "big"));
    session.enqueue(message(QoS::AtMostOnce, "big0"));
    let publish = session.next_delivery(at(0)).expect("a message");
    session.take_changes();
    assert!(session.drop_delivery(publish.packet_id, DropReason::PacketTooLarge));
    assert!(session.in_flight().is_empty());
    assert_eq!(names(&session.take_changes()), ["RemoveInFlight"]);
    assert!(
        !session.drop_delivery(publish.packet_id, DropReason::PacketTooLarge),
        "already gone"
    );
    let qos0 = session.next_delivery(at(0)).expect("the QoS 0 one");
    assert!(session.drop_delivery(qos0.packet_id, DropReason::PacketTooLarge));
    assert!(session.take_changes().is_empty(), "QoS 0 is not stored");
    assert_eq!(session.drops().packet_too_large, 2);
    assert_eq!(session.drops().total(), 2);
    // The packet identifier is free again.
    session.enqueue(message(QoS::AtLeastOnce, "small"));
    assert_eq!(
        session.next_delivery(at(0)).and_then(|p| p.packet_id),
        Some(id(2)),
        "allocation moves on, and 1 is free for later"
    );
}

#[test]
fn a_qos2_exchange_past_pubrec_is_not_dropped() {
    let mut session = persistent();
    session.enqueue(message(QoS::ExactlyOnce, "two"));
    let packet_id = session.next_delivery(at(0)).and_then(|p| p.packet_id);
    let packet_id = packet_id.expect("QoS 2 has a packet id");
    session
        .acknowledge(packet_id, Acknowledgement::PubRec)
        .expect("in flight");
    assert!(!session.drop_delivery(Some(packet_id), DropReason::PacketTooLarge));
    assert_eq!(session.drops().total(), 0);
    assert_eq!(session.in_flight().len(), 1, "PUBCOMP still awaited");
}
