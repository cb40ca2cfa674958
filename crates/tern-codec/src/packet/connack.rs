//! CONNACK: the server's answer to CONNECT.

use bytes::{BufMut, BytesMut};

use super::Layout;
use crate::error::{DecodeError, EncodeError};
use crate::properties::{
    ConnAckProperties, checked_body_len, read_properties_in, section_len, write_properties,
};
use crate::wire::Reader;
use crate::{PacketType, ProtocolVersion, ReasonCode};

/// A CONNACK packet. Before MQTT 5 the reason code travels as the closest
/// return code (see [`ReasonCode::to_v3_connack`]), and MQTT 3.1 has no
/// session present flag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// The server resumed an existing session.
    pub session_present: bool,
    /// Outcome of the connection attempt.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: ConnAckProperties,
}

impl ConnAck {
    /// A CONNACK with only a reason code.
    pub fn new(reason_code: ReasonCode, session_present: bool) -> Self {
        Self {
            session_present,
            reason_code,
            properties: ConnAckProperties::default(),
        }
    }

    pub(super) fn decode(
        reader: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let flags = reader.u8()?;
        // MQTT 3.1 has no session present flag: the whole byte is reserved.
        let reserved = if version == ProtocolVersion::V3_1 {
            0xFF
        } else {
            0b1111_1110
        };
        if flags & reserved != 0 {
            return Err(DecodeError::InvalidConnackFlags);
        }
        let code = reader.u8()?;
        let invalid = DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code,
        };
        let reason_code = if version.is_v5() {
            ReasonCode::from_u8(code)
                .filter(|reason| reason.is_allowed_in(PacketType::ConnAck))
                .ok_or(invalid)?
        } else {
            ReasonCode::from_v3_connack(code).ok_or(invalid)?
        };
        let session_present = flags & 1 != 0;
        if session_present && reason_code != ReasonCode::Success {
            return Err(DecodeError::SessionPresentOnRefusal);
        }
        let properties = read_properties_in(reader, PacketType::ConnAck, version)?;
        Ok(Self {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        let mut layout = Layout {
            remaining: 2,
            ..Layout::default()
        };
        if version.is_v5() {
            if !self.reason_code.is_allowed_in(PacketType::ConnAck) {
                return Err(EncodeError::ReasonCodeNotAllowed {
                    packet: PacketType::ConnAck,
                    code: self.reason_code,
                });
            }
            layout.properties = checked_body_len(&self.properties)?;
            layout.remaining += section_len(layout.properties);
        }
        Ok(layout)
    }

    pub(super) fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        let session_present = self.session_present
            && self.reason_code == ReasonCode::Success
            && version != ProtocolVersion::V3_1;
        dst.put_u8(u8::from(session_present));
        if version.is_v5() {
            dst.put_u8(self.reason_code as u8);
            write_properties(&self.properties, layout.properties, dst);
        } else {
            dst.put_u8(self.reason_code.to_v3_connack());
        }
    }
}
