//! Unit tests of an idle session's memory: the delivery state is boxed,
//! allocated when first needed and freed by
//! [`Session::release_idle_memory`], which changes nothing but memory.

use std::fmt::Debug;

use tern_codec::QoS;

use super::tests::{CLIENT, at, id, message, names, persistent, session};
use super::*;

/// Every client has a `Session` inside its `SessionCell` (tern-broker), an
/// `Arc` kept for as long as the session lives, connected or not. With a
/// 272-byte session the cell took 472 bytes, so 512 in jemalloc's size
/// classes; the rest of the cell is the `Arc`'s counts, its locks, its
/// notification, key and client id. With a session of 128 bytes the cell
/// takes 320, jemalloc's 320-byte class (its own test bounds it). A field
/// that grows the session past this bound makes every idle client larger
/// (docs/performance.md, "Idle connections"): put what only a busy
/// session needs into [`Delivery`] instead.
const SESSION_LIMIT: usize = 128;

/// The delivery state, allocated by every session with something queued,
/// in flight or awaiting PUBREL: 128 bytes is one of jemalloc's size
/// classes, the next is 160.
const DELIVERY_LIMIT: usize = 128;

#[test]
fn an_idle_session_stays_small() {
    let session = size_of::<Session>();
    let delivery = size_of::<Delivery>();
    println!("session {session} bytes, its delivery state {delivery} bytes");
    assert!(
        session <= SESSION_LIMIT,
        "a session takes {session} bytes, more than {SESSION_LIMIT}"
    );
    assert!(
        delivery <= DELIVERY_LIMIT,
        "a session's delivery state takes {delivery} bytes, more than {DELIVERY_LIMIT}"
    );
}

fn holds_delivery_state(session: &Session) -> bool {
    session.delivery.is_some()
}

fn enqueued_seqs(changes: &[Op]) -> Vec<u64> {
    changes
        .iter()
        .filter_map(|op| match op {
            Op::Enqueue { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

fn limits(max_queued_messages: usize, max_inflight_messages: u16) -> SessionLimits {
    SessionLimits {
        max_queued_messages,
        max_inflight_messages,
    }
}

#[test]
fn a_session_without_delivery_state_reads_as_empty_and_stays_so() {
    let mut session = persistent();
    assert!(!holds_delivery_state(&session), "a new session has none");
    assert!(session.queue().is_empty());
    assert_eq!(session.queue().iter().count(), 0);
    assert!(session.in_flight().is_empty());
    assert_eq!(session.in_flight().get(id(1)), None);
    assert!(session.incoming_qos2().is_empty());
    assert!(!session.can_deliver());
    assert_eq!(session.drops(), DropCounters::default());
    assert_eq!(session.limits(), SessionLimits::default());

    // What finds nothing allocates nothing.
    assert_eq!(session.next_delivery(at(0)), None);
    assert_eq!(
        session.acknowledge(id(1), Acknowledgement::PubAck),
        Err(SessionError::PacketIdNotFound {
            packet_id: id(1),
            ack: Acknowledgement::PubAck,
        })
    );
    assert!(!session.release_qos2(id(1)));
    assert!(!session.drop_delivery(Some(id(1)), DropReason::PacketTooLarge));
    assert_eq!(session.drop_expired(at(0)), 0);
    assert!(session.connect(at(0), 10, None).is_empty());
    assert_eq!(names(&session.snapshot_ops()), ["PutSession"]);
    // A drop of a QoS 0 message taken earlier is counted apart.
    assert!(session.drop_delivery(None, DropReason::NotAuthorized));
    assert_eq!(session.drops().not_authorized, 1);
    assert!(!holds_delivery_state(&session));
    assert_eq!(names(&session.take_changes()), ["PutSession"]);
}

#[test]
fn releasing_frees_nothing_while_something_is_held() {
    let mut session = persistent();
    session.enqueue(message(QoS::ExactlyOnce, "a"));
    session.release_idle_memory();
    assert!(holds_delivery_state(&session), "a message is queued");
    assert_eq!(session.queue().len(), 1);

    let packet_id = session.next_delivery(at(0)).and_then(|p| p.packet_id);
    let packet_id = packet_id.expect("QoS 2 has a packet id");
    session.release_idle_memory();
    assert!(holds_delivery_state(&session), "a message is in flight");
    assert_eq!(
        session.acknowledge(packet_id, Acknowledgement::PubRec),
        Ok(AckOutcome::SendPubRel)
    );
    session.release_idle_memory();
    assert!(holds_delivery_state(&session), "PUBCOMP is awaited");
    assert_eq!(
        session.in_flight().get(packet_id),
        Some(&InFlight::AwaitingPubComp)
    );
    assert_eq!(
        session.acknowledge(packet_id, Acknowledgement::PubComp),
        Ok(AckOutcome::Completed)
    );
    session.release_idle_memory();
    assert!(!holds_delivery_state(&session), "nothing left");

    assert!(session.receive_qos2(id(7)));
    session.release_idle_memory();
    assert!(holds_delivery_state(&session), "PUBREL is awaited");
    assert!(!session.receive_qos2(id(7)), "still a redelivery");
    assert!(session.release_qos2(id(7)));
    session.release_idle_memory();
    assert!(!holds_delivery_state(&session));
    assert!(!session.release_qos2(id(7)));
    assert!(session.receive_qos2(id(7)), "new again once released");
}

#[test]
fn sequence_numbers_keep_increasing_across_a_release() {
    // The store keys queued messages by sequence number, and a cluster
    // handover marks its place with one: a number must not come back.
    let mut session = persistent();
    let mut seqs = Vec::new();
    for round in 0..3 {
        session.enqueue(message(QoS::AtLeastOnce, "a"));
        session.enqueue(message(QoS::AtLeastOnce, "b"));
        seqs.extend(enqueued_seqs(&session.take_changes()));
        while let Some(publish) = session.next_delivery(at(0)) {
            let packet_id = publish.packet_id.expect("QoS 1 has a packet id");
            session
                .acknowledge(packet_id, Acknowledgement::PubAck)
                .expect("in flight");
        }
        session.take_changes();
        session.release_idle_memory();
        assert!(!holds_delivery_state(&session), "round {round}");
    }
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn packet_identifiers_keep_rotating_across_a_release() {
    let mut session = persistent();
    let mut packet_ids = Vec::new();
    for _ in 0..3 {
        session.enqueue(message(QoS::AtLeastOnce, "a"));
        let packet_id = session.next_delivery(at(0)).and_then(|p| p.packet_id);
        let packet_id = packet_id.expect("QoS 1 has a packet id");
        session
            .acknowledge(packet_id, Acknowledgement::PubAck)
            .expect("in flight");
        session.release_idle_memory();
        assert!(!holds_delivery_state(&session));
        packet_ids.push(packet_id.get());
    }
    assert_eq!(packet_ids, [1, 2, 3]);
}

#[test]
fn the_in_flight_limit_of_connect_survives_a_release() {
    let mut session = session(SessionExpiry::Never, SessionLimits::default());
    session.disconnect(at(0));
    session.connect(at(1_000), 1, None);
    session.release_idle_memory();
    assert!(!holds_delivery_state(&session));
    assert_eq!(session.limits(), limits(1000, 1));

    session.enqueue(message(QoS::AtLeastOnce, "a"));
    session.enqueue(message(QoS::AtLeastOnce, "b"));
    let first = session.next_delivery(at(1_000)).expect("room for one");
    assert!(!session.can_deliver(), "the window of one is full");
    assert_eq!(session.next_delivery(at(1_000)), None);
    session
        .acknowledge(first.packet_id.expect("QoS 1"), Acknowledgement::PubAck)
        .expect("in flight");
    assert!(session.can_deliver());
    session.next_delivery(at(1_000)).expect("room again");
    assert!(session.in_flight().len() == 1 && session.queue().is_empty());
}

#[test]
fn the_queue_capacity_survives_a_release() {
    let mut session = session(SessionExpiry::Never, limits(2, 10));
    session.enqueue(message(QoS::AtMostOnce, "a"));
    session.next_delivery(at(0)).expect("QoS 0");
    session.release_idle_memory();
    assert!(!holds_delivery_state(&session));
    session.enqueue(message(QoS::AtLeastOnce, "b"));
    session.enqueue(message(QoS::AtLeastOnce, "c"));
    assert_eq!(
        session.enqueue(message(QoS::AtLeastOnce, "d")),
        Some(DropReason::QueueFullOldest)
    );
    assert_eq!(session.queue().len(), 2);
}

#[test]
fn queue_capacities_beyond_u32_are_saturated() {
    let huge = session(SessionExpiry::Never, limits(usize::MAX, 10));
    let expected = usize::try_from(u32::MAX).expect("a 32- or 64-bit target");
    assert_eq!(huge.limits().max_queued_messages, expected);
    let none = session(SessionExpiry::Never, limits(0, 0));
    assert_eq!(none.limits(), limits(1, 1), "at least one of each");
}

#[test]
fn drop_counters_survive_a_release() {
    let mut session = persistent();
    let mut publish = message(QoS::AtLeastOnce, "old").publish().clone();
    publish.properties_mut().message_expiry_interval = Some(1);
    session.enqueue(Message::new(publish, at(0)));
    assert_eq!(session.next_delivery(at(1_000)), None, "expired");
    session.release_idle_memory();
    assert!(!holds_delivery_state(&session));
    assert_eq!(session.drops().expired, 1);
    assert!(session.drop_delivery(None, DropReason::PacketTooLarge));
    assert_eq!(session.drops().total(), 2);
}

#[test]
fn a_restored_session_holds_its_stored_delivery_state() {
    let mut original = persistent();
    for topic in ["a", "b", "c"] {
        original.enqueue(message(QoS::AtLeastOnce, topic));
    }
    original.next_delivery(at(0)).expect("a in flight");
    original.receive_qos2(id(40));
    // Stored sequence numbers need not be contiguous.
    let mut queue: Vec<Queued> = original.queue().iter().cloned().collect();
    queue[1].seq = 44;
    let stored = StoredSession {
        record: original.record().clone(),
        queue,
        in_flight: original
            .in_flight()
            .iter()
            .map(|(packet_id, entry)| (packet_id, entry.clone()))
            .collect(),
        incoming_qos2: vec![id(40)],
    };
    let mut restored = Session::restore(stored, limits(10, 5), at(5_000));
    restored.take_changes();
    assert!(holds_delivery_state(&restored));
    assert_eq!(restored.queue().len(), 2);
    assert_eq!(restored.in_flight().len(), 1);
    assert!(restored.incoming_qos2().contains(&id(40)));
    assert_eq!(restored.limits(), limits(10, 5));
    restored.release_idle_memory();
    assert!(holds_delivery_state(&restored), "all of it still held");

    // New messages continue the sequence.
    restored.enqueue(message(QoS::AtLeastOnce, "d"));
    assert_eq!(enqueued_seqs(&restored.take_changes()), [45]);
    let resend = restored.connect(at(6_000), 5, None);
    assert!(matches!(&resend[..], [Resend::Publish(p)] if p.packet_id == Some(id(1))));
    restored
        .acknowledge(id(1), Acknowledgement::PubAck)
        .expect("restored in flight");
    assert!(restored.release_qos2(id(40)));
    let mut delivered = Vec::new();
    while let Some(publish) = restored.next_delivery(at(6_000)) {
        let packet_id = publish.packet_id.expect("QoS 1 has a packet id");
        restored
            .acknowledge(packet_id, Acknowledgement::PubAck)
            .expect("in flight");
        delivered.push(publish.topic.to_string());
    }
    assert_eq!(delivered, ["b", "c", "d"]);
    restored.release_idle_memory();
    assert!(!holds_delivery_state(&restored));
    restored.enqueue(message(QoS::AtLeastOnce, "e"));
    assert_eq!(
        enqueued_seqs(&restored.take_changes()),
        [46],
        "still above the stored ones after a release"
    );
}

#[test]
fn a_restored_session_with_nothing_to_deliver_holds_no_delivery_state() {
    let original = persistent();
    let stored = StoredSession {
        record: original.record().clone(),
        queue: Vec::new(),
        in_flight: Vec::new(),
        incoming_qos2: Vec::new(),
    };
    let restored = Session::restore(stored, SessionLimits::default(), at(0));
    assert!(!holds_delivery_state(&restored));
    assert_eq!(restored.client_id(), CLIENT);
}

/// Two sessions fed the same steps, one of them releasing its idle memory
/// after every step: what each step returns, records for the store or
/// leaves to read must be the same for both.
struct Twins {
    kept: Session,
    released: Session,
    /// How many times `released` freed its delivery state.
    releases: usize,
}

/// What can be read of a session's delivery.
type View = (
    Vec<Queued>,
    Vec<(PacketId, InFlight)>,
    Vec<PacketId>,
    DropCounters,
    bool,
    SessionLimits,
);

fn view(session: &Session) -> View {
    (
        session.queue().iter().cloned().collect(),
        session
            .in_flight()
            .iter()
            .map(|(packet_id, entry)| (packet_id, entry.clone()))
            .collect(),
        session.incoming_qos2().iter().copied().collect(),
        session.drops(),
        session.can_deliver(),
        session.limits(),
    )
}

impl Twins {
    fn new(limits: SessionLimits) -> Self {
        let kept = session(SessionExpiry::Never, limits);
        Self {
            released: kept.clone(),
            kept,
            releases: 0,
        }
    }

    fn step<T: PartialEq + Debug>(&mut self, what: &str, step: impl Fn(&mut Session) -> T) -> T {
        let kept = step(&mut self.kept);
        let released = step(&mut self.released);
        assert_eq!(kept, released, "{what}: result");
        assert_eq!(
            self.kept.take_changes(),
            self.released.take_changes(),
            "{what}: changes"
        );
        assert_eq!(view(&self.kept), view(&self.released), "{what}: state");
        if holds_delivery_state(&self.released) {
            self.released.release_idle_memory();
            if !holds_delivery_state(&self.released) {
                self.releases += 1;
            }
        }
        assert_eq!(view(&self.kept), view(&self.released), "{what}: released");
        kept
    }
}

#[test]
fn releasing_changes_nothing_but_memory() {
    let mut twins = Twins::new(limits(3, 2));
    let expiring = |topic| {
        let mut publish = message(QoS::AtLeastOnce, topic).publish().clone();
        publish.properties_mut().message_expiry_interval = Some(1);
        Message::new(publish, at(0))
    };
    let deliver = |session: &mut Session| session.next_delivery(at(0));
    let ack = |packet_id: u16, ack: Acknowledgement| {
        move |session: &mut Session| session.acknowledge(id(packet_id), ack)
    };

    twins.step("enqueue", |s| s.enqueue(message(QoS::AtLeastOnce, "a")));
    twins.step("deliver", deliver);
    let acked = twins.step("puback", ack(1, Acknowledgement::PubAck));
    assert_eq!(acked, Ok(AckOutcome::Completed));
    twins.step("enqueue QoS 2", |s| {
        s.enqueue(message(QoS::ExactlyOnce, "b"))
    });
    let publish = twins.step("deliver QoS 2", deliver);
    assert_eq!(publish.and_then(|p| p.packet_id), Some(id(2)));
    let acked = twins.step("pubrec", ack(2, Acknowledgement::PubRec));
    assert_eq!(acked, Ok(AckOutcome::SendPubRel));
    let acked = twins.step("pubcomp", ack(2, Acknowledgement::PubComp));
    assert_eq!(acked, Ok(AckOutcome::Completed));
    let acked = twins.step("late pubcomp", ack(2, Acknowledgement::PubComp));
    assert!(acked.is_err());
    twins.step("receive QoS 2", |s| s.receive_qos2(id(9)));
    twins.step("receive it again", |s| s.receive_qos2(id(9)));
    twins.step("pubrel", |s| s.release_qos2(id(9)));
    twins.step("unknown pubrel", |s| s.release_qos2(id(9)));
    for topic in ["c", "d", "e", "f", "g"] {
        twins.step("fill the queue", |s| {
            s.enqueue(message(QoS::AtLeastOnce, topic))
        });
    }
    twins.step("fill with QoS 0", |s| {
        s.enqueue(message(QoS::AtMostOnce, "h"))
    });
    twins.step("disconnect", |s| s.disconnect(at(10)));
    twins.step("connect with a window of 1", |s| s.connect(at(20), 1, None));
    while twins.step("deliver", deliver).is_some() {}
    let acked = twins.step("puback", ack(3, Acknowledgement::PubAck));
    assert_eq!(acked, Ok(AckOutcome::Completed));
    while let Some(publish) = twins.step("deliver", deliver) {
        let packet_id = publish.packet_id.expect("QoS 1 has a packet id");
        let acked = twins.step("puback", ack(packet_id.get(), Acknowledgement::PubAck));
        assert_eq!(acked, Ok(AckOutcome::Completed));
    }
    twins.step("enqueue expiring", |s| s.enqueue(expiring("i")));
    twins.step("deliver expired", |s| s.next_delivery(at(5_000)));
    twins.step("enqueue expiring", |s| s.enqueue(expiring("j")));
    twins.step("enqueue live", |s| s.enqueue(message(QoS::AtMostOnce, "k")));
    twins.step("sweep", |s| s.drop_expired(at(5_000)));
    let publish = twins.step("deliver QoS 0", deliver);
    twins.step("too large", |s| {
        s.drop_delivery(
            publish.as_ref().and_then(|p| p.packet_id),
            DropReason::PacketTooLarge,
        )
    });
    twins.step("becoming clean", |s| {
        s.set_expiry(SessionExpiry::OnDisconnect)
    });
    twins.step("becoming persistent", |s| {
        s.set_expiry(SessionExpiry::Never)
    });
    assert_eq!(twins.kept.drops().total(), 6);
    assert!(
        twins.releases >= 5,
        "the released twin freed its state {} times",
        twins.releases
    );
}
