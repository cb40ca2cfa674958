//! What the session hands back: packets to send and events for the
//! application.

use std::fmt;

use tern_codec::{ConnAck, Disconnect, Packet, PacketId, Publish, ReasonCode};

use crate::ProtocolError;

/// Names one command (publish, subscribe, unsubscribe) so that its
/// completion event can be matched to it. Unique within a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    /// The number behind the identifier; sessions count from 1.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// One thing the session asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write this packet to the connection, after the ones before it.
    Send(Packet),
    /// Tell the application.
    Event(Event),
}

/// What happened on the connection, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server accepted the connection; the CONNACK says whether a
    /// session was resumed and carries the server's limits (MQTT 5).
    Connected(Box<ConnAck>),
    /// The server refused the connection; the reason is in the CONNACK.
    /// The session is closed.
    ConnectionRefused(Box<ConnAck>),
    /// A message arrived. A topic alias has already been resolved: `topic`
    /// is always the full topic name and the alias property is removed.
    Message(Publish),
    /// The server acknowledged a QoS 1 publish (PUBACK) or completed a
    /// QoS 2 one (PUBCOMP, or a PUBREC with a failure reason). `reason`
    /// below 0x80 is a success (it may say "no matching subscribers").
    PublishCompleted {
        /// The publish command.
        request: RequestId,
        /// The packet identifier it travelled with.
        packet_id: PacketId,
        /// The outcome the server reported (always success before MQTT 5).
        reason: ReasonCode,
    },
    /// The server answered a SUBSCRIBE: one code per filter, the granted
    /// QoS or a failure.
    Subscribed {
        /// The subscribe command.
        request: RequestId,
        /// Granted QoS (`Success`, `GrantedQoS1`, `GrantedQoS2`) or failure.
        reason_codes: Vec<ReasonCode>,
    },
    /// The server answered an UNSUBSCRIBE (one code per filter in MQTT 5,
    /// none before).
    Unsubscribed {
        /// The unsubscribe command.
        request: RequestId,
        /// Outcome per filter (MQTT 5 only).
        reason_codes: Vec<ReasonCode>,
    },
    /// No CONNACK arrived within the connect timeout. The session is closed.
    ConnectTimeout,
    /// No PINGRESP arrived within the ping timeout. The session is closed.
    PingTimeout,
    /// The server sent DISCONNECT (MQTT 5 says why). The session is closed.
    Disconnected(Box<Disconnect>),
    /// The server broke the protocol. The session sent DISCONNECT with the
    /// matching reason code (MQTT 5) and is closed.
    ProtocolViolation(ProtocolError),
}
