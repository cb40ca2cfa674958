//! The control packets, and how a whole packet is framed, decoded and encoded.
//!
//! Each packet kind lives in its own module with a `decode` that reads the
//! body after the fixed header, a `layout` that validates the value and
//! computes its lengths, and a `write_body` that cannot fail.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod subscribe;
mod tail;
mod unsubscribe;

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use ack::{Ack, SubAck, UnsubAck};
pub use auth::Auth;
pub use connack::ConnAck;
pub use connect::{Connect, LastWill};
pub use disconnect::Disconnect;
pub use publish::Publish;
pub use subscribe::Subscribe;
pub use tail::WireForm;
pub use unsubscribe::Unsubscribe;

use crate::error::{DecodeError, EncodeError};
use crate::properties::{PropertySet, checked_body_len, section_len, write_properties};
use crate::wire::{
    MAX_VARIABLE_INTEGER, Reader, parse_variable_integer, put_variable_integer,
    variable_integer_len,
};
use crate::{ProtocolVersion, QoS};

/// The control packet type, the high nibble of the first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect.
    Connect = 1,
    /// Connect acknowledgment.
    ConnAck = 2,
    /// Publish message.
    Publish = 3,
    /// Publish acknowledgment (QoS 1).
    PubAck = 4,
    /// Publish received (QoS 2, part 1).
    PubRec = 5,
    /// Publish release (QoS 2, part 2).
    PubRel = 6,
    /// Publish complete (QoS 2, part 3).
    PubComp = 7,
    /// Subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgment.
    SubAck = 9,
    /// Unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgment.
    UnsubAck = 11,
    /// Ping request.
    PingReq = 12,
    /// Ping response.
    PingResp = 13,
    /// Disconnect notification.
    Disconnect = 14,
    /// Authentication exchange (MQTT 5 only).
    Auth = 15,
}

impl PacketType {
    /// Every control packet type, in the order of their numbers.
    pub const ALL: [Self; 15] = [
        Self::Connect,
        Self::ConnAck,
        Self::Publish,
        Self::PubAck,
        Self::PubRec,
        Self::PubRel,
        Self::PubComp,
        Self::Subscribe,
        Self::SubAck,
        Self::Unsubscribe,
        Self::UnsubAck,
        Self::PingReq,
        Self::PingResp,
        Self::Disconnect,
        Self::Auth,
    ];

    fn from_nibble(nibble: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        use PacketType::*;
        Ok(match nibble {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 if version.is_v5() => Auth,
            other => return Err(DecodeError::ReservedPacketType(other)),
        })
    }

    /// The fixed flags this packet type must carry; PUBLISH has none fixed.
    const fn required_flags(self) -> Option<u8> {
        match self {
            Self::Publish => None,
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }

    /// The packet's name as the specification writes it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnAck => "CONNACK",
            Self::Publish => "PUBLISH",
            Self::PubAck => "PUBACK",
            Self::PubRec => "PUBREC",
            Self::PubRel => "PUBREL",
            Self::PubComp => "PUBCOMP",
            Self::Subscribe => "SUBSCRIBE",
            Self::SubAck => "SUBACK",
            Self::Unsubscribe => "UNSUBSCRIBE",
            Self::UnsubAck => "UNSUBACK",
            Self::PingReq => "PINGREQ",
            Self::PingResp => "PINGRESP",
            Self::Disconnect => "DISCONNECT",
            Self::Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fixed header: packet type, flags and remaining length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    /// The packet type.
    pub packet_type: PacketType,
    /// The low nibble of the first byte, already checked for this type.
    pub flags: u8,
    /// Length of the packet after the fixed header.
    pub remaining_length: u32,
    /// Length of the fixed header itself (2 to 5 bytes).
    pub header_len: u8,
}

impl FixedHeader {
    /// Parses the fixed header at the start of `bytes`; `Ok(None)` when more
    /// bytes are needed. Type and flags are checked as soon as the first byte
    /// is there, so a bad stream is rejected before its body arrives.
    pub fn parse(bytes: &[u8], version: ProtocolVersion) -> Result<Option<Self>, DecodeError> {
        let Some(&first) = bytes.first() else {
            return Ok(None);
        };
        let packet_type = PacketType::from_nibble(first >> 4, version)?;
        let flags = first & 0x0F;
        match packet_type.required_flags() {
            Some(required) if flags != required => {
                return Err(DecodeError::InvalidFlags {
                    packet: packet_type,
                    flags,
                });
            }
            Some(_) => {}
            None => {
                let qos = QoS::from_bits((flags >> 1) & 0b11)?;
                if qos == QoS::AtMostOnce && flags & 0b1000 != 0 {
                    return Err(DecodeError::DupWithQos0);
                }
            }
        }
        let Some((remaining_length, len)) = parse_variable_integer(&bytes[1..])? else {
            return Ok(None);
        };
        Ok(Some(Self {
            packet_type,
            flags,
            remaining_length,
            header_len: 1 + len as u8,
        }))
    }

    /// Length of the whole packet: fixed header plus remaining length.
    pub fn packet_len(&self) -> usize {
        usize::from(self.header_len) + self.remaining_length as usize
    }
}

/// Any MQTT control packet.
///
/// Rare packets with large bodies (CONNECT, CONNACK, DISCONNECT, AUTH) are
/// boxed so that the common ones stay small when moved and queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT.
    Connect(Box<Connect>),
    /// CONNACK.
    ConnAck(Box<ConnAck>),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(Ack),
    /// PUBREC.
    PubRec(Ack),
    /// PUBREL.
    PubRel(Ack),
    /// PUBCOMP.
    PubComp(Ack),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Box<Disconnect>),
    /// AUTH (MQTT 5).
    Auth(Box<Auth>),
}

/// The lengths a packet computes, and checks, before it is written.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Layout {
    /// The remaining length of the fixed header.
    pub remaining: usize,
    /// Body length of the packet's property section (MQTT 5).
    pub properties: usize,
    /// Body length of the will's property section (CONNECT, MQTT 5).
    pub will_properties: usize,
}

impl Layout {
    /// Adds the property section of an MQTT 5 packet (older versions have
    /// none), checking that it can be encoded.
    pub(crate) fn add_properties<P: PropertySet>(
        &mut self,
        properties: &P,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        if version.is_v5() {
            self.properties = checked_body_len(properties)?;
            self.remaining += section_len(self.properties);
        }
        Ok(())
    }

    /// Writes the property section measured by [`Layout::add_properties`].
    pub(crate) fn write_properties<P: PropertySet>(
        &self,
        properties: &P,
        version: ProtocolVersion,
        dst: &mut BytesMut,
    ) {
        if version.is_v5() {
            write_properties(properties, self.properties, dst);
        }
    }
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// Decodes the body of a packet whose fixed header is `header`. `body`
    /// holds exactly `header.remaining_length` bytes. A CONNECT is read in
    /// whatever version it announces; other packets in `version`.
    pub fn decode_body(
        header: FixedHeader,
        body: Bytes,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        debug_assert_eq!(body.len(), header.remaining_length as usize);
        let mut reader = Reader::new(body);
        let packet_type = header.packet_type;
        let packet = match packet_type {
            PacketType::Connect => Self::Connect(Box::new(Connect::decode(&mut reader)?)),
            PacketType::ConnAck => Self::ConnAck(Box::new(ConnAck::decode(&mut reader, version)?)),
            PacketType::Publish => {
                Self::Publish(Publish::decode(&mut reader, header.flags, version)?)
            }
            PacketType::PubAck => Self::PubAck(Ack::decode(&mut reader, packet_type, version)?),
            PacketType::PubRec => Self::PubRec(Ack::decode(&mut reader, packet_type, version)?),
            PacketType::PubRel => Self::PubRel(Ack::decode(&mut reader, packet_type, version)?),
            PacketType::PubComp => Self::PubComp(Ack::decode(&mut reader, packet_type, version)?),
            PacketType::Subscribe => Self::Subscribe(Subscribe::decode(&mut reader, version)?),
            PacketType::SubAck => Self::SubAck(SubAck::decode(&mut reader, version)?),
            PacketType::Unsubscribe => {
                Self::Unsubscribe(Unsubscribe::decode(&mut reader, version)?)
            }
            PacketType::UnsubAck => Self::UnsubAck(UnsubAck::decode(&mut reader, version)?),
            PacketType::PingReq => Self::PingReq,
            PacketType::PingResp => Self::PingResp,
            PacketType::Disconnect => {
                Self::Disconnect(Box::new(Disconnect::decode(&mut reader, version)?))
            }
            PacketType::Auth => Self::Auth(Box::new(Auth::decode(&mut reader)?)),
        };
        if !reader.is_empty() {
            return Err(DecodeError::TrailingBytes(packet_type));
        }
        Ok(packet)
    }

    /// The first byte of the fixed header and the checked lengths.
    fn layout(&self, version: ProtocolVersion) -> Result<(u8, Layout), EncodeError> {
        let fixed = |packet: PacketType| (packet as u8) << 4;
        Ok(match self {
            Self::Connect(connect) => (fixed(PacketType::Connect), connect.layout()?),
            Self::ConnAck(connack) => (fixed(PacketType::ConnAck), connack.layout(version)?),
            Self::Publish(publish) => (publish.first_byte(), publish.layout(version)?),
            Self::PubAck(ack) => (
                fixed(PacketType::PubAck),
                ack.layout(PacketType::PubAck, version)?,
            ),
            Self::PubRec(ack) => (
                fixed(PacketType::PubRec),
                ack.layout(PacketType::PubRec, version)?,
            ),
            Self::PubRel(ack) => (
                fixed(PacketType::PubRel) | 0b0010,
                ack.layout(PacketType::PubRel, version)?,
            ),
            Self::PubComp(ack) => (
                fixed(PacketType::PubComp),
                ack.layout(PacketType::PubComp, version)?,
            ),
            Self::Subscribe(subscribe) => (
                fixed(PacketType::Subscribe) | 0b0010,
                subscribe.layout(version)?,
            ),
            Self::SubAck(suback) => (fixed(PacketType::SubAck), suback.layout(version)?),
            Self::Unsubscribe(unsubscribe) => (
                fixed(PacketType::Unsubscribe) | 0b0010,
                unsubscribe.layout(version)?,
            ),
            Self::UnsubAck(unsuback) => (fixed(PacketType::UnsubAck), unsuback.layout(version)?),
            Self::PingReq => (fixed(PacketType::PingReq), Layout::default()),
            Self::PingResp => (fixed(PacketType::PingResp), Layout::default()),
            Self::Disconnect(disconnect) => {
                (fixed(PacketType::Disconnect), disconnect.layout(version)?)
            }
            Self::Auth(auth) => (fixed(PacketType::Auth), auth.layout(version)?),
        })
    }

    fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        match self {
            Self::Connect(connect) => connect.write_body(layout, dst),
            Self::ConnAck(connack) => connack.write_body(version, layout, dst),
            Self::Publish(publish) => publish.write_body(version, layout, dst),
            Self::PubAck(ack) | Self::PubRec(ack) | Self::PubRel(ack) | Self::PubComp(ack) => {
                ack.write_body(version, layout, dst)
            }
            Self::Subscribe(subscribe) => subscribe.write_body(version, layout, dst),
            Self::SubAck(suback) => suback.write_body(version, layout, dst),
            Self::Unsubscribe(unsubscribe) => unsubscribe.write_body(version, layout, dst),
            Self::UnsubAck(unsuback) => unsuback.write_body(version, layout, dst),
            Self::PingReq | Self::PingResp => {}
            Self::Disconnect(disconnect) => disconnect.write_body(version, layout, dst),
            Self::Auth(auth) => auth.write_body(layout, dst),
        }
    }

    /// Size of the whole encoded packet in `version`, after checking that it
    /// can be encoded. A CONNECT is always encoded in its own version.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let (_, layout) = self.checked_layout(version)?;
        Ok(1 + variable_integer_len(layout.remaining as u32) + layout.remaining)
    }

    fn checked_layout(&self, version: ProtocolVersion) -> Result<(u8, Layout), EncodeError> {
        let (first_byte, layout) = self.layout(version)?;
        if layout.remaining > MAX_VARIABLE_INTEGER as usize {
            return Err(EncodeError::PacketTooLarge(layout.remaining));
        }
        Ok((first_byte, layout))
    }

    /// Appends the packet, encoded for `version`, to `dst`. Nothing is
    /// written if the packet cannot be encoded.
    pub fn encode(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let (first_byte, layout) = self.checked_layout(version)?;
        let remaining = layout.remaining as u32;
        dst.reserve(1 + variable_integer_len(remaining) + layout.remaining);
        dst.put_u8(first_byte);
        put_variable_integer(dst, remaining);
        let body_start = dst.len();
        self.write_body(version, &layout, dst);
        debug_assert_eq!(
            dst.len() - body_start,
            layout.remaining,
            "{:?}",
            self.packet_type()
        );
        Ok(())
    }
}

/// Reads a non-zero packet identifier.
pub(crate) fn read_packet_id(reader: &mut Reader) -> Result<crate::PacketId, DecodeError> {
    crate::PacketId::new(reader.u16()?).ok_or(DecodeError::ZeroPacketId)
}

/// Decodes a PUBACK, PUBREC, PUBREL or PUBCOMP whose body is its packet
/// identifier alone (every one before MQTT 5; a success without properties
/// in MQTT 5) straight from `buf`, which holds the whole packet, and
/// removes it from `buf`. The general path splits a shared handle off the
/// buffer for each packet, two atomic operations that cost a busy
/// subscriber's connection more than the rest of reading its
/// acknowledgments. `None` for any other packet; `buf` is then untouched.
fn decode_short_ack(
    header: FixedHeader,
    buf: &mut BytesMut,
) -> Option<Result<Packet, DecodeError>> {
    if header.remaining_length != 2 {
        return None;
    }
    let packet: fn(Ack) -> Packet = match header.packet_type {
        PacketType::PubAck => Packet::PubAck,
        PacketType::PubRec => Packet::PubRec,
        PacketType::PubRel => Packet::PubRel,
        PacketType::PubComp => Packet::PubComp,
        _ => return None,
    };
    let start = usize::from(header.header_len);
    let id = u16::from_be_bytes([buf[start], buf[start + 1]]);
    buf.advance(start + 2);
    Some(
        crate::PacketId::new(id)
            .map(|id| packet(Ack::new(id)))
            .ok_or(DecodeError::ZeroPacketId),
    )
}

/// An incremental decoder for one direction of one connection.
///
/// It holds the protocol version (adopted from a decoded CONNECT) and the
/// maximum packet size this side accepts. Call [`Decoder::decode`] whenever
/// bytes arrive; it returns one packet at a time and leaves partial packets
/// in the buffer.
#[derive(Debug, Clone)]
pub struct Decoder {
    version: ProtocolVersion,
    max_packet_size: u32,
}

impl Decoder {
    /// A decoder for `version` that rejects packets larger than
    /// `max_packet_size` bytes (fixed header included).
    pub fn new(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Self {
            version,
            max_packet_size,
        }
    }

    /// The version packets are decoded in.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// Changes the version, for a client that learns it from its own CONNECT.
    pub fn set_version(&mut self, version: ProtocolVersion) {
        self.version = version;
    }

    /// The largest packet accepted, fixed header included.
    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Changes the largest packet accepted.
    pub fn set_max_packet_size(&mut self, max_packet_size: u32) {
        self.max_packet_size = max_packet_size;
    }

    /// Decodes one packet from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a whole packet; the
    /// bytes stay in `buf`. A packet larger than the maximum is refused as
    /// soon as its fixed header is complete, before its body is buffered. The
    /// body is split off `buf` without copying, so payloads and strings of
    /// the returned packet share `buf`'s memory. Decoding a CONNECT switches
    /// the decoder to the version it announces.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(header) = FixedHeader::parse(buf, self.version)? else {
            return Ok(None);
        };
        let packet_len = header.packet_len();
        if packet_len > self.max_packet_size as usize {
            return Err(DecodeError::PacketTooLarge {
                size: packet_len as u32,
                max: self.max_packet_size,
            });
        }
        if buf.len() < packet_len {
            return Ok(None);
        }
        if let Some(ack) = decode_short_ack(header, buf) {
            return ack.map(Some);
        }
        let mut body = buf.split_to(packet_len).freeze();
        body.advance(usize::from(header.header_len));
        let packet = Packet::decode_body(header, body, self.version)?;
        if let Packet::Connect(connect) = &packet {
            self.version = connect.protocol;
        }
        Ok(Some(packet))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSIONS: [ProtocolVersion; 3] = [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ];

    /// What the general path makes of one packet at the front of `bytes`.
    fn general(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
        let header = FixedHeader::parse(bytes, version)?.expect("a whole header");
        let start = usize::from(header.header_len);
        let body = Bytes::copy_from_slice(&bytes[start..header.packet_len()]);
        Packet::decode_body(header, body, version)
    }

    #[test]
    fn two_byte_acknowledgments_decode_as_the_general_path_does() {
        let first_bytes = [0x40, 0x50, 0x62, 0x70];
        for version in VERSIONS {
            for first in first_bytes {
                for id in [0u16, 1, 0x1234, 0xFFFF] {
                    let [high, low] = id.to_be_bytes();
                    // A PINGREQ follows: it must stay in the buffer.
                    let bytes = [first, 2, high, low, 0xC0, 0];
                    let mut buf = BytesMut::from(&bytes[..]);
                    let mut decoder = Decoder::new(version, 1024);
                    let fast = decoder.decode(&mut buf).map(Option::unwrap);
                    let slow = general(&bytes, version);
                    assert_eq!(fast, slow, "{version:?}, first byte {first:#x}, id {id}");
                    if id == 0 {
                        assert_eq!(fast, Err(DecodeError::ZeroPacketId));
                    } else {
                        assert_eq!(&buf[..], &[0xC0, 0]);
                        assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PingReq)));
                    }
                }
            }
        }
    }

    #[test]
    fn longer_acknowledgments_take_the_general_path() {
        // MQTT 5 PUBACK 0x10 (no matching subscribers), then with an
        // empty property section.
        for bytes in [&[0x40, 3, 0, 7, 0x10][..], &[0x40, 4, 0, 7, 0x10, 0][..]] {
            let mut buf = BytesMut::from(bytes);
            let mut decoder = Decoder::new(ProtocolVersion::V5, 1024);
            let packet = decoder.decode(&mut buf).unwrap().unwrap();
            assert_eq!(Ok(packet.clone()), general(bytes, ProtocolVersion::V5));
            let Packet::PubAck(ack) = packet else {
                panic!("not a PUBACK: {packet:?}");
            };
            assert_eq!(ack.reason_code, crate::ReasonCode::NoMatchingSubscribers);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_partial_acknowledgment_waits_for_its_last_byte() {
        let mut buf = BytesMut::from(&[0x40, 2, 0][..]);
        let mut decoder = Decoder::new(ProtocolVersion::V3_1_1, 1024);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&[9]);
        let expected = Packet::PubAck(Ack::new(crate::PacketId::new(9).unwrap()));
        assert_eq!(decoder.decode(&mut buf), Ok(Some(expected)));
    }
}
