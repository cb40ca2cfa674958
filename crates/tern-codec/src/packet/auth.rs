//! AUTH: a step of MQTT 5 enhanced authentication.

use bytes::{BufMut, BytesMut};

use super::Layout;
use crate::error::{DecodeError, EncodeError};
use crate::properties::{
    AuthProperties, checked_body_len, read_properties, section_len, write_properties,
};
use crate::wire::Reader;
use crate::{PacketType, ProtocolVersion, ReasonCode};

/// An AUTH packet (MQTT 5 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// `Success`, `ContinueAuthentication` or `ReAuthenticate`.
    pub reason_code: ReasonCode,
    /// Method, data and reason of this step.
    pub properties: AuthProperties,
}

impl Auth {
    pub(super) fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let mut auth = Self::default();
        if !reader.is_empty() {
            let code = reader.u8()?;
            auth.reason_code = ReasonCode::from_u8(code)
                .filter(|reason| reason.is_allowed_in(PacketType::Auth))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::Auth,
                    code,
                })?;
            if !reader.is_empty() {
                auth.properties = read_properties(reader, PacketType::Auth)?;
            }
        }
        Ok(auth)
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::NotInVersion {
                packet: PacketType::Auth,
                version,
            });
        }
        if !self.reason_code.is_allowed_in(PacketType::Auth) {
            return Err(EncodeError::ReasonCodeNotAllowed {
                packet: PacketType::Auth,
                code: self.reason_code,
            });
        }
        let mut layout = Layout::default();
        if !self.properties.is_empty() {
            layout.properties = checked_body_len(&self.properties)?;
            layout.remaining = 1 + section_len(layout.properties);
        } else if self.reason_code != ReasonCode::Success {
            layout.remaining = 1;
        }
        Ok(layout)
    }

    pub(super) fn write_body(&self, layout: &Layout, dst: &mut BytesMut) {
        if layout.remaining > 0 {
            dst.put_u8(self.reason_code as u8);
            if layout.remaining > 1 {
                write_properties(&self.properties, layout.properties, dst);
            }
        }
    }
}
