//! The QoS 0, 1 and 2 flows in both directions, flow control and topic
//! aliases received from the server.

use tern_codec::{Ack, Packet, PacketType, ProtocolVersion, QoS, ReasonCode};

use super::{accepted, connected, drain, event, message, options, pid, send, violation};
use crate::{Event, ProtocolError};

#[test]
fn qos0_is_sent_and_forgotten() {
    let (mut session, t0) = connected(options(ProtocolVersion::V3_1_1), accepted());
    let request = session.publish(message("a/b", QoS::AtMostOnce, None), t0);
    assert!(request.is_ok());
    assert_eq!(
        drain(&mut session),
        [send(Packet::Publish(message("a/b", QoS::AtMostOnce, None)))]
    );
    assert_eq!(session.publishes_in_flight(), 0);
}

#[test]
fn qos1_completes_on_puback() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    let request = session
        .publish(message("a", QoS::AtLeastOnce, None), t0)
        .unwrap();
    assert_eq!(
        drain(&mut session),
        [send(Packet::Publish(message(
            "a",
            QoS::AtLeastOnce,
            Some(1)
        )))]
    );
    let ack = Ack::with_reason(pid(1), ReasonCode::NoMatchingSubscribers);
    session.handle_packet(Packet::PubAck(ack), t0);
    assert_eq!(
        drain(&mut session),
        [event(Event::PublishCompleted {
            request,
            packet_id: pid(1),
            reason: ReasonCode::NoMatchingSubscribers
        })]
    );
    assert_eq!(session.publishes_in_flight(), 0);
}

#[test]
fn qos2_runs_the_four_way_handshake() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    let request = session
        .publish(message("a", QoS::ExactlyOnce, None), t0)
        .unwrap();
    assert_eq!(
        drain(&mut session),
        [send(Packet::Publish(message(
            "a",
            QoS::ExactlyOnce,
            Some(1)
        )))]
    );
    let pubrec = Ack::with_reason(pid(1), ReasonCode::NoMatchingSubscribers);
    session.handle_packet(Packet::PubRec(pubrec), t0);
    assert_eq!(
        drain(&mut session),
        [send(Packet::PubRel(Ack::new(pid(1))))]
    );
    assert_eq!(session.publishes_in_flight(), 1);
    session.handle_packet(Packet::PubComp(Ack::new(pid(1))), t0);
    assert_eq!(
        drain(&mut session),
        [event(Event::PublishCompleted {
            request,
            packet_id: pid(1),
            reason: ReasonCode::NoMatchingSubscribers
        })]
    );
}

#[test]
fn a_failed_pubrec_ends_the_exchange() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    let request = session
        .publish(message("a", QoS::ExactlyOnce, None), t0)
        .unwrap();
    drain(&mut session);
    let pubrec = Ack::with_reason(pid(1), ReasonCode::NotAuthorized);
    session.handle_packet(Packet::PubRec(pubrec), t0);
    assert_eq!(
        drain(&mut session),
        [event(Event::PublishCompleted {
            request,
            packet_id: pid(1),
            reason: ReasonCode::NotAuthorized
        })]
    );
    assert_eq!(session.publishes_in_flight(), 0);
}

#[test]
fn the_receive_maximum_holds_messages_back_in_order() {
    let mut connack = accepted();
    connack.properties.receive_maximum = Some(2);
    let (mut session, t0) = connected(options(ProtocolVersion::V5), connack);
    for _ in 0..3 {
        session
            .publish(message("q1", QoS::AtLeastOnce, None), t0)
            .unwrap();
    }
    session
        .publish(message("q0", QoS::AtMostOnce, None), t0)
        .unwrap();
    assert_eq!(
        drain(&mut session),
        [
            send(Packet::Publish(message("q1", QoS::AtLeastOnce, Some(1)))),
            send(Packet::Publish(message("q1", QoS::AtLeastOnce, Some(2)))),
        ]
    );
    assert_eq!(session.queued_publishes(), 2);
    session.handle_packet(Packet::PubAck(Ack::new(pid(2))), t0);
    let outputs = drain(&mut session);
    assert_eq!(
        outputs[1..],
        [
            send(Packet::Publish(message("q1", QoS::AtLeastOnce, Some(3)))),
            send(Packet::Publish(message("q0", QoS::AtMostOnce, None))),
        ]
    );
    assert_eq!(session.queued_publishes(), 0);
    assert_eq!(session.publishes_in_flight(), 2);
}

#[test]
fn acknowledgments_must_match_what_waits_for_them() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    session
        .publish(message("a", QoS::AtLeastOnce, None), t0)
        .unwrap();
    drain(&mut session);
    session.handle_packet(Packet::PubComp(Ack::new(pid(1))), t0);
    assert_eq!(
        drain(&mut session),
        violation(ProtocolError::UnknownPacketId {
            packet: PacketType::PubComp,
            packet_id: pid(1)
        })
    );
}

#[test]
fn incoming_qos1_is_delivered_and_acknowledged() {
    let (mut session, t0) = connected(options(ProtocolVersion::V3_1_1), accepted());
    let incoming = message("in", QoS::AtLeastOnce, Some(5));
    session.handle_packet(Packet::Publish(incoming.clone()), t0);
    assert_eq!(
        drain(&mut session),
        [
            event(Event::Message(incoming)),
            send(Packet::PubAck(Ack::new(pid(5))))
        ]
    );
}

#[test]
fn incoming_qos2_is_delivered_once_until_released() {
    let (mut session, t0) = connected(options(ProtocolVersion::V3_1_1), accepted());
    let incoming = message("in", QoS::ExactlyOnce, Some(7));
    session.handle_packet(Packet::Publish(incoming.clone()), t0);
    assert_eq!(
        drain(&mut session),
        [
            event(Event::Message(incoming.clone())),
            send(Packet::PubRec(Ack::new(pid(7))))
        ]
    );
    let mut redelivery = incoming.clone();
    redelivery.dup = true;
    session.handle_packet(Packet::Publish(redelivery), t0);
    assert_eq!(
        drain(&mut session),
        [send(Packet::PubRec(Ack::new(pid(7))))]
    );
    session.handle_packet(Packet::PubRel(Ack::new(pid(7))), t0);
    assert_eq!(
        drain(&mut session),
        [send(Packet::PubComp(Ack::new(pid(7))))]
    );
    // Released: the identifier now names a new message.
    session.handle_packet(Packet::Publish(incoming.clone()), t0);
    assert_eq!(drain(&mut session)[0], event(Event::Message(incoming)));
    // A PUBREL from an earlier connection is completed all the same.
    session.handle_packet(Packet::PubRel(Ack::new(pid(8))), t0);
    assert_eq!(
        drain(&mut session),
        [send(Packet::PubComp(Ack::new(pid(8))))]
    );
}

#[test]
fn the_server_must_respect_the_clients_receive_maximum() {
    let mut options = options(ProtocolVersion::V5);
    options.properties.receive_maximum = Some(1);
    let (mut session, t0) = connected(options, accepted());
    session.handle_packet(Packet::Publish(message("a", QoS::ExactlyOnce, Some(1))), t0);
    drain(&mut session);
    session.handle_packet(Packet::Publish(message("a", QoS::ExactlyOnce, Some(2))), t0);
    assert_eq!(
        drain(&mut session),
        violation(ProtocolError::ReceiveMaximumExceeded(1))
    );
}

#[test]
fn topic_aliases_from_the_server_are_resolved() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    let mut first = message("a/b", QoS::AtMostOnce, None);
    first.properties_mut().topic_alias = Some(1);
    let mut second = message("", QoS::AtMostOnce, None);
    second.properties_mut().topic_alias = Some(1);
    session.handle_packet(Packet::Publish(first), t0);
    session.handle_packet(Packet::Publish(second), t0);
    let resolved = message("a/b", QoS::AtMostOnce, None);
    assert_eq!(
        drain(&mut session),
        [
            event(Event::Message(resolved.clone())),
            event(Event::Message(resolved))
        ]
    );
    let mut unknown = message("", QoS::AtMostOnce, None);
    unknown.properties_mut().topic_alias = Some(2);
    session.handle_packet(Packet::Publish(unknown), t0);
    assert_eq!(
        drain(&mut session),
        violation(ProtocolError::UnknownTopicAlias(2))
    );
}

#[test]
fn a_topic_alias_above_the_maximum_is_refused() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    let mut publish = message("a", QoS::AtMostOnce, None);
    publish.properties_mut().topic_alias = Some(33);
    session.handle_packet(Packet::Publish(publish), t0);
    let error = ProtocolError::TopicAliasOutOfRange {
        alias: 33,
        maximum: 32,
    };
    assert_eq!(error.reason_code(), ReasonCode::TopicAliasInvalid);
    assert_eq!(drain(&mut session), violation(error));
}
