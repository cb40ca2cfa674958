//! How a connection ends: DISCONNECT from either side, lost connections,
//! takeover, shutdown, and the fate of the will in each case.

use std::time::Duration;

use tern_codec::{
    DecodeError, Disconnect, LastWill, Packet, ProtocolVersion, QoS, ReasonCode, WillProperties,
};
use tern_session::SessionExpiry;

use super::*;

/// A connected client with a will; `delay` is its Will Delay Interval and
/// `expiry` its Session Expiry Interval (MQTT 5).
fn with_will(version: ProtocolVersion, delay: u32, expiry: u32) -> Harness {
    let mut harness = Harness::new();
    let mut request = connect(version, "c");
    request.properties.session_expiry_interval = Some(expiry);
    request.will = Some(LastWill {
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(delay),
            message_expiry_interval: Some(30),
            ..WillProperties::default()
        },
        topic: "status/c".into(),
        payload: "offline".into(),
    });
    harness.connect_with(request, None);
    assert!(harness.protocol.is_connected());
    harness
}

fn disconnect(reason: ReasonCode) -> Packet {
    Packet::Disconnect(Box::new(Disconnect::new(reason)))
}

#[test]
fn a_normal_disconnect_discards_the_will() {
    let mut harness = with_will(ProtocolVersion::V5, 0, 60);
    let actions = harness.packet(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert!(routed(&actions).is_empty());
    assert!(sent(&actions).is_empty());
    assert!(closes(&actions));
    assert!(harness.session().will().is_none());
    assert!(!harness.session().is_connected());
}

#[test]
fn disconnect_with_will_message_publishes_it() {
    let mut harness = with_will(ProtocolVersion::V5, 0, 60);
    let actions = harness.packet(disconnect(ReasonCode::DisconnectWithWillMessage));
    let wills = routed(&actions);
    assert_eq!(wills.len(), 1);
    assert_eq!(wills[0].topic(), "status/c");
    assert_eq!(&wills[0].publish().payload[..], b"offline");
}

#[test]
fn a_lost_connection_publishes_the_will_with_expiry_from_publication() {
    let mut harness = with_will(ProtocolVersion::V3_1_1, 0, 0);
    harness.advance(Duration::from_secs(100));
    let actions = harness.input(Input::ConnectionLost);
    let wills = routed(&actions);
    assert_eq!(wills.len(), 1);
    let published_at = harness.now().wall;
    assert_eq!(
        wills[0].expires_at(),
        Some(published_at.saturating_add_secs(30))
    );
    assert!(closes(&actions));
}

#[test]
fn a_delayed_will_waits_unless_the_session_ends_first() {
    // Delay 5 s, session lasting 60 s: due in 5 s, kept in the session.
    let mut harness = with_will(ProtocolVersion::V5, 5, 60);
    let actions = harness.input(Input::ConnectionLost);
    assert!(routed(&actions).is_empty());
    let lost_at = harness.now().wall;
    assert_eq!(
        harness.session().will_due_at(),
        Some(lost_at.saturating_add_secs(5))
    );
    assert!(harness.session().take_due_will(lost_at).is_none());
    let due = lost_at.saturating_add_secs(5);
    assert!(harness.session().take_due_will(due).is_some());

    // Delay 60 s, session lasting 10 s: due when the session ends.
    let mut harness = with_will(ProtocolVersion::V5, 60, 10);
    harness.input(Input::ConnectionLost);
    let lost_at = harness.now().wall;
    assert_eq!(
        harness.session().will_due_at(),
        Some(lost_at.saturating_add_secs(10))
    );

    // Session ending with the connection: published at once.
    let mut harness = with_will(ProtocolVersion::V5, 60, 0);
    assert_eq!(routed(&harness.input(Input::ConnectionLost)).len(), 1);
}

#[test]
fn a_delayed_will_counts_its_expiry_from_publication_not_connect() {
    // Will Delay 5 s, Message Expiry Interval 30 s, lost 100 s after
    // CONNECT: published 105 s after CONNECT, alive until 135 s.
    let mut harness = with_will(ProtocolVersion::V5, 5, 600);
    harness.advance(Duration::from_secs(100));
    harness.input(Input::ConnectionLost);
    let due = harness.now().wall.saturating_add_secs(5);
    let will = harness.session().take_due_will(due).expect("due");
    assert!(!will.is_expired(due), "expired before it was published");
    assert_eq!(will.expires_at(), Some(due.saturating_add_secs(30)));
    assert_eq!(will.remaining_expiry(due), Some(30));
}

#[test]
fn keep_alive_timeout_publishes_the_will() {
    let mut harness = Harness::new();
    let mut request = connect(ProtocolVersion::V5, "c");
    request.keep_alive = 1;
    request.will = Some(LastWill {
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
        topic: "w".into(),
        payload: "x".into(),
    });
    harness.connect_with(request, None);
    harness.advance(Duration::from_millis(1_500));
    let actions = harness.input(Input::Tick);
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::KeepAliveTimeout)
    );
    assert_eq!(routed(&actions).len(), 1);
}

#[test]
fn takeover_disconnects_with_0x8e_and_publishes_the_will() {
    let mut harness = with_will(ProtocolVersion::V5, 0, 60);
    let actions = harness.input(Input::TakenOver);
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::SessionTakenOver)
    );
    assert_eq!(routed(&actions).len(), 1);
    assert!(closes(&actions));

    let mut harness = with_will(ProtocolVersion::V3_1_1, 0, 0);
    let actions = harness.input(Input::TakenOver);
    assert!(sent(&actions).is_empty());
    assert_eq!(routed(&actions).len(), 1);
}

#[test]
fn shutdown_disconnects_with_0x8b_and_keeps_quiet_about_the_will() {
    let mut harness = with_will(ProtocolVersion::V5, 0, 60);
    let actions = harness.input(Input::ServerShutdown);
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::ServerShuttingDown)
    );
    assert!(routed(&actions).is_empty());
    assert!(!harness.session().is_connected());
}

#[test]
fn an_invalid_packet_disconnects_with_its_reason_and_publishes_the_will() {
    let mut harness = with_will(ProtocolVersion::V5, 0, 0);
    let too_large = DecodeError::PacketTooLarge {
        size: 2_000_000,
        max: 1_048_576,
    };
    let actions = harness.input(Input::DecodeError(too_large));
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::PacketTooLarge)
    );
    assert_eq!(routed(&actions).len(), 1);

    let mut harness = Harness::connected(ProtocolVersion::V5);
    let actions = harness.input(Input::DecodeError(DecodeError::Truncated));
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::MalformedPacket)
    );
}

#[test]
fn session_expiry_at_disconnect() {
    // Raised from 0: a protocol error.
    let mut harness = with_will(ProtocolVersion::V5, 0, 0);
    let mut raise = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    raise.properties.session_expiry_interval = Some(60);
    let actions = harness.packet(Packet::Disconnect(Box::new(raise)));
    assert_eq!(disconnect_reason(&actions), Some(ReasonCode::ProtocolError));

    // Lowered to 0: the session ends with the connection.
    let mut harness = with_will(ProtocolVersion::V5, 0, 60);
    let mut lower = Disconnect::new(ReasonCode::NORMAL_DISCONNECTION);
    lower.properties.session_expiry_interval = Some(0);
    harness.packet(Packet::Disconnect(Box::new(lower)));
    assert_eq!(harness.session().expiry(), SessionExpiry::OnDisconnect);
    let now = harness.now().wall;
    assert!(harness.session().is_expired(now));
}

#[test]
fn packets_only_servers_send_are_protocol_errors() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let actions = harness.packet(Packet::PingResp);
    assert_eq!(disconnect_reason(&actions), Some(ReasonCode::ProtocolError));
    assert!(closes(&actions));
}

#[test]
fn a_connection_whose_session_was_taken_already_leaves_it_alone() {
    let mut harness = with_will(ProtocolVersion::V5, 0, 60);
    let now = harness.now();
    let mut actions = Vec::new();
    harness
        .protocol
        .handle(Input::TakenOver, None, now, &mut actions);
    assert_eq!(
        disconnect_reason(&actions),
        Some(ReasonCode::SessionTakenOver)
    );
    assert!(routed(&actions).is_empty(), "the will is the new owner's");
    assert!(closes(&actions));
    assert!(harness.session().is_connected(), "untouched");
    assert!(harness.session().will().is_some());
}
