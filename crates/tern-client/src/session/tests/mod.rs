//! Unit tests of the session: each drives it with packets, commands and
//! ticks, and asserts on the exact packets and events it emits. This file
//! has the helpers and the connection handshake; `publish` the QoS flows in
//! both directions, `control` keep-alive, subscriptions and limits.

mod control;
mod publish;

use std::time::{Duration, Instant};

use tern_codec::{
    ConnAck, Disconnect, Packet, PacketId, PacketType, ProtocolVersion, Publish, QoS, ReasonCode,
};

use crate::{
    ClientSession, CommandError, ConnectOptions, Event, Output, ProtocolError, SessionState,
};

pub(super) fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn drain(session: &mut ClientSession) -> Vec<Output> {
    std::iter::from_fn(|| session.poll_output()).collect()
}

pub(super) fn send(packet: Packet) -> Output {
    Output::Send(packet)
}

pub(super) fn event(event: Event) -> Output {
    Output::Event(event)
}

pub(super) fn options(protocol: ProtocolVersion) -> ConnectOptions {
    ConnectOptions::new(protocol, "client-1")
}

pub(super) fn accepted() -> ConnAck {
    ConnAck::new(ReasonCode::Success, false)
}

/// A session that has sent CONNECT at `t0` and been accepted by `connack`.
pub(super) fn connected(options: ConnectOptions, connack: ConnAck) -> (ClientSession, Instant) {
    let t0 = Instant::now();
    let mut session = ClientSession::new(options);
    session.start(t0);
    session.handle_packet(Packet::ConnAck(Box::new(connack)), t0);
    drain(&mut session);
    assert_eq!(session.state(), SessionState::Connected);
    (session, t0)
}

pub(super) fn message(topic: &str, qos: QoS, packet_id: Option<u16>) -> Publish {
    let mut publish = Publish::new(topic.to_owned(), "payload");
    publish.qos = qos;
    publish.packet_id = packet_id.map(pid);
    publish
}

pub(super) fn violation(error: ProtocolError) -> Vec<Output> {
    vec![
        send(Packet::Disconnect(Box::new(Disconnect::new(
            error.reason_code(),
        )))),
        event(Event::ProtocolViolation(error)),
    ]
}

#[test]
fn start_sends_connect_and_connack_connects() {
    let mut options = options(ProtocolVersion::V5);
    options.clean_start = false;
    options.username = Some("user".into());
    options.password = Some("secret".into());
    options.properties.session_expiry_interval = Some(300);
    let t0 = Instant::now();
    let mut session = ClientSession::new(options.clone());
    assert_eq!(session.state(), SessionState::Idle);
    session.start(t0);
    assert_eq!(
        drain(&mut session),
        [send(Packet::Connect(Box::new(options.to_connect())))]
    );
    assert_eq!(session.state(), SessionState::Connecting);
    assert_eq!(session.next_deadline(), Some(t0 + secs(10)));

    let mut connack = ConnAck::new(ReasonCode::Success, true);
    connack.properties.assigned_client_identifier = Some("assigned".into());
    session.handle_packet(Packet::ConnAck(Box::new(connack.clone())), t0);
    assert_eq!(
        drain(&mut session),
        [event(Event::Connected(Box::new(connack)))]
    );
    assert_eq!(session.client_id(), "assigned");
    assert_eq!(session.next_deadline(), Some(t0 + secs(60)));
}

#[test]
fn a_refused_connection_closes_the_session() {
    let t0 = Instant::now();
    let mut session = ClientSession::new(options(ProtocolVersion::V3_1_1));
    session.start(t0);
    drain(&mut session);
    let refusal = ConnAck::new(ReasonCode::NotAuthorized, false);
    session.handle_packet(Packet::ConnAck(Box::new(refusal.clone())), t0);
    assert_eq!(
        drain(&mut session),
        [event(Event::ConnectionRefused(Box::new(refusal)))]
    );
    assert!(session.is_closed());
    assert_eq!(
        session.publish(Publish::new("t", "x"), t0),
        Err(CommandError::Closed)
    );
}

#[test]
fn a_missing_connack_times_out() {
    let t0 = Instant::now();
    let mut session = ClientSession::new(options(ProtocolVersion::V5));
    session.start(t0);
    drain(&mut session);
    session.tick(t0 + secs(9));
    assert_eq!(drain(&mut session), []);
    session.tick(t0 + secs(10));
    assert_eq!(drain(&mut session), [event(Event::ConnectTimeout)]);
    assert_eq!(session.next_deadline(), None);
}

#[test]
fn nothing_but_connack_may_come_first_and_commands_wait_for_it() {
    let t0 = Instant::now();
    let mut session = ClientSession::new(options(ProtocolVersion::V5));
    session.start(t0);
    drain(&mut session);
    assert_eq!(
        session.publish(Publish::new("t", "x"), t0),
        Err(CommandError::NotConnected)
    );
    session.handle_packet(Packet::Publish(message("t", QoS::AtMostOnce, None)), t0);
    assert_eq!(
        drain(&mut session),
        violation(ProtocolError::UnexpectedPacket(PacketType::Publish))
    );
    // Nothing more happens once closed.
    session.handle_packet(Packet::ConnAck(Box::new(accepted())), t0);
    assert_eq!(drain(&mut session), []);
}
