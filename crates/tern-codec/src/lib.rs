//! MQTT packets for Tern: typed values for every control packet of MQTT 3.1,
//! 3.1.1 and 5.0, a strict incremental decoder and an encoder.
//!
//! This crate does no I/O and knows nothing of sockets, tasks or clocks. The
//! broker, the command-line clients, the benchmark tool and the tests all
//! speak MQTT through it, so there is exactly one implementation of the
//! protocol's wire format.
//!
//! - [`Decoder::decode`] takes whole packets off the front of a `BytesMut`
//!   and answers "need more" for partial input. Payloads and strings are
//!   slices of the received buffer, never copies. A packet over the maximum
//!   size is refused from its fixed header, before its body is buffered.
//! - Everything the specification calls malformed or a protocol error is a
//!   [`DecodeError`] naming the rule it breaks; [`DecodeError::reason_code`]
//!   gives the MQTT 5 reason code to answer with.
//! - [`Packet::encode`] checks a packet completely before writing its first
//!   byte, so a failed encode leaves the output buffer untouched.
//! - [`topic`] validates topic names and filters, including shared
//!   subscriptions, and holds the reference matching rule.
//!
//! ```
//! use bytes::BytesMut;
//! use tern_codec::{Decoder, Packet, ProtocolVersion, Publish, QoS};
//!
//! let mut publish = Publish::new("sensors/1/temperature", "21.5");
//! publish.qos = QoS::AtLeastOnce;
//! publish.packet_id = std::num::NonZeroU16::new(7);
//!
//! let mut wire = BytesMut::new();
//! Packet::Publish(publish.clone()).encode(ProtocolVersion::V5, &mut wire).unwrap();
//!
//! let mut decoder = Decoder::new(ProtocolVersion::V5, 1024 * 1024);
//! assert_eq!(decoder.decode(&mut wire).unwrap(), Some(Packet::Publish(publish)));
//! assert!(wire.is_empty());
//! ```

pub mod error;
mod packet;
pub mod properties;
mod reason;
pub mod topic;
mod types;
pub mod wire;

pub use bytestring::ByteString;
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Ack, Auth, ConnAck, Connect, Decoder, Disconnect, FixedHeader, LastWill, Packet, PacketType,
    Publish, SubAck, Subscribe, UnsubAck, Unsubscribe, WireForm,
};
pub use properties::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PropertyId, PublishProperties, SubscribeProperties, UnsubscribeProperties, UserProperties,
    WillProperties, WireOrder,
};
pub use reason::ReasonCode;
pub use topic::{TopicError, TopicFilter};
pub use types::{PacketId, ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};

/// The largest packet MQTT can express: a 4-byte remaining length of
/// 268,435,455 plus the 5-byte fixed header.
pub const MAX_PACKET_SIZE: u32 = 268_435_460;
