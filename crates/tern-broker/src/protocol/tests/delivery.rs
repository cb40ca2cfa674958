//! Delivery to the client: the in-flight window, QoS 1 and 2 handshakes,
//! the client's Maximum Packet Size and message expiry.

use std::time::Duration;

use tern_codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode};

use super::*;
use crate::protocol::OutboundDrop;

fn publishes(actions: &[Action]) -> Vec<&Publish> {
    sent(actions)
        .into_iter()
        .filter_map(|packet| match packet {
            Packet::Publish(publish) => Some(publish),
            _ => None,
        })
        .collect()
}

/// A connected MQTT 5 client with Receive Maximum `receive_maximum`.
fn with_receive_maximum(receive_maximum: u16) -> Harness {
    let mut harness = Harness::new();
    let mut request = connect(ProtocolVersion::V5, "c");
    request.properties.receive_maximum = Some(receive_maximum);
    harness.connect_with(request, None);
    harness
}

#[test]
fn the_window_follows_the_client_receive_maximum() {
    let mut harness = with_receive_maximum(2);
    for topic in ["a", "b", "c"] {
        harness
            .session()
            .enqueue(message(topic, QoS::AtLeastOnce, 1));
    }
    let actions = harness.input(Input::Deliver);
    let sent_now = publishes(&actions);
    assert_eq!(sent_now.len(), 2, "the third waits for room");
    assert_eq!(sent_now[0].packet_id, Some(id(1)));
    assert_eq!(sent_now[1].packet_id, Some(id(2)));
    assert!(!actions.contains(&Action::ContinueDelivery));

    let actions = harness.packet(Packet::PubAck(Ack::new(id(1))));
    let sent_now = publishes(&actions);
    assert_eq!(sent_now.len(), 1);
    assert_eq!(&*sent_now[0].topic, "c");
    assert_eq!(sent_now[0].packet_id, Some(id(3)));
}

#[test]
fn qos0_messages_are_not_held_by_the_window() {
    let mut harness = with_receive_maximum(1);
    harness.session().enqueue(message("a", QoS::AtLeastOnce, 1));
    harness.session().enqueue(message("b", QoS::AtLeastOnce, 1));
    assert_eq!(publishes(&harness.input(Input::Deliver)).len(), 1);
    harness.session().enqueue(message("c", QoS::AtMostOnce, 1));
    // Order is kept: the QoS 0 message waits behind the QoS 1 one.
    assert!(publishes(&harness.input(Input::Deliver)).is_empty());
    let actions = harness.packet(Packet::PubAck(Ack::new(id(1))));
    let topics: Vec<&str> = publishes(&actions).iter().map(|p| &*p.topic).collect();
    assert_eq!(topics, ["b", "c"]);
}

#[test]
fn qos2_delivery_handshake() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let actions = harness.deliver(message("a", QoS::ExactlyOnce, 1));
    let packet_id = publishes(&actions)[0].packet_id.expect("QoS 2");
    let actions = harness.packet(Packet::PubRec(Ack::new(packet_id)));
    assert_eq!(sent(&actions), [&Packet::PubRel(Ack::new(packet_id))]);
    // PUBREC again: PUBREL again.
    let actions = harness.packet(Packet::PubRec(Ack::new(packet_id)));
    assert_eq!(sent(&actions), [&Packet::PubRel(Ack::new(packet_id))]);
    let actions = harness.packet(Packet::PubComp(Ack::new(packet_id)));
    assert!(actions.is_empty());
    assert!(harness.session().in_flight().is_empty());
}

#[test]
fn pubrec_with_an_error_ends_the_exchange() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let actions = harness.deliver(message("a", QoS::ExactlyOnce, 1));
    let packet_id = publishes(&actions)[0].packet_id.unwrap();
    let refusal = Ack::with_reason(packet_id, ReasonCode::QuotaExceeded);
    let actions = harness.packet(Packet::PubRec(refusal));
    assert!(sent(&actions).is_empty(), "no PUBREL");
    assert!(harness.session().in_flight().is_empty());
}

#[test]
fn acknowledgements_of_nothing_and_out_of_order() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    assert!(harness.packet(Packet::PubAck(Ack::new(id(40)))).is_empty());
    assert!(harness.packet(Packet::PubComp(Ack::new(id(40)))).is_empty());
    let actions = harness.packet(Packet::PubRec(Ack::new(id(40))));
    let Packet::PubRel(pubrel) = sent(&actions)[0] else {
        panic!("expected PUBREL");
    };
    assert_eq!(pubrel.reason_code, ReasonCode::PacketIdentifierNotFound);

    // PUBCOMP for a QoS 1 message is a protocol error.
    let actions = harness.deliver(message("a", QoS::AtLeastOnce, 1));
    let packet_id = publishes(&actions)[0].packet_id.unwrap();
    let actions = harness.packet(Packet::PubComp(Ack::new(packet_id)));
    assert_eq!(disconnect_reason(&actions), Some(ReasonCode::ProtocolError));
}

#[test]
fn messages_over_the_client_maximum_packet_size_are_dropped() {
    let mut harness = Harness::new();
    let mut request = connect(ProtocolVersion::V5, "c");
    request.properties.maximum_packet_size = Some(64);
    harness.connect_with(request, None);
    harness
        .session()
        .enqueue(message("big", QoS::AtLeastOnce, 100));
    harness
        .session()
        .enqueue(message("small", QoS::AtLeastOnce, 10));
    let actions = harness.input(Input::Deliver);
    assert!(actions.contains(&Action::Dropped(OutboundDrop::PacketTooLarge)));
    let sent_now = publishes(&actions);
    assert_eq!(sent_now.len(), 1);
    assert_eq!(&*sent_now[0].topic, "small");
    assert_eq!(
        harness.session().in_flight().len(),
        1,
        "the big one is not in flight"
    );
    assert_eq!(
        harness.session().drops().packet_too_large,
        1,
        "counted as a drop, not acknowledged"
    );
}

/// A connected MQTT 5 client announcing Topic Alias Maximum `client_max`,
/// to a broker assigning up to `broker_max` outbound aliases.
fn with_outbound_aliases(client_max: Option<u16>, broker_max: u16) -> Harness {
    let mut harness = Harness::with_settings(|settings| {
        settings.max_topic_alias_outbound = broker_max;
    });
    let mut request = connect(ProtocolVersion::V5, "c");
    request.properties.topic_alias_maximum = client_max;
    harness.connect_with(request, None);
    harness
}

/// The (topic, alias) of each PUBLISH delivered for `topics`, one by one.
fn delivered_topics(harness: &mut Harness, topics: &[&str]) -> Vec<(String, Option<u16>)> {
    let mut got = Vec::new();
    for topic in topics {
        let actions = harness.deliver(message(topic, QoS::AtMostOnce, 1));
        for publish in publishes(&actions) {
            got.push((publish.topic.to_string(), publish.properties().topic_alias));
        }
    }
    got
}

#[test]
fn outbound_topic_aliases_use_the_lower_maximum_and_reassign_the_oldest() {
    let mut harness = with_outbound_aliases(Some(2), 10);
    let got = delivered_topics(&mut harness, &["a/1", "a/1", "b/2", "c/3", "a/1"]);
    let expected = [
        ("a/1", Some(1)),
        ("", Some(1)),
        ("b/2", Some(2)),
        ("c/3", Some(1)),
        ("a/1", Some(2)),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(topic, alias)| ((*topic).to_owned(), *alias))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn no_outbound_aliases_unless_both_sides_allow_them() {
    let plain = |topics: &[&str]| -> Vec<(String, Option<u16>)> {
        topics
            .iter()
            .map(|topic| ((*topic).to_owned(), None))
            .collect()
    };
    // Off by default in the broker.
    let mut harness = with_outbound_aliases(Some(5), 0);
    assert_eq!(
        delivered_topics(&mut harness, &["t", "t"]),
        plain(&["t", "t"])
    );
    // The client announced no Topic Alias Maximum.
    let mut harness = with_outbound_aliases(None, 5);
    assert_eq!(
        delivered_topics(&mut harness, &["t", "t"]),
        plain(&["t", "t"])
    );
    // MQTT 3.1.1 has no topic aliases.
    let mut harness = Harness::with_settings(|settings| settings.max_topic_alias_outbound = 5);
    harness.connect_with(connect(ProtocolVersion::V3_1_1, "old"), None);
    assert_eq!(
        delivered_topics(&mut harness, &["t", "t"]),
        plain(&["t", "t"])
    );
}

#[test]
fn a_dropped_message_binds_no_alias() {
    let mut harness = Harness::with_settings(|settings| settings.max_topic_alias_outbound = 5);
    let mut request = connect(ProtocolVersion::V5, "c");
    request.properties.topic_alias_maximum = Some(5);
    request.properties.maximum_packet_size = Some(64);
    harness.connect_with(request, None);
    let actions = harness.deliver(message("t", QoS::AtLeastOnce, 100));
    assert!(actions.contains(&Action::Dropped(OutboundDrop::PacketTooLarge)));
    let got = delivered_topics(&mut harness, &["t"]);
    assert_eq!(
        got,
        [("t".to_owned(), Some(1))],
        "sent in full with its alias"
    );
}

#[test]
fn expiry_is_sent_as_the_interval_left_and_expired_messages_are_dropped() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let queued_at = harness.now().wall;
    let mut lasting = Publish::new("a", "x");
    lasting.properties_mut().message_expiry_interval = Some(10);
    let mut brief = Publish::new("b", "x");
    brief.properties_mut().message_expiry_interval = Some(2);
    harness.session().enqueue(Message::new(brief, queued_at));
    harness.session().enqueue(Message::new(lasting, queued_at));
    harness.advance(Duration::from_secs(4));
    let actions = harness.input(Input::Deliver);
    let sent_now = publishes(&actions);
    assert_eq!(sent_now.len(), 1, "the expired message is dropped");
    assert_eq!(&*sent_now[0].topic, "a");
    assert_eq!(sent_now[0].properties().message_expiry_interval, Some(6));
    assert_eq!(harness.session().drops().expired, 1);
}

#[test]
fn a_long_queue_is_delivered_over_several_turns() {
    let mut harness = Harness::with_settings(|settings| settings.deliveries_per_turn = 2);
    harness.connect_with(connect(ProtocolVersion::V5, "c"), None);
    for _ in 0..3 {
        harness.session().enqueue(message("a", QoS::AtMostOnce, 1));
    }
    let actions = harness.input(Input::Deliver);
    assert_eq!(publishes(&actions).len(), 2);
    assert_eq!(actions.last(), Some(&Action::ContinueDelivery));
    let actions = harness.input(Input::Deliver);
    assert_eq!(publishes(&actions).len(), 1);
    assert!(!actions.contains(&Action::ContinueDelivery));
}
