//! Errors: why the server's behaviour ended a session ([`ProtocolError`]),
//! why a command was refused ([`CommandError`]), and why the driver's
//! connection failed ([`ClientError`]).

use std::io;

use tern_codec::{
    ConnAck, DecodeError, EncodeError, PacketId, PacketType, QoS, ReasonCode, TopicError,
};
use thiserror::Error;

/// The server broke the protocol; the session closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// Bytes from the server did not decode.
    #[error("the server sent a bad packet: {0}")]
    Decode(DecodeError),
    /// A packet a server never sends, or one sent at the wrong time (for
    /// example anything before CONNACK).
    #[error("the server sent {0}, which it may not send here")]
    UnexpectedPacket(PacketType),
    /// An acknowledgment for a packet identifier that is not waiting for it.
    #[error(
        "the server sent {packet} for packet identifier {packet_id}, which is not waiting for one"
    )]
    UnknownPacketId {
        /// The acknowledgment.
        packet: PacketType,
        /// Its packet identifier.
        packet_id: PacketId,
    },
    /// A SUBACK or UNSUBACK whose number of reason codes differs from the
    /// number of filters requested.
    #[error("the server answered {requested} topic filters with {received} reason codes")]
    ReasonCodeCount {
        /// Filters in the request.
        requested: usize,
        /// Codes in the answer.
        received: usize,
    },
    /// A topic alias of 0 or above the maximum this client announced.
    #[error("the server used topic alias {alias}, but this client accepts 1 to {maximum}")]
    TopicAliasOutOfRange {
        /// The alias received.
        alias: u16,
        /// The client's topic alias maximum.
        maximum: u16,
    },
    /// An empty topic with an alias the server never set.
    #[error("the server used topic alias {0} before giving it a topic")]
    UnknownTopicAlias(u16),
    /// More unacknowledged QoS 2 messages than the client's receive maximum.
    #[error("the server exceeded the receive maximum of {0} unacknowledged QoS 2 messages")]
    ReceiveMaximumExceeded(u16),
}

impl ProtocolError {
    /// The MQTT 5 reason code of the DISCONNECT the client sends.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Decode(error) => error.reason_code(),
            Self::TopicAliasOutOfRange { .. } => ReasonCode::TopicAliasInvalid,
            Self::ReceiveMaximumExceeded(_) => ReasonCode::ReceiveMaximumExceeded,
            Self::UnexpectedPacket(_)
            | Self::UnknownPacketId { .. }
            | Self::ReasonCodeCount { .. }
            | Self::UnknownTopicAlias(_) => ReasonCode::ProtocolError,
        }
    }
}

/// Why the session refused a command. Nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CommandError {
    /// Commands are accepted only between CONNACK and the end of the session.
    #[error("not connected: wait for the server's CONNACK before sending commands")]
    NotConnected,
    /// The session has ended.
    #[error("the connection is closed")]
    Closed,
    /// The topic cannot be published to.
    #[error("invalid topic name: {0}")]
    InvalidTopic(TopicError),
    /// The server's CONNACK limits QoS below the requested one.
    #[error("the server accepts messages up to QoS {maximum:?}, not {requested:?}")]
    QosNotSupported {
        /// The QoS of the message.
        requested: QoS,
        /// The server's maximum QoS.
        maximum: QoS,
    },
    /// The server's CONNACK says it keeps no retained messages.
    #[error("the server does not support retained messages")]
    RetainNotSupported,
    /// A topic alias the server does not accept, or an empty topic with an
    /// alias this client has not set on this connection.
    #[error(
        "topic alias {alias} cannot be used: the server accepts 1 to {maximum}, and an empty topic needs an alias set earlier"
    )]
    TopicAliasInvalid {
        /// The alias of the message.
        alias: u16,
        /// The server's topic alias maximum.
        maximum: u16,
    },
    /// SUBSCRIBE and UNSUBSCRIBE need at least one topic filter.
    #[error("at least one topic filter is needed")]
    NoTopicFilters,
    /// All 65,535 packet identifiers are waiting for acknowledgments.
    #[error("all packet identifiers are in use; wait for acknowledgments")]
    PacketIdsExhausted,
}

/// Why the driver could not connect, or why its connection ended badly.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    #[error("connection failed: {0}")]
    Io(#[from] io::Error),
    /// The server refused the connection.
    #[error("the server refused the connection: {}", .0.reason_code)]
    Refused(Box<ConnAck>),
    /// No CONNACK within the connect timeout.
    #[error("the server did not answer CONNECT in time")]
    ConnectTimeout,
    /// No PINGRESP within the ping timeout.
    #[error("the server stopped answering pings")]
    PingTimeout,
    /// The server closed the connection.
    #[error("the server closed the connection")]
    ConnectionClosed,
    /// The server sent DISCONNECT.
    #[error("the server disconnected: {0}")]
    Disconnected(ReasonCode),
    /// The server broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A packet could not be encoded (for example a property out of range).
    #[error("a packet could not be encoded: {0}")]
    Encode(#[from] EncodeError),
    /// The session refused a command.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The connection task has ended; the handle can do nothing more.
    #[error("the connection task has ended")]
    TaskEnded,
}
