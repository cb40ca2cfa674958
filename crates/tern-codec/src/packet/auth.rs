//! AUTH: a step of MQTT 5 enhanced authentication.

use bytes::{BufMut, BytesMut};

use super::{Layout, WireForm, needed_tail_fields};
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
    /// Which optional fields were on the wire (MQTT 5).
    pub wire_form: WireForm,
}

impl Auth {
    pub(super) fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let mut auth = Self::default();
        if !reader.is_empty() {
            let code = reader.u8()?;
            auth.wire_form = WireForm::WITH_REASON_CODE;
            auth.reason_code = ReasonCode::from_u8(code)
                .filter(|reason| reason.is_allowed_in(PacketType::Auth))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::Auth,
                    code,
                })?;
            if !reader.is_empty() {
                auth.properties = read_properties(reader, PacketType::Auth)?;
                auth.wire_form = WireForm::WITH_PROPERTIES;
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
        let layout = self.tail_layout()?;
        Ok(layout)
    }

    /// The optional reason code and properties, in the form they need.
    fn tail_layout(&self) -> Result<Layout, EncodeError> {
        let mut layout = Layout::default();
        let needed = needed_tail_fields(
            self.reason_code == ReasonCode::Success,
            self.properties.is_empty(),
        );
        let fields = self.wire_form.fields(needed);
        if fields >= 1 {
            layout.remaining = 1;
        }
        if fields >= 2 {
            layout.properties = checked_body_len(&self.properties)?;
            layout.remaining += section_len(layout.properties);
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
