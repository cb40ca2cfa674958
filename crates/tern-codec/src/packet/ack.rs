//! Acknowledgments: PUBACK, PUBREC, PUBREL and PUBCOMP share one body
//! ([`Ack`]); SUBACK and UNSUBACK carry a reason code per topic filter.

use bytes::{BufMut, BytesMut};

use super::tail::{WireForm, read_tail, tail_layout, write_tail};
use super::{Layout, read_packet_id};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{
    AckProperties, checked_body_len, read_properties, read_properties_in, section_len,
    write_properties,
};
use crate::wire::Reader;
use crate::{PacketId, PacketType, ProtocolVersion, ReasonCode};

/// The body of PUBACK, PUBREC, PUBREL and PUBCOMP; the [`Packet`](crate::Packet)
/// variant says which. Before MQTT 5 only the packet identifier is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Identifier of the PUBLISH (or PUBREL) being acknowledged.
    pub packet_id: PacketId,
    /// Outcome (MQTT 5).
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: AckProperties,
    /// Which optional fields were on the wire (MQTT 5).
    pub wire_form: WireForm,
}

fn reason_for(
    packet: PacketType,
    version: ProtocolVersion,
    code: u8,
) -> Result<ReasonCode, DecodeError> {
    let reason = if version.is_v5() {
        ReasonCode::from_u8(code).filter(|reason| reason.is_allowed_in(packet))
    } else {
        // SUBACK before MQTT 5: a granted QoS or 0x80.
        match code {
            0x00..=0x02 => ReasonCode::from_u8(code),
            0x80 => Some(ReasonCode::UnspecifiedError),
            _ => None,
        }
    };
    reason.ok_or(DecodeError::InvalidReasonCode { packet, code })
}

fn check_allowed(code: ReasonCode, packet: PacketType) -> Result<(), EncodeError> {
    if code.is_allowed_in(packet) {
        Ok(())
    } else {
        Err(EncodeError::ReasonCodeNotAllowed { packet, code })
    }
}

impl Ack {
    /// A successful acknowledgment without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Self::with_reason(packet_id, ReasonCode::Success)
    }

    /// An acknowledgment with a reason code and no properties.
    pub fn with_reason(packet_id: PacketId, reason_code: ReasonCode) -> Self {
        Self {
            packet_id,
            reason_code,
            properties: AckProperties::default(),
            wire_form: WireForm::SHORTEST,
        }
    }

    pub(super) fn decode(
        reader: &mut Reader,
        packet: PacketType,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(reader)?;
        if !version.is_v5() {
            return Ok(Self::new(packet_id));
        }
        let tail = read_tail(reader, packet)?;
        Ok(Self {
            packet_id,
            reason_code: tail.reason_code,
            properties: tail.properties,
            wire_form: tail.wire_form,
        })
    }

    pub(super) fn layout(
        &self,
        packet: PacketType,
        version: ProtocolVersion,
    ) -> Result<Layout, EncodeError> {
        let mut layout = Layout::default();
        if version.is_v5() {
            layout = tail_layout(
                packet,
                self.reason_code,
                &self.properties,
                self.properties.is_empty(),
                self.wire_form,
            )?;
        }
        layout.remaining += 2;
        Ok(layout)
    }

    pub(super) fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            let tail = Layout {
                remaining: layout.remaining - 2,
                ..*layout
            };
            write_tail(self.reason_code, &self.properties, &tail, dst);
        }
    }
}

/// A SUBACK packet: one reason code (or granted QoS) per requested filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Identifier of the SUBSCRIBE being acknowledged.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: AckProperties,
    /// `GRANTED_QOS_0`, `GrantedQoS1`, `GrantedQoS2` or a failure, in the
    /// order of the SUBSCRIBE's filters. Before MQTT 5 every failure is sent
    /// as 0x80 and decoded as [`ReasonCode::UnspecifiedError`].
    pub reason_codes: Vec<ReasonCode>,
}

impl SubAck {
    pub(super) fn decode(
        reader: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(reader)?;
        let properties = read_properties_in(reader, PacketType::SubAck, version)?;
        let mut reason_codes = Vec::new();
        while !reader.is_empty() {
            reason_codes.push(reason_for(PacketType::SubAck, version, reader.u8()?)?);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::NoReasonCodes(PacketType::SubAck));
        }
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        if self.reason_codes.is_empty() {
            return Err(EncodeError::NoReasonCodes(PacketType::SubAck));
        }
        let mut layout = Layout {
            remaining: 2 + self.reason_codes.len(),
            ..Layout::default()
        };
        if version.is_v5() {
            for &code in &self.reason_codes {
                check_allowed(code, PacketType::SubAck)?;
            }
            layout.properties = checked_body_len(&self.properties)?;
            layout.remaining += section_len(layout.properties);
        }
        Ok(layout)
    }

    pub(super) fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            write_properties(&self.properties, layout.properties, dst);
            dst.extend(self.reason_codes.iter().map(|&code| code as u8));
        } else {
            dst.extend(self.reason_codes.iter().map(|code| code.to_v3_suback()));
        }
    }
}

/// An UNSUBACK packet. Before MQTT 5 it carries no reason codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// Identifier of the UNSUBSCRIBE being acknowledged.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: AckProperties,
    /// One reason code per filter (MQTT 5 only; empty before).
    pub reason_codes: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(super) fn decode(
        reader: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(reader)?;
        let mut unsuback = Self {
            packet_id,
            properties: AckProperties::default(),
            reason_codes: Vec::new(),
        };
        if version.is_v5() {
            unsuback.properties = read_properties(reader, PacketType::UnsubAck)?;
            while !reader.is_empty() {
                unsuback.reason_codes.push(reason_for(
                    PacketType::UnsubAck,
                    version,
                    reader.u8()?,
                )?);
            }
            if unsuback.reason_codes.is_empty() {
                return Err(DecodeError::NoReasonCodes(PacketType::UnsubAck));
            }
        }
        Ok(unsuback)
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        let mut layout = Layout {
            remaining: 2,
            ..Layout::default()
        };
        if version.is_v5() {
            if self.reason_codes.is_empty() {
                return Err(EncodeError::NoReasonCodes(PacketType::UnsubAck));
            }
            for &code in &self.reason_codes {
                check_allowed(code, PacketType::UnsubAck)?;
            }
            layout.properties = checked_body_len(&self.properties)?;
            layout.remaining += section_len(layout.properties) + self.reason_codes.len();
        }
        Ok(layout)
    }

    pub(super) fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        if version.is_v5() {
            write_properties(&self.properties, layout.properties, dst);
            dst.extend(self.reason_codes.iter().map(|&code| code as u8));
        }
    }
}
