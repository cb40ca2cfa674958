//! Decode and encode errors.
//!
//! Every way a packet can break the specification has its own variant, named
//! after the rule it breaks, and [`DecodeError::reason_code`] maps it to the
//! MQTT 5 reason code a server sends before closing the connection. The types
//! are small and `Copy` so that the hot path can return them cheaply.

use thiserror::Error;

use crate::{PacketType, ProtocolVersion, ReasonCode, properties::PropertyId, topic::TopicError};

/// Why bytes could not be decoded into a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The remaining length used a fifth byte or a non-minimal encoding.
    #[error(
        "malformed variable byte integer: more than 4 bytes or not minimally encoded (MQTT 5 §1.5.5)"
    )]
    MalformedVariableInteger,
    /// Packet type 0, or 15 before MQTT 5.
    #[error("reserved control packet type {0}")]
    ReservedPacketType(u8),
    /// The low nibble of the first byte is not what the packet type requires.
    #[error("invalid fixed header flags 0x{flags:X} for {packet} (MQTT 5 §2.1.3)")]
    InvalidFlags {
        /// The packet whose flags are wrong.
        packet: PacketType,
        /// The flags received.
        flags: u8,
    },
    /// The whole packet would exceed the negotiated maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge {
        /// Size of the whole packet announced by the fixed header.
        size: u32,
        /// The limit in force.
        max: u32,
    },
    /// A field runs past the end of the packet.
    #[error("packet ends inside a field: the remaining length is too short for the content")]
    Truncated,
    /// Bytes are left after the last field of a packet.
    #[error("unexpected bytes after the end of a {0} packet")]
    TrailingBytes(PacketType),
    /// A string is not well-formed UTF-8 (this includes encoded surrogates).
    #[error("string is not well-formed UTF-8 (MQTT 5 §1.5.4)")]
    InvalidUtf8,
    /// A string contains U+0000.
    #[error("string contains the null character U+0000 (MQTT 5 §1.5.4)")]
    NullCharacter,
    /// QoS bits set to 3.
    #[error("QoS {0} does not exist: QoS must be 0, 1 or 2")]
    InvalidQos(u8),
    /// A QoS 0 PUBLISH with the DUP flag set.
    #[error("DUP flag set on a QoS 0 PUBLISH (MQTT 5 §3.3.1.1)")]
    DupWithQos0,
    /// A packet identifier of zero.
    #[error("packet identifier 0 is not allowed (MQTT 5 §2.2.1)")]
    ZeroPacketId,
    /// CONNECT with an unknown protocol name.
    #[error("protocol name is neither \"MQTT\" nor \"MQIsdp\"")]
    InvalidProtocolName,
    /// CONNECT with an unknown protocol level.
    #[error(
        "protocol level {0} is not supported: use 3 (MQTT 3.1), 4 (MQTT 3.1.1) or 5 (MQTT 5.0)"
    )]
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags with the reserved bit 0 set.
    #[error("reserved bit 0 of the CONNECT flags is set (MQTT 5 §3.1.2.3)")]
    ConnectReservedFlag,
    /// Will QoS or retain set without the will flag.
    #[error("will QoS or will retain set without a will (MQTT 5 §3.1.2.5)")]
    InvalidWillFlags,
    /// Before MQTT 5 a password needs a user name.
    #[error("password flag set without the user name flag ({0} §3.1.2.9)")]
    PasswordWithoutUsername(ProtocolVersion),
    /// CONNACK acknowledge flags with reserved bits set.
    #[error("reserved bits set in the CONNACK acknowledge flags")]
    InvalidConnackFlags,
    /// A refused CONNACK that claims a session is present.
    #[error("CONNACK refuses the connection but sets session present")]
    SessionPresentOnRefusal,
    /// A topic name that breaks the topic rules.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A topic filter that breaks the topic filter rules.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// A PUBLISH with an empty topic and no topic alias.
    #[error("PUBLISH has an empty topic name and no topic alias (MQTT 5 §3.3.2.1)")]
    EmptyTopicWithoutAlias,
    /// A SUBSCRIBE or UNSUBSCRIBE without any topic filter.
    #[error("{0} must contain at least one topic filter")]
    NoTopicFilters(PacketType),
    /// A SUBACK, or an MQTT 5 UNSUBACK, without any reason code.
    #[error("{0} must contain a reason code for each topic filter")]
    NoReasonCodes(PacketType),
    /// Subscription option bits that are reserved in this version.
    #[error("reserved bits set in subscription options byte 0x{0:02X}")]
    ReservedSubscriptionOptionBits(u8),
    /// Retain handling value 3.
    #[error("retain handling 3 does not exist (MQTT 5 §3.8.3.1)")]
    InvalidRetainHandling,
    /// No Local set on a shared subscription.
    #[error("no local cannot be set on a shared subscription (MQTT 5 §3.8.3.1)")]
    NoLocalOnSharedSubscription,
    /// A property identifier that MQTT 5 does not define.
    #[error("unknown property identifier 0x{0:02X}")]
    UnknownProperty(u32),
    /// A property that this packet may not carry.
    #[error("property {property} is not allowed in {packet}")]
    PropertyNotAllowed {
        /// The property received.
        property: PropertyId,
        /// The packet or will that carried it.
        packet: PacketType,
    },
    /// A property that may occur once occurred again.
    #[error("property {0} occurs more than once")]
    DuplicateProperty(PropertyId),
    /// A property value outside its allowed range (for example zero).
    #[error("property {0} has a value outside its allowed range")]
    InvalidPropertyValue(PropertyId),
    /// A reason code that this packet may not carry.
    #[error("reason code 0x{code:02X} is not valid in {packet}")]
    InvalidReasonCode {
        /// The packet that carried it.
        packet: PacketType,
        /// The code received.
        code: u8,
    },
}

impl DecodeError {
    /// The MQTT 5 reason code a server sends (in CONNACK or DISCONNECT)
    /// before closing a connection that sent these bytes.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            InvalidProtocolName | UnsupportedProtocolLevel(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            InvalidTopicName(_) => ReasonCode::TopicNameInvalid,
            InvalidTopicFilter(_) => ReasonCode::TopicFilterInvalid,
            InvalidPropertyValue(PropertyId::TopicAlias) => ReasonCode::TopicAliasInvalid,
            ZeroPacketId
            | SessionPresentOnRefusal
            | EmptyTopicWithoutAlias
            | NoTopicFilters(_)
            | NoReasonCodes(_)
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | InvalidReasonCode { .. } => ReasonCode::ProtocolError,
            MalformedVariableInteger
            | ReservedPacketType(_)
            | InvalidFlags { .. }
            | Truncated
            | TrailingBytes(_)
            | InvalidUtf8
            | NullCharacter
            | InvalidQos(_)
            | DupWithQos0
            | ConnectReservedFlag
            | InvalidWillFlags
            | PasswordWithoutUsername(_)
            | InvalidConnackFlags
            | ReservedSubscriptionOptionBits(_)
            | UnknownProperty(_)
            | PropertyNotAllowed { .. } => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet value could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A string or binary field is longer than 65,535 bytes.
    #[error("{0} is longer than 65,535 bytes")]
    FieldTooLong(&'static str),
    /// The packet is longer than the largest remaining length (268,435,455).
    #[error("packet body of {0} bytes exceeds the MQTT maximum of 268,435,455")]
    PacketTooLarge(usize),
    /// A value does not fit its wire type (for example a subscription
    /// identifier above 268,435,455, or zero).
    #[error("{0} is outside its allowed range")]
    ValueOutOfRange(&'static str),
    /// QoS 1 or 2 without a packet identifier, or QoS 0 with one.
    #[error("PUBLISH packet identifier must be present exactly when QoS > 0")]
    PacketIdMismatch,
    /// The packet does not exist in this protocol version (AUTH before 5).
    #[error("{packet} does not exist in {version}")]
    NotInVersion {
        /// The packet that was to be encoded.
        packet: PacketType,
        /// The version it was to be encoded for.
        version: ProtocolVersion,
    },
    /// The reason code may not be sent in this packet.
    #[error("reason code {code} may not be sent in {packet}")]
    ReasonCodeNotAllowed {
        /// The packet that was to be encoded.
        packet: PacketType,
        /// The offending code.
        code: ReasonCode,
    },
    /// SUBSCRIBE or UNSUBSCRIBE with no topic filter.
    #[error("{0} needs at least one topic filter")]
    NoTopicFilters(PacketType),
    /// SUBACK, or MQTT 5 UNSUBACK, with no reason code.
    #[error("{0} needs a reason code for each topic filter")]
    NoReasonCodes(PacketType),
    /// A string field contains U+0000, which MQTT forbids.
    #[error("{0} contains the null character U+0000")]
    NullCharacter(&'static str),
    /// A topic name (of a PUBLISH, a will or a response topic) is invalid.
    #[error("invalid {field}: {error}")]
    InvalidTopic {
        /// Which topic.
        field: &'static str,
        /// What is wrong with it.
        error: TopicError,
    },
    /// A QoS 0 PUBLISH with the DUP flag.
    #[error("DUP may only be set on QoS 1 and 2 messages")]
    DupWithQos0,
    /// No Local on a shared subscription.
    #[error("no local cannot be set on a shared subscription")]
    NoLocalOnSharedSubscription,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_small_and_copy() {
        fn assert_copy<T: Copy>() {}
        assert_copy::<DecodeError>();
        assert!(size_of::<DecodeError>() <= 16);
    }

    #[test]
    fn reason_codes_follow_the_kind_of_error() {
        assert_eq!(
            DecodeError::Truncated.reason_code(),
            ReasonCode::MalformedPacket
        );
        assert_eq!(
            DecodeError::DuplicateProperty(PropertyId::ContentType).reason_code(),
            ReasonCode::ProtocolError
        );
        assert_eq!(
            DecodeError::PacketTooLarge { size: 10, max: 5 }.reason_code(),
            ReasonCode::PacketTooLarge
        );
        assert_eq!(
            DecodeError::InvalidPropertyValue(PropertyId::TopicAlias).reason_code(),
            ReasonCode::TopicAliasInvalid
        );
    }
}
