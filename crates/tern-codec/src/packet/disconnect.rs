//! DISCONNECT: the last packet of a connection, from either side in MQTT 5.

use bytes::{BufMut, BytesMut};

use super::{Layout, WireForm, needed_tail_fields};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{
    DisconnectProperties, checked_body_len, read_properties, section_len, write_properties,
};
use crate::wire::Reader;
use crate::{PacketType, ProtocolVersion, ReasonCode};

/// A DISCONNECT packet. Before MQTT 5 it has no body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Why the connection ends; `NORMAL_DISCONNECTION` by default.
    pub reason_code: ReasonCode,
    /// MQTT 5 properties.
    pub properties: DisconnectProperties,
    /// Which optional fields were on the wire (MQTT 5).
    pub wire_form: WireForm,
}

impl Disconnect {
    /// A DISCONNECT with a reason code and no properties.
    pub fn new(reason_code: ReasonCode) -> Self {
        Self {
            reason_code,
            ..Self::default()
        }
    }

    pub(super) fn decode(
        reader: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let mut disconnect = Self::default();
        if version.is_v5() && !reader.is_empty() {
            let code = reader.u8()?;
            disconnect.wire_form = WireForm::WITH_REASON_CODE;
            disconnect.reason_code = ReasonCode::from_u8(code)
                .filter(|reason| reason.is_allowed_in(PacketType::Disconnect))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet: PacketType::Disconnect,
                    code,
                })?;
            if !reader.is_empty() {
                disconnect.properties = read_properties(reader, PacketType::Disconnect)?;
                disconnect.wire_form = WireForm::WITH_PROPERTIES;
            }
        }
        Ok(disconnect)
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        let mut layout = Layout::default();
        if version.is_v5() {
            if !self.reason_code.is_allowed_in(PacketType::Disconnect) {
                return Err(EncodeError::ReasonCodeNotAllowed {
                    packet: PacketType::Disconnect,
                    code: self.reason_code,
                });
            }
            layout = self.tail_layout()?;
        }
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

    pub(super) fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        if version.is_v5() && layout.remaining > 0 {
            dst.put_u8(self.reason_code as u8);
            if layout.remaining > 1 {
                write_properties(&self.properties, layout.properties, dst);
            }
        }
    }
}
