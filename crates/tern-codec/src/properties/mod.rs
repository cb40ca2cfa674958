//! MQTT 5 properties: one typed struct per packet kind.
//!
//! Each struct lists, in ascending identifier order, exactly the properties
//! its packet may carry; the decoder rejects any other identifier, a second
//! occurrence of a property that may occur once, and values outside their
//! range. The encoder writes properties in ascending identifier order (the
//! order the paho clients use), except for a decoded packet whose properties
//! arrived in another order: it keeps that order, so that every packet
//! re-encodes to the bytes it was decoded from.

#[macro_use]
mod set_macro;
mod kinds;

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use self::kinds::{
    Binary, Flag, Kind, MaxQos, NonZeroU16, NonZeroU32, Pair, SubscriptionId, Topic, U16, U32, Utf8,
};
use crate::error::{DecodeError, EncodeError};
use crate::wire::{MAX_VARIABLE_INTEGER, Reader, put_variable_integer, variable_integer_len};
use crate::{PacketType, ProtocolVersion, QoS};

macro_rules! property_ids {
    ($( $name:ident = $value:literal, $text:literal; )*) => {
        /// The identifier of an MQTT 5 property (MQTT 5 §2.2.2.2).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum PropertyId {
            $( #[doc = $text] $name = $value, )*
        }

        impl PropertyId {
            /// Parses an identifier; `None` for identifiers MQTT 5 does not define.
            pub const fn from_u32(value: u32) -> Option<Self> {
                match value {
                    $( $value => Some(Self::$name), )*
                    _ => None,
                }
            }

            /// The property's name in the specification.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Self::$name => $text, )*
                }
            }
        }
    };
}

property_ids! {
    PayloadFormatIndicator = 0x01, "Payload Format Indicator";
    MessageExpiryInterval = 0x02, "Message Expiry Interval";
    ContentType = 0x03, "Content Type";
    ResponseTopic = 0x08, "Response Topic";
    CorrelationData = 0x09, "Correlation Data";
    SubscriptionIdentifier = 0x0B, "Subscription Identifier";
    SessionExpiryInterval = 0x11, "Session Expiry Interval";
    AssignedClientIdentifier = 0x12, "Assigned Client Identifier";
    ServerKeepAlive = 0x13, "Server Keep Alive";
    AuthenticationMethod = 0x15, "Authentication Method";
    AuthenticationData = 0x16, "Authentication Data";
    RequestProblemInformation = 0x17, "Request Problem Information";
    WillDelayInterval = 0x18, "Will Delay Interval";
    RequestResponseInformation = 0x19, "Request Response Information";
    ResponseInformation = 0x1A, "Response Information";
    ServerReference = 0x1C, "Server Reference";
    ReasonString = 0x1F, "Reason String";
    ReceiveMaximum = 0x21, "Receive Maximum";
    TopicAliasMaximum = 0x22, "Topic Alias Maximum";
    TopicAlias = 0x23, "Topic Alias";
    MaximumQos = 0x24, "Maximum QoS";
    RetainAvailable = 0x25, "Retain Available";
    UserProperty = 0x26, "User Property";
    MaximumPacketSize = 0x27, "Maximum Packet Size";
    WildcardSubscriptionAvailable = 0x28, "Wildcard Subscription Available";
    SubscriptionIdentifierAvailable = 0x29, "Subscription Identifier Available";
    SharedSubscriptionAvailable = 0x2A, "Shared Subscription Available";
}

impl fmt::Display for PropertyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), *self as u8)
    }
}

/// User properties: name/value pairs in the order they were received.
pub type UserProperties = Vec<(ByteString, ByteString)>;

/// The properties of one packet kind.
pub(crate) trait PropertySet: Default {
    /// Reads the value of property `id`, which the caller has just read.
    fn read_property(
        &mut self,
        id: PropertyId,
        packet: PacketType,
        reader: &mut Reader,
    ) -> Result<(), DecodeError>;
    /// Reads and discards the value of property `id`: no allocation.
    fn skip_property(
        id: PropertyId,
        packet: PacketType,
        reader: &mut Reader,
    ) -> Result<(), DecodeError>;
    /// Length of the properties without their length prefix.
    fn body_len(&self) -> Result<usize, EncodeError>;
    /// Writes the properties without their length prefix, in wire order if
    /// one was recorded, otherwise in ascending identifier order.
    fn write_body(&self, dst: &mut BytesMut);
    /// Records the order the properties arrived in.
    fn set_wire_order(&mut self, order: Box<[PropertyId]>);
}

/// Reads a property length and the properties of `packet` that follow it.
pub(crate) fn read_properties<P: PropertySet>(
    reader: &mut Reader,
    packet: PacketType,
) -> Result<P, DecodeError> {
    let mut properties = P::default();
    let len = reader.variable_integer()? as usize;
    if len > 0 {
        fill_properties(reader.take(len)?, packet, &mut properties)?;
    }
    Ok(properties)
}

/// Reads the property section of `packet` in MQTT 5; older versions have
/// none, so their properties are the empty set.
pub(crate) fn read_properties_in<P: PropertySet>(
    reader: &mut Reader,
    packet: PacketType,
    version: ProtocolVersion,
) -> Result<P, DecodeError> {
    if version.is_v5() {
        read_properties(reader, packet)
    } else {
        Ok(P::default())
    }
}

/// Like [`read_properties`], but allocates only when there are properties:
/// for packets that keep their properties behind a pointer.
pub(crate) fn read_boxed_properties<P: PropertySet>(
    reader: &mut Reader,
    packet: PacketType,
) -> Result<Option<Box<P>>, DecodeError> {
    // Most messages have no properties: a single zero byte.
    if reader.skip_if(0) {
        return Ok(None);
    }
    let len = reader.variable_integer()? as usize;
    let section = reader.take(len)?;
    let mut properties = Box::<P>::default();
    fill_properties(section, packet, &mut *properties)?;
    Ok(Some(properties))
}

/// Decodes the properties of a non-empty section into `properties`.
fn fill_properties<P: PropertySet>(
    section: Bytes,
    packet: PacketType,
    properties: &mut P,
) -> Result<(), DecodeError> {
    let mut section_reader = Reader::new(section.clone());
    let mut previous = 0;
    let mut ascending = true;
    while !section_reader.is_empty() {
        let raw = section_reader.variable_integer()?;
        let id = PropertyId::from_u32(raw).ok_or(DecodeError::UnknownProperty(raw))?;
        ascending &= id as u8 >= previous;
        previous = id as u8;
        properties.read_property(id, packet, &mut section_reader)?;
    }
    if !ascending {
        properties.set_wire_order(identifiers_in_order::<P>(section, packet));
    }
    Ok(())
}

/// The identifiers of a property section that has already been decoded
/// once without error, in the order they appear. Only needed, and only
/// paid for, when a peer does not write properties in ascending order.
fn identifiers_in_order<P: PropertySet>(section: Bytes, packet: PacketType) -> Box<[PropertyId]> {
    let mut reader = Reader::new(section);
    let mut order = Vec::new();
    while let Ok(raw) = reader.variable_integer() {
        let Some(id) = PropertyId::from_u32(raw) else {
            break;
        };
        if P::skip_property(id, packet, &mut reader).is_err() {
            break;
        }
        order.push(id);
    }
    order.into_boxed_slice()
}

/// The order in which a decoded packet's properties arrived, kept so that
/// the packet re-encodes to the same bytes. The specification fixes no
/// order, so it is not part of a value's identity: two property sets that
/// differ only in wire order are equal.
#[derive(Clone, Default)]
pub struct WireOrder(Option<Box<[PropertyId]>>);

impl WireOrder {
    /// No recorded order: properties are written in ascending order.
    pub const ASCENDING: Self = Self(None);

    /// The recorded identifiers, if the properties arrived out of ascending order.
    pub fn identifiers(&self) -> Option<&[PropertyId]> {
        self.0.as_deref()
    }
}

impl PartialEq for WireOrder {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for WireOrder {}

impl fmt::Debug for WireOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("ascending"),
            Some(order) => f
                .debug_list()
                .entries(order.iter().map(|id| *id as u8))
                .finish(),
        }
    }
}

/// The body length of `properties`, checked to fit a variable byte integer.
pub(crate) fn checked_body_len<P: PropertySet>(properties: &P) -> Result<usize, EncodeError> {
    let len = properties.body_len()?;
    if len > MAX_VARIABLE_INTEGER as usize {
        return Err(EncodeError::PacketTooLarge(len));
    }
    Ok(len)
}

/// Length of a property section whose body is `body_len` bytes.
pub(crate) fn section_len(body_len: usize) -> usize {
    variable_integer_len(body_len as u32) + body_len
}

/// Writes the length prefix and the properties; `body_len` comes from
/// [`checked_body_len`].
pub(crate) fn write_properties<P: PropertySet>(
    properties: &P,
    body_len: usize,
    dst: &mut BytesMut,
) {
    put_variable_integer(dst, body_len as u32);
    properties.write_body(dst);
}

property_set! {
    /// Properties of CONNECT.
    pub struct ConnectProperties {
        /// Seconds the session outlives the connection; absent means 0.
        session_expiry_interval: one U32 = SessionExpiryInterval,
        /// Name of the enhanced authentication method.
        authentication_method: one Utf8 = AuthenticationMethod,
        /// Data of the enhanced authentication method.
        authentication_data: one Binary = AuthenticationData,
        /// Whether the server may send reason strings and user properties on failures.
        request_problem_information: one Flag = RequestProblemInformation,
        /// Whether the client asks for response information in CONNACK.
        request_response_information: one Flag = RequestResponseInformation,
        /// QoS 1 and 2 messages the client will process at once.
        receive_maximum: one NonZeroU16 = ReceiveMaximum,
        /// Highest topic alias the client accepts from the server.
        topic_alias_maximum: one U16 = TopicAliasMaximum,
        /// User properties.
        user_properties: many Pair = UserProperty,
        /// Largest packet the client accepts.
        maximum_packet_size: one NonZeroU32 = MaximumPacketSize,
    }
}

property_set! {
    /// Properties of the will message in CONNECT.
    pub struct WillProperties {
        /// 1 if the payload is UTF-8 text.
        payload_format_indicator: one Flag = PayloadFormatIndicator,
        /// Lifetime of the will message in seconds.
        message_expiry_interval: one U32 = MessageExpiryInterval,
        /// MIME type of the payload.
        content_type: one Utf8 = ContentType,
        /// Topic for a response to the will message.
        response_topic: one Topic = ResponseTopic,
        /// Data that links a response to this message.
        correlation_data: one Binary = CorrelationData,
        /// Seconds to wait after the connection ends before publishing the will.
        will_delay_interval: one U32 = WillDelayInterval,
        /// User properties.
        user_properties: many Pair = UserProperty,
    }
}

property_set! {
    /// Properties of CONNACK.
    pub struct ConnAckProperties {
        /// Session expiry the server chose, if it differs from the request.
        session_expiry_interval: one U32 = SessionExpiryInterval,
        /// Client identifier assigned to a client that sent an empty one.
        assigned_client_identifier: one Utf8 = AssignedClientIdentifier,
        /// Keep alive the server imposes, in seconds.
        server_keep_alive: one U16 = ServerKeepAlive,
        /// Name of the enhanced authentication method.
        authentication_method: one Utf8 = AuthenticationMethod,
        /// Data of the enhanced authentication method.
        authentication_data: one Binary = AuthenticationData,
        /// Basis for response topics, when the client asked for it.
        response_information: one Utf8 = ResponseInformation,
        /// Another server the client should use.
        server_reference: one Utf8 = ServerReference,
        /// Human-readable reason.
        reason_string: one Utf8 = ReasonString,
        /// QoS 1 and 2 messages the server will process at once.
        receive_maximum: one NonZeroU16 = ReceiveMaximum,
        /// Highest topic alias the server accepts from the client.
        topic_alias_maximum: one U16 = TopicAliasMaximum,
        /// Highest QoS the server supports, when below 2.
        maximum_qos: one MaxQos = MaximumQos,
        /// Whether retained messages are supported.
        retain_available: one Flag = RetainAvailable,
        /// User properties.
        user_properties: many Pair = UserProperty,
        /// Largest packet the server accepts.
        maximum_packet_size: one NonZeroU32 = MaximumPacketSize,
        /// Whether wildcard subscriptions are supported.
        wildcard_subscription_available: one Flag = WildcardSubscriptionAvailable,
        /// Whether subscription identifiers are supported.
        subscription_identifiers_available: one Flag = SubscriptionIdentifierAvailable,
        /// Whether shared subscriptions are supported.
        shared_subscription_available: one Flag = SharedSubscriptionAvailable,
    }
}

property_set! {
    /// Properties of PUBLISH.
    pub struct PublishProperties {
        /// 1 if the payload is UTF-8 text.
        payload_format_indicator: one Flag = PayloadFormatIndicator,
        /// Lifetime of the message in seconds.
        message_expiry_interval: one U32 = MessageExpiryInterval,
        /// MIME type of the payload.
        content_type: one Utf8 = ContentType,
        /// Topic for a response to this message.
        response_topic: one Topic = ResponseTopic,
        /// Data that links a response to this message.
        correlation_data: one Binary = CorrelationData,
        /// Identifiers of the subscriptions that matched (server to client).
        subscription_identifiers: many SubscriptionId = SubscriptionIdentifier,
        /// Topic alias standing for the topic name.
        topic_alias: one NonZeroU16 = TopicAlias,
        /// User properties.
        user_properties: many Pair = UserProperty,
    }
}

property_set! {
    /// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
    pub struct AckProperties {
        /// Human-readable reason.
        reason_string: one Utf8 = ReasonString,
        /// User properties.
        user_properties: many Pair = UserProperty,
    }
}

property_set! {
    /// Properties of SUBSCRIBE.
    pub struct SubscribeProperties {
        /// Identifier echoed in every message this subscription delivers.
        subscription_identifier: one SubscriptionId = SubscriptionIdentifier,
        /// User properties.
        user_properties: many Pair = UserProperty,
    }
}

property_set! {
    /// Properties of UNSUBSCRIBE.
    pub struct UnsubscribeProperties {
        /// User properties.
        user_properties: many Pair = UserProperty,
    }
}

property_set! {
    /// Properties of DISCONNECT.
    pub struct DisconnectProperties {
        /// New session expiry set by the client as it disconnects.
        session_expiry_interval: one U32 = SessionExpiryInterval,
        /// Another server the client should use.
        server_reference: one Utf8 = ServerReference,
        /// Human-readable reason.
        reason_string: one Utf8 = ReasonString,
        /// User properties.
        user_properties: many Pair = UserProperty,
    }
}

property_set! {
    /// Properties of AUTH.
    pub struct AuthProperties {
        /// Name of the enhanced authentication method.
        authentication_method: one Utf8 = AuthenticationMethod,
        /// Data of the enhanced authentication method.
        authentication_data: one Binary = AuthenticationData,
        /// Human-readable reason.
        reason_string: one Utf8 = ReasonString,
        /// User properties.
        user_properties: many Pair = UserProperty,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<P: PropertySet>(bytes: &'static [u8]) -> Result<P, DecodeError> {
        read_properties(
            &mut Reader::new(Bytes::from_static(bytes)),
            PacketType::Publish,
        )
    }

    #[test]
    fn publish_properties_decode() {
        let properties: PublishProperties =
            decode(b"\x0f\x01\x01\x02\x00\x00\x00\x3c\x0b\x05\x0b\x80\x01\x23\x00\x07").unwrap();
        assert_eq!(properties.payload_format_indicator, Some(true));
        assert_eq!(properties.message_expiry_interval, Some(60));
        assert_eq!(properties.subscription_identifiers, vec![5, 128]);
        assert_eq!(properties.topic_alias, Some(7));
    }

    #[test]
    fn duplicates_wrong_packets_and_bad_values_are_rejected() {
        assert_eq!(
            decode::<PublishProperties>(b"\x04\x01\x00\x01\x01"),
            Err(DecodeError::DuplicateProperty(
                PropertyId::PayloadFormatIndicator
            ))
        );
        assert_eq!(
            decode::<PublishProperties>(b"\x03\x21\x00\x01"),
            Err(DecodeError::PropertyNotAllowed {
                property: PropertyId::ReceiveMaximum,
                packet: PacketType::Publish
            })
        );
        assert_eq!(
            decode::<PublishProperties>(b"\x03\x23\x00\x00"),
            Err(DecodeError::InvalidPropertyValue(PropertyId::TopicAlias))
        );
        assert_eq!(
            decode::<PublishProperties>(b"\x02\x01\x02"),
            Err(DecodeError::InvalidPropertyValue(
                PropertyId::PayloadFormatIndicator
            ))
        );
        assert_eq!(
            decode::<PublishProperties>(b"\x01\x7f"),
            Err(DecodeError::UnknownProperty(0x7f))
        );
        assert_eq!(
            decode::<PublishProperties>(b"\x05\x02\x00"),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode::<PublishProperties>(b"\x05\x08\x00\x02a#"),
            Err(DecodeError::InvalidPropertyValue(PropertyId::ResponseTopic))
        );
    }

    #[test]
    fn a_property_may_not_run_past_its_section() {
        // The section is 2 bytes long but the four-byte integer needs 5.
        assert_eq!(
            decode::<PublishProperties>(b"\x02\x02\x00\x00\x00\x3c"),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn encoding_is_in_ascending_identifier_order() {
        let properties = PublishProperties {
            topic_alias: Some(3),
            user_properties: vec![("k".into(), "v".into())],
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        let len = checked_body_len(&properties).unwrap();
        let mut buf = BytesMut::new();
        write_properties(&properties, len, &mut buf);
        assert_eq!(buf.len(), section_len(len));
        assert_eq!(
            &buf[..],
            b"\x17\x03\x00\x0atext/plain\x23\x00\x03\x26\x00\x01k\x00\x01v"
        );
        let decoded: PublishProperties =
            read_properties(&mut Reader::new(buf.freeze()), PacketType::Publish).unwrap();
        assert_eq!(decoded, properties);
    }

    #[test]
    fn properties_out_of_ascending_order_re_encode_in_their_order() {
        // Message expiry (0x02) after a user property (0x26), as Mosquitto
        // writes forwarded messages.
        let wire = b"\x0c\x26\x00\x01k\x00\x01v\x02\x00\x00\x0e\x10";
        let mut properties: PublishProperties = read_properties(
            &mut Reader::new(Bytes::from_static(wire)),
            PacketType::Publish,
        )
        .unwrap();
        assert_eq!(
            properties.wire_order.identifiers(),
            Some(&[PropertyId::UserProperty, PropertyId::MessageExpiryInterval][..])
        );
        let encode = |properties: &PublishProperties| {
            let len = checked_body_len(properties).unwrap();
            let mut buf = BytesMut::new();
            write_properties(properties, len, &mut buf);
            buf
        };
        assert_eq!(&encode(&properties)[..], wire);

        // Equality ignores the wire order.
        let ascending = PublishProperties {
            message_expiry_interval: Some(3600),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        assert_eq!(properties, ascending);

        // Properties added after decoding are written too, after the
        // recorded ones.
        properties.subscription_identifiers.push(9);
        properties.user_properties.push(("k2".into(), "v2".into()));
        let again: PublishProperties = read_properties(
            &mut Reader::new(encode(&properties).freeze()),
            PacketType::Publish,
        )
        .unwrap();
        assert_eq!(again, properties);
        assert_eq!(again.subscription_identifiers, [9]);
        assert_eq!(again.user_properties.len(), 2);
    }

    #[test]
    fn out_of_range_values_are_not_encoded() {
        let properties = PublishProperties {
            topic_alias: Some(0),
            ..Default::default()
        };
        assert_eq!(
            checked_body_len(&properties),
            Err(EncodeError::ValueOutOfRange("Topic Alias"))
        );
        let properties = SubscribeProperties {
            subscription_identifier: Some(0),
            ..Default::default()
        };
        assert!(checked_body_len(&properties).is_err());
    }
}
