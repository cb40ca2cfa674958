//! Proptest strategies for valid MQTT packets of every protocol version,
//! shared by the round-trip and robustness tests.
//!
//! "Valid" means a value that the decoder gives back unchanged once it has
//! been encoded: fields that an older version cannot carry keep their
//! defaults (properties, v5 subscription options, reason codes beyond the
//! v3 return codes), a PUBLISH has a packet identifier exactly when its QoS
//! is above 0, and so on. Every optional property is generated both absent
//! and present, and strings are arbitrary Unicode without U+0000, sometimes
//! empty where the specification allows it.

mod packets;
mod properties;
pub mod stream;

use std::num::NonZeroU16;

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use tern_codec::{ByteString, Packet, PacketType, ProtocolVersion, QoS, ReasonCode, TopicFilter};

use packets::{
    ack, auth, connack, connect, disconnect, publish, suback, subscribe, unsuback, unsubscribe,
};

/// Every protocol version, oldest first.
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

/// Every control packet type.
pub const PACKET_TYPES: [PacketType; 15] = PacketType::ALL;

/// The CONNACK codes that survive the trip through a v3 return code.
pub(super) const V3_CONNACK_CODES: [ReasonCode; 6] = [
    ReasonCode::Success,
    ReasonCode::UnsupportedProtocolVersion,
    ReasonCode::ClientIdentifierNotValid,
    ReasonCode::ServerUnavailable,
    ReasonCode::BadUserNameOrPassword,
    ReasonCode::NotAuthorized,
];

/// The SUBACK codes that survive the trip through a v3 return code.
pub(super) const V3_SUBACK_CODES: [ReasonCode; 4] = [
    ReasonCode::Success,
    ReasonCode::GrantedQoS1,
    ReasonCode::GrantedQoS2,
    ReasonCode::UnspecifiedError,
];

/// Characters that stress UTF-8 handling: every encoded length, the edges
/// of the planes, a byte order mark, and MQTT's own special characters.
const SPECIAL_CHARS: &[char] = &[
    'é',
    'ß',
    '€',
    '中',
    '𝄞',
    '😀',
    '\u{7F}',
    '\u{80}',
    '\u{7FF}',
    '\u{800}',
    '\u{FFFF}',
    '\u{10000}',
    '\u{10FFFF}',
    '\u{FEFF}',
    ' ',
    '$',
    '/',
    '+',
    '#',
];

/// Whether `packet_type` exists in `version` (AUTH is MQTT 5 only).
pub fn exists_in(packet_type: PacketType, version: ProtocolVersion) -> bool {
    packet_type != PacketType::Auth || version.is_v5()
}

/// Any protocol version.
pub fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(&VERSIONS[..])
}

fn any_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => prop::char::range('a', 'z'),
        2 => select(SPECIAL_CHARS),
        2 => any::<char>(),
    ]
    .prop_filter("MQTT strings exclude U+0000", |c| *c != '\0')
}

/// A UTF-8 string of up to `max` characters, possibly empty.
pub fn text(max: usize) -> impl Strategy<Value = ByteString> {
    vec(any_char(), 0..=max)
        .prop_map(|chars| ByteString::from(chars.into_iter().collect::<String>()))
}

/// Binary data of up to `max` bytes, possibly empty.
pub fn binary(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max).prop_map(Bytes::from)
}

fn level_chars(min: usize, max: usize) -> impl Strategy<Value = String> {
    vec(
        any_char().prop_filter("not a separator or wildcard", |c| {
            !matches!(c, '/' | '+' | '#')
        }),
        min..=max,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A valid topic name: non-empty, no wildcards, empty levels allowed.
pub fn topic_name() -> impl Strategy<Value = ByteString> {
    vec(level_chars(0, 6), 1..=4)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("topic names are not empty", |topic| !topic.is_empty())
        .prop_map(ByteString::from)
}

fn plain_filter() -> impl Strategy<Value = String> {
    let level = prop_oneof![5 => level_chars(0, 6), 1 => Just("+".to_owned())];
    (vec(level, 0..=4), any::<bool>())
        .prop_map(|(mut levels, multi_level)| {
            if multi_level {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("topic filters are not empty", |filter| !filter.is_empty())
}

/// A valid topic filter with wildcards in valid places; one in five is a
/// shared subscription `$share/group/filter`.
pub fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    prop_oneof![
        4 => plain_filter(),
        1 => (level_chars(1, 6), plain_filter())
            .prop_map(|(group, filter)| format!("$share/{group}/{filter}")),
    ]
    .prop_filter_map("a valid topic filter", |text| TopicFilter::new(text).ok())
}

/// Any QoS.
pub fn qos() -> impl Strategy<Value = QoS> {
    select(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][..])
}

/// Any packet identifier.
pub fn packet_id() -> impl Strategy<Value = NonZeroU16> {
    (1..=u16::MAX).prop_map(|id| NonZeroU16::new(id).expect("range excludes zero"))
}

/// Every MQTT 5 reason code.
pub fn all_reason_codes() -> Vec<ReasonCode> {
    (0..=u8::MAX).filter_map(ReasonCode::from_u8).collect()
}

/// A reason code MQTT 5 allows in `packet`.
pub fn reason_allowed_in(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    let allowed: Vec<_> = all_reason_codes()
        .into_iter()
        .filter(|code| code.is_allowed_in(packet))
        .collect();
    // Success is the common case: make sure the short forms get exercised.
    prop_oneof![1 => Just(ReasonCode::Success), 3 => select(allowed)]
}

/// `strategy` in MQTT 5, the default value before.
pub(super) fn v5_or_default<S>(version: ProtocolVersion, strategy: S) -> BoxedStrategy<S::Value>
where
    S: Strategy + 'static,
    S::Value: Default + Clone,
{
    if version.is_v5() {
        strategy.boxed()
    } else {
        Just(S::Value::default()).boxed()
    }
}

/// A valid packet of type `packet_type` for `version`, which must exist there.
pub fn packet_of(version: ProtocolVersion, packet_type: PacketType) -> BoxedStrategy<Packet> {
    assert!(
        exists_in(packet_type, version),
        "{packet_type} in {version}"
    );
    match packet_type {
        PacketType::Connect => connect(version)
            .prop_map(|p| Packet::Connect(Box::new(p)))
            .boxed(),
        PacketType::ConnAck => connack(version)
            .prop_map(|p| Packet::ConnAck(Box::new(p)))
            .boxed(),
        PacketType::Publish => publish(version).prop_map(Packet::Publish).boxed(),
        PacketType::PubAck => ack(version, packet_type).prop_map(Packet::PubAck).boxed(),
        PacketType::PubRec => ack(version, packet_type).prop_map(Packet::PubRec).boxed(),
        PacketType::PubRel => ack(version, packet_type).prop_map(Packet::PubRel).boxed(),
        PacketType::PubComp => ack(version, packet_type).prop_map(Packet::PubComp).boxed(),
        PacketType::Subscribe => subscribe(version).prop_map(Packet::Subscribe).boxed(),
        PacketType::SubAck => suback(version).prop_map(Packet::SubAck).boxed(),
        PacketType::Unsubscribe => unsubscribe(version).prop_map(Packet::Unsubscribe).boxed(),
        PacketType::UnsubAck => unsuback(version).prop_map(Packet::UnsubAck).boxed(),
        PacketType::PingReq => Just(Packet::PingReq).boxed(),
        PacketType::PingResp => Just(Packet::PingResp).boxed(),
        PacketType::Disconnect => disconnect(version)
            .prop_map(|p| Packet::Disconnect(Box::new(p)))
            .boxed(),
        PacketType::Auth => auth().prop_map(|p| Packet::Auth(Box::new(p))).boxed(),
    }
}

/// A valid packet of any type that exists in `version`.
pub fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    Union::new(
        PACKET_TYPES
            .iter()
            .filter(|packet_type| exists_in(**packet_type, version))
            .map(|packet_type| packet_of(version, *packet_type)),
    )
    .boxed()
}

/// A version and a valid packet of `packet_type` for it, over every version
/// where the packet exists.
#[allow(dead_code, reason = "robustness.rs includes this module too")]
pub fn versioned(packet_type: PacketType) -> BoxedStrategy<(ProtocolVersion, Packet)> {
    let versions: Vec<_> = VERSIONS
        .into_iter()
        .filter(|version| exists_in(packet_type, *version))
        .collect();
    select(versions)
        .prop_flat_map(move |version| (Just(version), packet_of(version, packet_type)))
        .boxed()
}

/// A version and a valid packet of any type for it.
pub fn any_versioned_packet() -> BoxedStrategy<(ProtocolVersion, Packet)> {
    version()
        .prop_flat_map(|version| (Just(version), packet(version)))
        .boxed()
}
