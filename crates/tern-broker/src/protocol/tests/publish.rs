//! PUBLISH from the client: QoS handshakes, exactly once, topic aliases,
//! limits, `$SYS`, and what is forwarded.

use std::time::Duration;

use tern_codec::{Packet, ProtocolVersion, PublishProperties, QoS, ReasonCode};
use tern_session::Timestamp;

use super::*;
use crate::protocol::{InboundAck, RouteOutcome};

fn routed_ack(actions: &[Action]) -> Option<InboundAck> {
    actions.iter().find_map(|action| match action {
        Action::Route { ack, .. } => *ack,
        _ => None,
    })
}

fn ack_reason(packet: &Packet) -> ReasonCode {
    match packet {
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubComp(ack) => ack.reason_code,
        other => panic!("not an acknowledgement: {other:?}"),
    }
}

#[test]
fn qos0_is_routed_without_acknowledgement() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let actions = harness.publish(publish("a/b", QoS::AtMostOnce, None));
    assert_eq!(routed(&actions).len(), 1);
    assert_eq!(routed_ack(&actions), None);
    assert!(sent(&actions).is_empty());
}

#[test]
fn qos1_is_acknowledged_once_routed() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let actions = harness.publish(publish("a/b", QoS::AtLeastOnce, Some(3)));
    let ack = routed_ack(&actions).expect("an acknowledgement is owed");
    assert!(
        sent(&actions).is_empty(),
        "not before the message is stored"
    );
    let actions = harness.input(Input::Routed {
        ack,
        outcome: RouteOutcome::Delivered,
    });
    assert_eq!(sent(&actions), [&Packet::PubAck(Ack::new(id(3)))]);

    // MQTT 5 says when nobody subscribes.
    let actions = harness.publish(publish("a/b", QoS::AtLeastOnce, Some(4)));
    let ack = routed_ack(&actions).unwrap();
    let actions = harness.input(Input::Routed {
        ack,
        outcome: RouteOutcome::NoSubscribers,
    });
    assert_eq!(
        ack_reason(sent(&actions)[0]),
        ReasonCode::NoMatchingSubscribers
    );
}

#[test]
fn qos2_is_routed_exactly_once() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let actions = harness.publish(publish("a", QoS::ExactlyOnce, Some(7)));
    assert_eq!(routed(&actions).len(), 1);
    let ack = routed_ack(&actions).unwrap();
    let actions = harness.input(Input::Routed {
        ack,
        outcome: RouteOutcome::Delivered,
    });
    assert_eq!(sent(&actions), [&Packet::PubRec(Ack::new(id(7)))]);

    // The client did not see PUBREC and publishes again: not routed again,
    // acknowledged in order.
    let mut again = publish("a", QoS::ExactlyOnce, Some(7));
    again.dup = true;
    let actions = harness.publish(again);
    assert!(routed(&actions).is_empty());
    assert_eq!(
        actions,
        [Action::AckInOrder {
            ack,
            outcome: RouteOutcome::Delivered
        }]
    );

    let actions = harness.packet(Packet::PubRel(Ack::new(id(7))));
    assert_eq!(sent(&actions), [&Packet::PubComp(Ack::new(id(7)))]);
    assert!(harness.session().incoming_qos2().is_empty());

    // Released: the identifier now names a new message.
    let actions = harness.publish(publish("a", QoS::ExactlyOnce, Some(7)));
    assert_eq!(routed(&actions).len(), 1);
}

#[test]
fn pubrel_for_an_unknown_identifier() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let actions = harness.packet(Packet::PubRel(Ack::new(id(9))));
    assert_eq!(
        ack_reason(sent(&actions)[0]),
        ReasonCode::PacketIdentifierNotFound
    );
}

#[test]
fn topic_aliases_map_to_topics() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let mut first = publish("sensors/1", QoS::AtMostOnce, None);
    first.properties_mut().topic_alias = Some(1);
    let actions = harness.publish(first);
    assert_eq!(routed(&actions)[0].topic(), "sensors/1");
    assert_eq!(routed(&actions)[0].publish().properties().topic_alias, None);

    let mut aliased = publish("", QoS::AtMostOnce, None);
    aliased.properties_mut().topic_alias = Some(1);
    let actions = harness.publish(aliased);
    assert_eq!(routed(&actions)[0].topic(), "sensors/1");

    // An alias never set.
    let mut unknown = publish("", QoS::AtMostOnce, None);
    unknown.properties_mut().topic_alias = Some(2);
    let actions = harness.publish(unknown);
    assert_eq!(disconnect_reason(&actions), Some(ReasonCode::ProtocolError));
}

#[test]
fn a_topic_alias_above_the_maximum_disconnects() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let mut publish = publish("a", QoS::AtMostOnce, None);
    publish.properties_mut().topic_alias = Some(11);
    let actions = harness.publish(publish);
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::TopicAliasInvalid)
    );
    assert!(routed(&actions).is_empty());
    assert!(closes(&actions));
}

#[test]
fn more_unacknowledged_messages_than_the_receive_maximum_disconnect() {
    let mut harness = Harness::with_settings(|settings| settings.receive_maximum = 2);
    harness.connect_with(connect(ProtocolVersion::V5, "c"), None);
    harness.publish(publish("a", QoS::ExactlyOnce, Some(1)));
    harness.publish(publish("a", QoS::AtLeastOnce, Some(2)));
    // A redelivery of one already counted is fine.
    let mut again = publish("a", QoS::ExactlyOnce, Some(1));
    again.dup = true;
    assert!(!closes(&harness.publish(again)));
    let actions = harness.publish(publish("a", QoS::ExactlyOnce, Some(3)));
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::ReceiveMaximumExceeded)
    );
}

/// The acknowledgement a refused `$SYS` publish gets once every earlier
/// publish of the client is acknowledged.
fn refusal_of(harness: &mut Harness, actions: &[Action]) -> Vec<Action> {
    assert!(routed(actions).is_empty(), "a $SYS publish is never routed");
    let [Action::AckInOrder { ack, outcome }] = actions else {
        panic!("expected an acknowledgement in order, got {actions:?}");
    };
    assert_eq!(*outcome, RouteOutcome::ReservedTopic);
    harness.input(Input::Routed {
        ack: *ack,
        outcome: *outcome,
    })
}

#[test]
fn a_client_may_not_publish_to_sys() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let actions = harness.publish(publish("$SYS/broker/uptime", QoS::AtLeastOnce, Some(1)));
    let actions = refusal_of(&mut harness, &actions);
    let Packet::PubAck(ack) = sent(&actions)[0] else {
        panic!("expected PUBACK");
    };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert!(ack.properties.reason_string.is_some());
    assert!(
        harness
            .publish(publish("$SYS/x", QoS::AtMostOnce, None))
            .is_empty()
    );

    // Without problem information: no reason string.
    let mut harness = Harness::new();
    let mut request = connect(ProtocolVersion::V5, "c");
    request.properties.request_problem_information = Some(false);
    harness.connect_with(request, None);
    let actions = harness.publish(publish("$SYS/x", QoS::ExactlyOnce, Some(2)));
    let actions = refusal_of(&mut harness, &actions);
    let Packet::PubRec(ack) = sent(&actions)[0] else {
        panic!("expected PUBREC");
    };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert_eq!(ack.properties.reason_string, None);

    // MQTT 3.1.1 cannot be told: acknowledged, not routed.
    let mut harness = Harness::connected(ProtocolVersion::V3_1_1);
    let actions = harness.publish(publish("$SYS/x", QoS::AtLeastOnce, Some(1)));
    let actions = refusal_of(&mut harness, &actions);
    assert_eq!(sent(&actions), [&Packet::PubAck(Ack::new(id(1)))]);
}

#[test]
fn a_reason_string_is_left_out_when_it_would_exceed_the_clients_maximum_packet_size() {
    let mut harness = Harness::new();
    let mut request = connect(ProtocolVersion::V5, "c");
    request.properties.maximum_packet_size = Some(20);
    harness.connect_with(request, None);
    let actions = harness.publish(publish("$SYS/x", QoS::AtLeastOnce, Some(1)));
    let actions = refusal_of(&mut harness, &actions);
    let Packet::PubAck(ack) = sent(&actions)[0] else {
        panic!("expected PUBACK");
    };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert_eq!(
        ack.properties.reason_string, None,
        "it would not fit in 20 bytes"
    );
}

#[test]
fn qos_and_retain_beyond_the_broker_limits_disconnect() {
    let mut harness = Harness::with_settings(|settings| settings.max_qos = QoS::AtLeastOnce);
    harness.connect_with(connect(ProtocolVersion::V5, "c"), None);
    let actions = harness.publish(publish("a", QoS::ExactlyOnce, Some(1)));
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::QoSNotSupported)
    );

    let mut harness = Harness::with_settings(|settings| settings.retain_available = false);
    harness.connect_with(connect(ProtocolVersion::V5, "c"), None);
    let mut retained = publish("a", QoS::AtMostOnce, None);
    retained.retain = true;
    let actions = harness.publish(retained);
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::RetainNotSupported)
    );
}

#[test]
fn a_failed_write_is_reported_or_closes() {
    let cases = [
        (
            RouteOutcome::StoreFailed,
            ReasonCode::ImplementationSpecificError,
            "the session store failed",
        ),
        (
            RouteOutcome::NodeUnconfirmed,
            ReasonCode::UnspecifiedError,
            "another node of the cluster",
        ),
    ];
    for (outcome, reason, says) in cases {
        let mut harness = Harness::connected(ProtocolVersion::V5);
        let actions = harness.publish(publish("a", QoS::ExactlyOnce, Some(5)));
        let ack = routed_ack(&actions).unwrap();
        let actions = harness.input(Input::Routed { ack, outcome });
        let Packet::PubRec(pubrec) = sent(&actions)[0] else {
            panic!("{outcome:?}: expected PUBREC, got {actions:?}");
        };
        assert_eq!(pubrec.reason_code, reason, "{outcome:?}");
        let reason_string = pubrec.properties.reason_string.as_deref().unwrap_or("");
        assert!(reason_string.contains(says), "{outcome:?}: {reason_string}");
        assert!(
            harness.session().incoming_qos2().is_empty(),
            "{outcome:?}: the client may publish it again"
        );

        let mut harness = Harness::connected(ProtocolVersion::V3_1_1);
        let actions = harness.publish(publish("a", QoS::AtLeastOnce, Some(5)));
        let ack = routed_ack(&actions).unwrap();
        let actions = harness.input(Input::Routed { ack, outcome });
        assert!(
            sent(&actions).is_empty(),
            "{outcome:?}: no PUBACK, the client will resend"
        );
        assert!(closes(&actions), "{outcome:?}");
    }
}

#[test]
fn properties_are_forwarded_and_expiry_becomes_absolute() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    harness.advance(Duration::from_secs(5));
    let mut message = publish("a", QoS::AtMostOnce, None);
    message.set_properties(PublishProperties {
        payload_format_indicator: Some(true),
        message_expiry_interval: Some(30),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies/1".into()),
        correlation_data: Some("42".into()),
        user_properties: vec![("k".into(), "v".into())],
        ..PublishProperties::default()
    });
    let actions = harness.publish(message);
    let routed = routed(&actions)[0];
    let properties = routed.publish().properties();
    assert_eq!(properties.payload_format_indicator, Some(true));
    assert_eq!(properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(properties.response_topic.as_deref(), Some("replies/1"));
    assert_eq!(properties.correlation_data.as_deref(), Some(&b"42"[..]));
    assert_eq!(properties.user_properties.len(), 1);
    let received = Timestamp::from_millis(1_005_000);
    assert_eq!(routed.expires_at(), Some(received.saturating_add_secs(30)));
}
