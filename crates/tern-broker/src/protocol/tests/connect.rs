//! CONNECT, CONNACK, client identifiers, keep alive and session expiry.

use std::time::Duration;

use bytes::BytesMut;
use tern_codec::{DecodeError, LastWill, Packet, ProtocolVersion, QoS, ReasonCode};
use tern_session::{InFlight, Session, SessionExpiry, SessionLimits};

use super::*;

fn connack(actions: &[Action]) -> &tern_codec::ConnAck {
    match sent(actions).first() {
        Some(Packet::ConnAck(connack)) => connack,
        other => panic!("expected CONNACK first, got {other:?}"),
    }
}

fn will(topic: &str, qos: QoS, retain: bool) -> LastWill {
    LastWill {
        qos,
        retain,
        properties: Default::default(),
        topic: topic.into(),
        payload: "gone".into(),
    }
}

#[test]
fn the_first_packet_must_be_connect() {
    let mut harness = Harness::new();
    let actions = harness.packet(Packet::PingReq);
    assert!(sent(&actions).is_empty(), "no CONNACK, no DISCONNECT");
    assert_eq!(
        actions,
        [Action::Close {
            reason: ReasonCode::ProtocolError
        }]
    );
    assert!(harness.protocol.is_closed());
    assert!(
        harness.packet(Packet::PingReq).is_empty(),
        "closed for good"
    );
}

#[test]
fn garbage_before_connect_closes_silently() {
    let mut harness = Harness::new();
    let actions = harness.input(Input::DecodeError(DecodeError::MalformedVariableInteger));
    assert!(sent(&actions).is_empty());
    assert!(closes(&actions));
}

#[test]
fn connect_asks_for_the_session_then_answers_connack() {
    let mut harness = Harness::new();
    let actions = harness.packet(Packet::Connect(Box::new(connect(
        ProtocolVersion::V5,
        "c1",
    ))));
    assert_eq!(
        actions,
        [Action::OpenSession(OpenSession {
            client_id: "c1".into(),
            clean_start: true,
            expiry: SessionExpiry::OnDisconnect,
        })]
    );
    harness.session = Some(Session::new(
        "c1".into(),
        SessionExpiry::OnDisconnect,
        SessionLimits::default(),
    ));
    let actions = harness.input(Input::SessionOpened {
        session_present: false,
    });
    let connack = connack(&actions);
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert!(!connack.session_present);
    let properties = &connack.properties;
    assert_eq!(properties.receive_maximum, Some(20));
    assert_eq!(properties.topic_alias_maximum, Some(10));
    assert_eq!(properties.maximum_packet_size, Some(1024 * 1024));
    assert_eq!(properties.maximum_qos, None, "QoS 2 is the default");
    // Absent means available: only restrictions are announced.
    assert_eq!(properties.retain_available, None);
    assert_eq!(properties.wildcard_subscription_available, None);
    assert_eq!(properties.subscription_identifiers_available, None);
    assert_eq!(properties.shared_subscription_available, None);
    assert_eq!(properties.assigned_client_identifier, None);
    assert!(harness.protocol.is_connected());
}

#[test]
fn limits_below_the_maximum_are_announced() {
    let mut harness = Harness::with_settings(|settings| {
        settings.max_qos = QoS::AtLeastOnce;
        settings.retain_available = false;
    });
    let actions = harness.connect_with(connect(ProtocolVersion::V5, "c1"), None);
    let properties = &connack(&actions).properties;
    assert_eq!(properties.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(properties.retain_available, Some(false));
}

#[test]
fn a_second_connect_is_a_protocol_error() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let again = Packet::Connect(Box::new(connect(ProtocolVersion::V5, "client")));
    let actions = harness.packet(again.clone());
    assert_eq!(disconnect_reason(&actions), Some(ReasonCode::ProtocolError));
    assert!(closes(&actions));

    let mut harness = Harness::connected(ProtocolVersion::V3_1_1);
    let actions = harness.packet(again);
    assert!(
        sent(&actions).is_empty(),
        "MQTT 3.1.1 has no DISCONNECT from the server"
    );
    assert!(closes(&actions));
}

#[test]
fn a_second_connect_of_an_unknown_protocol_is_a_protocol_error_too() {
    for error in [
        DecodeError::InvalidProtocolName,
        DecodeError::UnsupportedProtocolLevel(7),
    ] {
        let mut harness = Harness::connected(ProtocolVersion::V5);
        let actions = harness.input(Input::DecodeError(error));
        assert_eq!(disconnect_reason(&actions), Some(ReasonCode::ProtocolError));
        let mut bytes = BytesMut::new();
        sent(&actions)[0]
            .encode(ProtocolVersion::V5, &mut bytes)
            .expect("the DISCONNECT can be sent");
        assert!(closes(&actions));
    }
}

#[test]
fn unsupported_protocol_levels_get_the_matching_connack() {
    for (level, version, wire) in [
        (6, ProtocolVersion::V5, &[0x20, 0x03, 0x00, 0x84, 0x00][..]),
        (2, ProtocolVersion::V3_1_1, &[0x20, 0x02, 0x00, 0x01][..]),
    ] {
        let mut harness = Harness::new();
        let actions = harness.input(Input::DecodeError(DecodeError::UnsupportedProtocolLevel(
            level,
        )));
        assert_eq!(harness.protocol.version(), version);
        let mut bytes = BytesMut::new();
        sent(&actions)[0].encode(version, &mut bytes).unwrap();
        assert_eq!(&bytes[..], wire, "level {level}");
        assert!(closes(&actions));
    }
}

#[test]
fn empty_client_identifiers() {
    // MQTT 3.1.1: only with a clean session.
    let mut harness = Harness::new();
    let mut request = connect(ProtocolVersion::V3_1_1, "");
    request.clean_start = false;
    let actions = harness.connect_with(request, None);
    assert_eq!(
        connack(&actions).reason_code,
        ReasonCode::ClientIdentifierNotValid
    );
    assert!(closes(&actions));

    let mut harness = Harness::new();
    harness.connect_with(connect(ProtocolVersion::V3_1_1, ""), None);
    assert_eq!(harness.protocol.client_id(), "auto-7");

    // MQTT 3.1 requires one.
    let mut harness = Harness::new();
    let actions = harness.connect_with(connect(ProtocolVersion::V3_1, ""), None);
    assert_eq!(
        connack(&actions).reason_code,
        ReasonCode::ClientIdentifierNotValid
    );

    // MQTT 5: assigned and told.
    let mut harness = Harness::new();
    let actions = harness.connect_with(connect(ProtocolVersion::V5, ""), None);
    let connack = connack(&actions);
    assert_eq!(
        connack.properties.assigned_client_identifier.as_deref(),
        Some("auto-7")
    );

    // Refused when the configuration says so.
    let mut harness = Harness::with_settings(|s| s.allow_zero_length_clientid = false);
    let actions = harness.connect_with(connect(ProtocolVersion::V5, ""), None);
    assert!(sent(&actions).iter().any(|packet| matches!(
        packet,
        Packet::ConnAck(c) if c.reason_code == ReasonCode::ClientIdentifierNotValid
    )));
}

#[test]
fn keep_alive_above_the_maximum() {
    let limited = |settings: &mut ProtocolSettings| settings.max_keepalive = 60;
    for requested in [0, 100] {
        let mut harness = Harness::with_settings(limited);
        let mut request = connect(ProtocolVersion::V5, "c");
        request.keep_alive = requested;
        let actions = harness.connect_with(request, None);
        assert_eq!(connack(&actions).properties.server_keep_alive, Some(60));
        assert!(harness.protocol.next_timeout().is_some());
    }
    // MQTT 3.1.1 cannot be told: refused, as Mosquitto does.
    let mut harness = Harness::with_settings(limited);
    let mut request = connect(ProtocolVersion::V3_1_1, "c");
    request.keep_alive = 100;
    let actions = harness.connect_with(request, None);
    assert_eq!(
        connack(&actions).reason_code,
        ReasonCode::ClientIdentifierNotValid
    );
}

#[test]
fn keep_alive_is_enforced_at_one_and_a_half_times_the_interval() {
    let mut harness = Harness::new();
    let mut request = connect(ProtocolVersion::V5, "c");
    request.keep_alive = 10;
    harness.connect_with(request, None);
    harness.advance(Duration::from_secs(14));
    assert!(harness.input(Input::Tick).is_empty());
    // A packet restarts the timer.
    assert_eq!(sent(&harness.packet(Packet::PingReq)), [&Packet::PingResp]);
    harness.advance(Duration::from_millis(14_900));
    assert!(harness.input(Input::Tick).is_empty());
    harness.advance(Duration::from_millis(100));
    let actions = harness.input(Input::Tick);
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::KeepAliveTimeout)
    );
    assert!(closes(&actions));
}

#[test]
fn a_connection_that_never_sends_connect_is_closed() {
    let mut harness = Harness::new();
    harness.advance(Duration::from_secs(9));
    assert!(harness.input(Input::Tick).is_empty());
    harness.advance(Duration::from_secs(1));
    let actions = harness.input(Input::Tick);
    assert!(sent(&actions).is_empty());
    assert!(closes(&actions));
}

#[test]
fn session_expiry_is_granted_up_to_the_maximum() {
    let mut harness = Harness::with_settings(|settings| settings.session_expiry_max = Some(50));
    let mut request = connect(ProtocolVersion::V5, "c");
    request.properties.session_expiry_interval = Some(100);
    let actions = harness.packet(Packet::Connect(Box::new(request)));
    assert!(matches!(
        &actions[0],
        Action::OpenSession(OpenSession {
            expiry: SessionExpiry::After(50),
            ..
        })
    ));
    harness.session = Some(Session::new(
        "c".into(),
        SessionExpiry::After(50),
        SessionLimits::default(),
    ));
    let actions = harness.input(Input::SessionOpened {
        session_present: false,
    });
    assert_eq!(
        connack(&actions).properties.session_expiry_interval,
        Some(50)
    );
}

#[test]
fn mqtt311_clean_session_maps_to_session_expiry() {
    for (clean, expected) in [
        (true, SessionExpiry::OnDisconnect),
        (false, SessionExpiry::Never),
    ] {
        let mut harness = Harness::new();
        let mut request = connect(ProtocolVersion::V3_1_1, "c");
        request.clean_start = clean;
        let actions = harness.packet(Packet::Connect(Box::new(request)));
        assert!(
            matches!(&actions[0], Action::OpenSession(open) if open.expiry == expected),
            "{actions:?}"
        );
    }
}

#[test]
fn wills_the_broker_cannot_publish_are_refused() {
    let cases = [
        (
            will("a", QoS::ExactlyOnce, false),
            ReasonCode::QoSNotSupported,
        ),
        (
            will("a", QoS::AtMostOnce, true),
            ReasonCode::RetainNotSupported,
        ),
        (
            will("$SYS/x", QoS::AtMostOnce, false),
            ReasonCode::NotAuthorized,
        ),
    ];
    for (will, reason) in cases {
        let mut harness = Harness::with_settings(|settings| {
            settings.max_qos = QoS::AtLeastOnce;
            settings.retain_available = false;
        });
        let mut request = connect(ProtocolVersion::V5, "c");
        request.will = Some(will);
        let actions = harness.connect_with(request, None);
        assert_eq!(connack(&actions).reason_code, reason);
        assert!(closes(&actions));
    }
}

#[test]
fn enhanced_authentication_is_refused() {
    let mut harness = Harness::new();
    let mut request = connect(ProtocolVersion::V5, "c");
    request.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let actions = harness.connect_with(request, None);
    assert_eq!(
        connack(&actions).reason_code,
        ReasonCode::BadAuthenticationMethod
    );
}

#[test]
fn a_resumed_session_gets_its_unacknowledged_packets_again() {
    let mut stored = Session::new("c".into(), SessionExpiry::Never, SessionLimits::default());
    stored.enqueue(message("a", QoS::AtLeastOnce, 3));
    stored.enqueue(message("b", QoS::ExactlyOnce, 3));
    let now = Timestamp::from_millis(0);
    let first = stored.next_delivery(now).expect("QoS 1 in flight");
    let second = stored.next_delivery(now).expect("QoS 2 in flight");
    let pubrec = tern_session::Acknowledgement::PubRec;
    stored
        .acknowledge(second.packet_id.expect("QoS 2"), pubrec)
        .unwrap();
    stored.enqueue(message("c", QoS::AtLeastOnce, 3));
    stored.disconnect(now);
    assert_eq!(stored.in_flight().len(), 2);

    let mut harness = Harness::new();
    let mut request = connect(ProtocolVersion::V3_1_1, "c");
    request.clean_start = false;
    let actions = harness.connect_with(request, Some(stored));
    let packets = sent(&actions);
    assert!(connack(&actions).session_present);
    let Packet::Publish(resent) = packets[1] else {
        panic!("expected the PUBLISH again, got {packets:?}");
    };
    assert!(resent.dup);
    assert_eq!(resent.packet_id, first.packet_id);
    assert_eq!(
        packets[2],
        &Packet::PubRel(Ack::new(second.packet_id.unwrap()))
    );
    let Packet::Publish(queued) = packets[3] else {
        panic!("expected the queued message, got {packets:?}");
    };
    assert_eq!((&*queued.topic, queued.dup), ("c", false));
    assert!(matches!(
        harness.session().in_flight().get(first.packet_id.unwrap()),
        Some(InFlight::AwaitingPubAck(_))
    ));
}
