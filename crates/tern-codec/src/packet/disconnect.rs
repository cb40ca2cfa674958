//! DISCONNECT: the last packet of a connection, from either side in MQTT 5.

use bytes::BytesMut;

use super::Layout;
use super::tail::{WireForm, read_tail, tail_layout, write_tail};
use crate::error::{DecodeError, EncodeError};
use crate::properties::DisconnectProperties;
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
        if !version.is_v5() {
            return Ok(Self::default());
        }
        let tail = read_tail(reader, PacketType::Disconnect)?;
        Ok(Self {
            reason_code: tail.reason_code,
            properties: tail.properties,
            wire_form: tail.wire_form,
        })
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        if !version.is_v5() {
            return Ok(Layout::default());
        }
        tail_layout(
            PacketType::Disconnect,
            self.reason_code,
            &self.properties,
            self.properties.is_empty(),
            self.wire_form,
        )
    }

    pub(super) fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        if version.is_v5() {
            write_tail(self.reason_code, &self.properties, layout, dst);
        }
    }
}
