//! Unit tests of the protocol state machine: packets in, actions out. No
//! I/O, no clock: the harness owns the time and plays the broker's part
//! (creating the session for [`Action::OpenSession`]).

mod auth;
mod connect;
mod delivery;
mod ending;
mod publish;
mod subscribe;

use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tern_codec::{
    Ack, Connect, Packet, PacketId, ProtocolVersion, Publish, QoS, ReasonCode, TopicFilter,
};
use tern_session::{Message, Session, SessionLimits, Timestamp};

use super::{Action, Input, Now, OpenSession, Protocol, ProtocolSettings};
use crate::config::BrokerConfig;

/// Settings as the default configuration gives them.
fn settings() -> ProtocolSettings {
    ProtocolSettings::new(&BrokerConfig::default(), "auto-".into())
}

fn id(value: u16) -> PacketId {
    NonZeroU16::new(value).expect("test ids are non-zero")
}

fn publish(topic: &str, qos: QoS, packet_id: Option<u16>) -> Publish {
    let mut publish = Publish::new(topic, "payload");
    publish.qos = qos;
    publish.packet_id = packet_id.map(id);
    publish
}

fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect::new(version, client_id, 0)
}

/// The packets among `actions`.
fn sent(actions: &[Action]) -> Vec<&Packet> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send(packet) => Some(packet),
            _ => None,
        })
        .collect()
}

/// The reason code of the DISCONNECT among `actions`, if any.
fn disconnect_reason(actions: &[Action]) -> Option<ReasonCode> {
    sent(actions).into_iter().find_map(|packet| match packet {
        Packet::Disconnect(disconnect) => Some(disconnect.reason_code),
        _ => None,
    })
}

/// True if the last action closes the connection.
fn closes(actions: &[Action]) -> bool {
    matches!(actions.last(), Some(Action::Close { .. }))
}

/// The messages routed among `actions`.
fn routed(actions: &[Action]) -> Vec<&Message> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Route { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

/// A queued message, as routing would enqueue it.
fn message(topic: &str, qos: QoS, payload_len: usize) -> Message {
    let mut publish = Publish::new(topic, vec![b'x'; payload_len]);
    publish.qos = qos;
    Message::new(publish, Timestamp::from_millis(0))
}

/// One connection under test, with the time it lives in.
struct Harness {
    protocol: Protocol,
    session: Option<Session>,
    start: Instant,
    elapsed: Duration,
}

impl Harness {
    fn new() -> Self {
        Self::with_settings(|_| {})
    }

    fn with_settings(change: impl FnOnce(&mut ProtocolSettings)) -> Self {
        let mut settings = settings();
        change(&mut settings);
        let start = Instant::now();
        Self {
            protocol: Protocol::new(Arc::new(settings), 7, start),
            session: None,
            start,
            elapsed: Duration::ZERO,
        }
    }

    fn now(&self) -> Now {
        Now {
            instant: self.start + self.elapsed,
            wall: Timestamp::from_millis(1_000_000).saturating_add(self.elapsed),
        }
    }

    fn advance(&mut self, duration: Duration) {
        self.elapsed += duration;
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        let now = self.now();
        let mut out = Vec::new();
        self.protocol
            .handle(input, self.session.as_mut(), now, &mut out);
        out
    }

    fn packet(&mut self, packet: Packet) -> Vec<Action> {
        self.input(Input::Packet(packet))
    }

    fn publish(&mut self, publish: Publish) -> Vec<Action> {
        self.packet(Packet::Publish(publish))
    }

    /// Sends `connect`; if it is accepted, opens a new session for it (or
    /// `existing`, reported as present) and returns what followed.
    fn connect_with(&mut self, connect: Connect, existing: Option<Session>) -> Vec<Action> {
        let mut actions = self.packet(Packet::Connect(Box::new(connect)));
        // Play the runtime's part in a password check.
        if let Some(Action::CheckPassword { user, password }) = actions.first() {
            let checked = self
                .protocol
                .authorizer()
                .check_password(Some(user), password.as_deref());
            actions = self.input(Input::PasswordChecked(checked));
        }
        let Some(Action::OpenSession(request)) = actions.first() else {
            return actions;
        };
        let request: OpenSession = request.clone();
        let present = existing.is_some();
        self.session = Some(existing.unwrap_or_else(|| {
            Session::new(request.client_id, request.expiry, SessionLimits::default())
        }));
        self.input(Input::SessionOpened {
            session_present: present,
        })
    }

    /// A connected harness for `version`.
    fn connected(version: ProtocolVersion) -> Self {
        let mut harness = Self::new();
        harness.connect_with(connect(version, "client"), None);
        assert!(harness.protocol.is_connected());
        harness
    }

    fn session(&mut self) -> &mut Session {
        self.session.as_mut().expect("the session is open")
    }

    /// Queues `message` and delivers.
    fn deliver(&mut self, message: Message) -> Vec<Action> {
        self.session().enqueue(message);
        self.input(Input::Deliver)
    }
}

#[test]
fn acknowledgements_are_plain_before_mqtt5() {
    // The protocol chooses reason codes freely; the encoder drops them
    // before MQTT 5. One check that this holds for what we send.
    let mut wire = bytes::BytesMut::new();
    let ack = Ack::with_reason(id(3), ReasonCode::NoMatchingSubscribers);
    Packet::PubAck(ack)
        .encode(ProtocolVersion::V3_1_1, &mut wire)
        .unwrap();
    assert_eq!(&wire[..], [0x40, 0x02, 0x00, 0x03]);
}
