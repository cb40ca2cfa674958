//! AUTH: a step of MQTT 5 enhanced authentication.

use bytes::BytesMut;

use super::Layout;
use super::tail::{WireForm, read_tail, tail_layout, write_tail};
use crate::error::{DecodeError, EncodeError};
use crate::properties::AuthProperties;
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
        let tail = read_tail(reader, PacketType::Auth)?;
        Ok(Self {
            reason_code: tail.reason_code,
            properties: tail.properties,
            wire_form: tail.wire_form,
        })
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::NotInVersion {
                packet: PacketType::Auth,
                version,
            });
        }
        tail_layout(
            PacketType::Auth,
            self.reason_code,
            &self.properties,
            self.properties.is_empty(),
            self.wire_form,
        )
    }

    pub(super) fn write_body(&self, layout: &Layout, dst: &mut BytesMut) {
        write_tail(self.reason_code, &self.properties, layout, dst);
    }
}
