//! The optional tail of MQTT 5 PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT
//! and AUTH: a reason code, then properties. A sender may leave out a
//! success reason code and an empty property section; these functions read,
//! measure and write the tail once for all six packets.

use std::fmt;

use bytes::{BufMut, BytesMut};

use super::Layout;
use crate::error::{DecodeError, EncodeError};
use crate::properties::{
    PropertySet, checked_body_len, read_properties, section_len, write_properties,
};
use crate::wire::Reader;
use crate::{PacketType, ReasonCode};

/// Which optional trailing fields of an MQTT 5 PUBACK, PUBREC, PUBREL,
/// PUBCOMP, DISCONNECT or AUTH were on the wire.
///
/// MQTT 5 lets a sender omit a success reason code and an empty property
/// section, and clients differ: Mosquitto omits them, paho writes the reason
/// code. The decoder records the form that arrived so the packet re-encodes
/// to the same bytes; the encoder never writes less than the value needs.
/// The form is not part of a value's identity: it compares equal always.
#[derive(Clone, Copy, Default)]
pub struct WireForm(u8);

impl WireForm {
    /// Only what the value needs (the default for new values).
    pub const SHORTEST: Self = Self(0);
    /// The reason code is written even when it is success.
    pub const WITH_REASON_CODE: Self = Self(1);
    /// The reason code and the property length are written even when empty.
    pub const WITH_PROPERTIES: Self = Self(2);

    /// The number of optional fields to write: at least `needed` (0, 1 or 2).
    fn fields(self, needed: u8) -> u8 {
        self.0.max(needed)
    }
}

impl PartialEq for WireForm {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for WireForm {}

impl fmt::Debug for WireForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            0 => "shortest",
            1 => "with reason code",
            _ => "with properties",
        })
    }
}

/// A decoded tail: its reason code, its properties and the form it had.
pub(crate) struct Tail<P> {
    pub reason_code: ReasonCode,
    pub properties: P,
    pub wire_form: WireForm,
}

/// Reads whatever tail remains in `reader` (possibly none) for `packet`.
pub(crate) fn read_tail<P: PropertySet>(
    reader: &mut Reader,
    packet: PacketType,
) -> Result<Tail<P>, DecodeError> {
    let mut tail = Tail {
        reason_code: ReasonCode::Success,
        properties: P::default(),
        wire_form: WireForm::SHORTEST,
    };
    if reader.is_empty() {
        return Ok(tail);
    }
    let code = reader.u8()?;
    tail.reason_code = ReasonCode::from_u8(code)
        .filter(|reason| reason.is_allowed_in(packet))
        .ok_or(DecodeError::InvalidReasonCode { packet, code })?;
    tail.wire_form = WireForm::WITH_REASON_CODE;
    if !reader.is_empty() {
        tail.properties = read_properties(reader, packet)?;
        tail.wire_form = WireForm::WITH_PROPERTIES;
    }
    Ok(tail)
}

/// The length of the tail, checked: `remaining` holds the tail's bytes and
/// `properties` the body length of its property section.
pub(crate) fn tail_layout<P: PropertySet>(
    packet: PacketType,
    reason_code: ReasonCode,
    properties: &P,
    properties_empty: bool,
    wire_form: WireForm,
) -> Result<Layout, EncodeError> {
    if !reason_code.is_allowed_in(packet) {
        return Err(EncodeError::ReasonCodeNotAllowed {
            packet,
            code: reason_code,
        });
    }
    let needed = if !properties_empty {
        2
    } else if reason_code != ReasonCode::Success {
        1
    } else {
        0
    };
    let mut layout = Layout::default();
    let fields = wire_form.fields(needed);
    if fields >= 1 {
        layout.remaining = 1;
    }
    if fields >= 2 {
        layout.properties = checked_body_len(properties)?;
        layout.remaining += section_len(layout.properties);
    }
    Ok(layout)
}

/// Writes a tail measured by [`tail_layout`].
pub(crate) fn write_tail<P: PropertySet>(
    reason_code: ReasonCode,
    properties: &P,
    tail: &Layout,
    dst: &mut BytesMut,
) {
    if tail.remaining >= 1 {
        dst.put_u8(reason_code as u8);
    }
    if tail.remaining >= 2 {
        write_properties(properties, tail.properties, dst);
    }
}
