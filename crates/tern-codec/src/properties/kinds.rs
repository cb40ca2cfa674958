//! The wire kinds of property values: how each is read, measured and
//! written, and which values are out of range.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::PropertyId;
use crate::QoS;
use crate::error::{DecodeError, EncodeError};
use crate::topic::validate_topic_name;
use crate::wire::{
    MAX_VARIABLE_INTEGER, Reader, prefixed_len, put_prefixed, put_variable_integer, string_len,
    variable_integer_len,
};

/// How one property value is read, measured and written.
pub(crate) trait Kind {
    type Value;
    fn read(reader: &mut Reader, id: PropertyId) -> Result<Self::Value, DecodeError>;
    fn len(value: &Self::Value, id: PropertyId) -> Result<usize, EncodeError>;
    fn write(value: &Self::Value, dst: &mut BytesMut);
}

/// A byte that must be 0 or 1.
pub(crate) struct Flag;
/// Any two-byte integer.
pub(crate) struct U16;
/// A two-byte integer other than zero.
pub(crate) struct NonZeroU16;
/// Any four-byte integer.
pub(crate) struct U32;
/// A four-byte integer other than zero.
pub(crate) struct NonZeroU32;
/// A subscription identifier: a variable byte integer from 1 to 268,435,455.
pub(crate) struct SubscriptionId;
/// A UTF-8 string.
pub(crate) struct Utf8;
/// A UTF-8 string that must be a valid topic name (no wildcards).
pub(crate) struct Topic;
/// Binary data.
pub(crate) struct Binary;
/// Maximum QoS: 0 or 1 (absence means 2).
pub(crate) struct MaxQos;
/// A user property: two UTF-8 strings.
pub(crate) struct Pair;

impl Kind for Flag {
    type Value = bool;
    fn read(reader: &mut Reader, id: PropertyId) -> Result<bool, DecodeError> {
        match reader.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }
    fn len(_: &bool, _: PropertyId) -> Result<usize, EncodeError> {
        Ok(1)
    }
    fn write(value: &bool, dst: &mut BytesMut) {
        dst.put_u8(u8::from(*value));
    }
}

impl Kind for U16 {
    type Value = u16;
    fn read(reader: &mut Reader, _: PropertyId) -> Result<u16, DecodeError> {
        reader.u16()
    }
    fn len(_: &u16, _: PropertyId) -> Result<usize, EncodeError> {
        Ok(2)
    }
    fn write(value: &u16, dst: &mut BytesMut) {
        dst.put_u16(*value);
    }
}

impl Kind for NonZeroU16 {
    type Value = u16;
    fn read(reader: &mut Reader, id: PropertyId) -> Result<u16, DecodeError> {
        match reader.u16()? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            value => Ok(value),
        }
    }
    fn len(value: &u16, id: PropertyId) -> Result<usize, EncodeError> {
        match value {
            0 => Err(EncodeError::ValueOutOfRange(id.name())),
            _ => Ok(2),
        }
    }
    fn write(value: &u16, dst: &mut BytesMut) {
        dst.put_u16(*value);
    }
}

impl Kind for U32 {
    type Value = u32;
    fn read(reader: &mut Reader, _: PropertyId) -> Result<u32, DecodeError> {
        reader.u32()
    }
    fn len(_: &u32, _: PropertyId) -> Result<usize, EncodeError> {
        Ok(4)
    }
    fn write(value: &u32, dst: &mut BytesMut) {
        dst.put_u32(*value);
    }
}

impl Kind for NonZeroU32 {
    type Value = u32;
    fn read(reader: &mut Reader, id: PropertyId) -> Result<u32, DecodeError> {
        match reader.u32()? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            value => Ok(value),
        }
    }
    fn len(value: &u32, id: PropertyId) -> Result<usize, EncodeError> {
        match value {
            0 => Err(EncodeError::ValueOutOfRange(id.name())),
            _ => Ok(4),
        }
    }
    fn write(value: &u32, dst: &mut BytesMut) {
        dst.put_u32(*value);
    }
}

impl Kind for SubscriptionId {
    type Value = u32;
    fn read(reader: &mut Reader, id: PropertyId) -> Result<u32, DecodeError> {
        match reader.variable_integer()? {
            0 => Err(DecodeError::InvalidPropertyValue(id)),
            value => Ok(value),
        }
    }
    fn len(value: &u32, id: PropertyId) -> Result<usize, EncodeError> {
        match value {
            1..=MAX_VARIABLE_INTEGER => Ok(variable_integer_len(*value)),
            _ => Err(EncodeError::ValueOutOfRange(id.name())),
        }
    }
    fn write(value: &u32, dst: &mut BytesMut) {
        put_variable_integer(dst, *value);
    }
}

impl Kind for Utf8 {
    type Value = ByteString;
    fn read(reader: &mut Reader, _: PropertyId) -> Result<ByteString, DecodeError> {
        reader.string()
    }
    fn len(value: &ByteString, id: PropertyId) -> Result<usize, EncodeError> {
        string_len(value, id.name())
    }
    fn write(value: &ByteString, dst: &mut BytesMut) {
        put_prefixed(dst, value.as_bytes());
    }
}

impl Kind for Topic {
    type Value = ByteString;
    fn read(reader: &mut Reader, id: PropertyId) -> Result<ByteString, DecodeError> {
        let topic = reader.string()?;
        validate_topic_name(&topic).map_err(|_| DecodeError::InvalidPropertyValue(id))?;
        Ok(topic)
    }
    fn len(value: &ByteString, id: PropertyId) -> Result<usize, EncodeError> {
        validate_topic_name(value).map_err(|error| EncodeError::InvalidTopic {
            field: id.name(),
            error,
        })?;
        prefixed_len(value.len(), id.name())
    }
    fn write(value: &ByteString, dst: &mut BytesMut) {
        put_prefixed(dst, value.as_bytes());
    }
}

impl Kind for Binary {
    type Value = Bytes;
    fn read(reader: &mut Reader, _: PropertyId) -> Result<Bytes, DecodeError> {
        reader.binary()
    }
    fn len(value: &Bytes, id: PropertyId) -> Result<usize, EncodeError> {
        prefixed_len(value.len(), id.name())
    }
    fn write(value: &Bytes, dst: &mut BytesMut) {
        put_prefixed(dst, value);
    }
}

impl Kind for MaxQos {
    type Value = QoS;
    fn read(reader: &mut Reader, id: PropertyId) -> Result<QoS, DecodeError> {
        match reader.u8()? {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            _ => Err(DecodeError::InvalidPropertyValue(id)),
        }
    }
    fn len(value: &QoS, id: PropertyId) -> Result<usize, EncodeError> {
        match value {
            QoS::ExactlyOnce => Err(EncodeError::ValueOutOfRange(id.name())),
            _ => Ok(1),
        }
    }
    fn write(value: &QoS, dst: &mut BytesMut) {
        dst.put_u8(value.as_u8());
    }
}

impl Kind for Pair {
    type Value = (ByteString, ByteString);
    fn read(reader: &mut Reader, _: PropertyId) -> Result<Self::Value, DecodeError> {
        Ok((reader.string()?, reader.string()?))
    }
    fn len((name, value): &Self::Value, _: PropertyId) -> Result<usize, EncodeError> {
        Ok(string_len(name, "user property name")? + string_len(value, "user property value")?)
    }
    fn write((name, value): &Self::Value, dst: &mut BytesMut) {
        put_prefixed(dst, name.as_bytes());
        put_prefixed(dst, value.as_bytes());
    }
}
