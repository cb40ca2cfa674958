//! CONNECT: the first packet of every connection, which also fixes the
//! protocol version of everything after it.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::Layout;
use crate::error::{DecodeError, EncodeError};
use crate::properties::{
    ConnectProperties, WillProperties, checked_body_len, read_properties, section_len,
    write_properties,
};
use crate::topic::validate_topic_name;
use crate::wire::{Reader, prefixed_len, put_prefixed, string_len};
use crate::{PacketType, ProtocolVersion, QoS};

const FLAG_CLEAN_START: u8 = 0b0000_0010;
const FLAG_WILL: u8 = 0b0000_0100;
const FLAG_WILL_RETAIN: u8 = 0b0010_0000;
const FLAG_PASSWORD: u8 = 0b0100_0000;
const FLAG_USERNAME: u8 = 0b1000_0000;

/// A CONNECT packet.
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version, from the protocol name and level.
    pub protocol: ProtocolVersion,
    /// Clean session (3.1, 3.1.1) or clean start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns it off.
    pub keep_alive: u16,
    /// MQTT 5 properties.
    pub properties: ConnectProperties,
    /// Client identifier; may be empty.
    pub client_id: ByteString,
    /// The last will, published if the connection ends abnormally.
    pub will: Option<LastWill>,
    /// User name.
    pub username: Option<ByteString>,
    /// Password (binary data in MQTT 5).
    pub password: Option<Bytes>,
}

/// The will message of a CONNECT.
#[derive(Clone, PartialEq, Eq)]
pub struct LastWill {
    /// QoS of the will message.
    pub qos: QoS,
    /// Publish the will as a retained message.
    pub retain: bool,
    /// MQTT 5 will properties.
    pub properties: WillProperties,
    /// Topic of the will message.
    pub topic: ByteString,
    /// Payload of the will message.
    pub payload: Bytes,
}

impl Connect {
    /// A CONNECT with clean start, no will and no credentials.
    pub fn new(
        protocol: ProtocolVersion,
        client_id: impl Into<ByteString>,
        keep_alive: u16,
    ) -> Self {
        Self {
            protocol,
            clean_start: true,
            keep_alive,
            properties: ConnectProperties::default(),
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
        }
    }

    pub(super) fn decode(reader: &mut Reader) -> Result<Self, DecodeError> {
        let name = reader.binary()?;
        let level = reader.u8()?;
        let protocol = match (&name[..], level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", other) => {
                return Err(DecodeError::UnsupportedProtocolLevel(other));
            }
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = reader.u8()?;
        if flags & 0b0000_0001 != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let has_will = flags & FLAG_WILL != 0;
        let will_qos = QoS::from_bits((flags >> 3) & 0b11)?;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::InvalidWillFlags);
        }
        let has_username = flags & FLAG_USERNAME != 0;
        let has_password = flags & FLAG_PASSWORD != 0;
        if has_password && !has_username && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername(protocol));
        }
        let keep_alive = reader.u16()?;
        let properties = if protocol.is_v5() {
            read_properties(reader, PacketType::Connect)?
        } else {
            ConnectProperties::default()
        };
        let client_id = reader.string()?;
        let will = if has_will {
            let properties = if protocol.is_v5() {
                read_properties(reader, PacketType::Connect)?
            } else {
                WillProperties::default()
            };
            let topic = reader.string()?;
            validate_topic_name(&topic).map_err(DecodeError::InvalidTopicName)?;
            let payload = reader.binary()?;
            Some(LastWill {
                qos: will_qos,
                retain: will_retain,
                properties,
                topic,
                payload,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(reader.string()?)
        } else {
            None
        };
        let password = if has_password {
            Some(reader.binary()?)
        } else {
            None
        };
        Ok(Self {
            protocol,
            clean_start: flags & FLAG_CLEAN_START != 0,
            keep_alive,
            properties,
            client_id,
            will,
            username,
            password,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= FLAG_CLEAN_START;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | will.qos.as_u8() << 3;
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        flags
    }

    pub(super) fn layout(&self) -> Result<Layout, EncodeError> {
        let v5 = self.protocol.is_v5();
        if self.password.is_some() && self.username.is_none() && !v5 {
            return Err(EncodeError::ValueOutOfRange(
                "password without a user name before MQTT 5",
            ));
        }
        let mut layout = Layout::default();
        let name_len = self.protocol.protocol_name().len();
        layout.remaining = 2 + name_len + 1 + 1 + 2 + string_len(&self.client_id, "client id")?;
        if v5 {
            layout.properties = checked_body_len(&self.properties)?;
            layout.remaining += section_len(layout.properties);
        }
        if let Some(will) = &self.will {
            validate_topic_name(&will.topic).map_err(|error| EncodeError::InvalidTopic {
                field: "will topic",
                error,
            })?;
            layout.remaining += prefixed_len(will.topic.len(), "will topic")?
                + prefixed_len(will.payload.len(), "will payload")?;
            if v5 {
                layout.will_properties = checked_body_len(&will.properties)?;
                layout.remaining += section_len(layout.will_properties);
            }
        }
        if let Some(username) = &self.username {
            layout.remaining += string_len(username, "user name")?;
        }
        if let Some(password) = &self.password {
            layout.remaining += prefixed_len(password.len(), "password")?;
        }
        Ok(layout)
    }

    pub(super) fn write_body(&self, layout: &Layout, dst: &mut BytesMut) {
        let v5 = self.protocol.is_v5();
        put_prefixed(dst, self.protocol.protocol_name().as_bytes());
        dst.put_u8(self.protocol.level());
        dst.put_u8(self.flags());
        dst.put_u16(self.keep_alive);
        if v5 {
            write_properties(&self.properties, layout.properties, dst);
        }
        put_prefixed(dst, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if v5 {
                write_properties(&will.properties, layout.will_properties, dst);
            }
            put_prefixed(dst, will.topic.as_bytes());
            put_prefixed(dst, &will.payload);
        }
        if let Some(username) = &self.username {
            put_prefixed(dst, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_prefixed(dst, password);
        }
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol", &self.protocol)
            .field("clean_start", &self.clean_start)
            .field("keep_alive", &self.keep_alive)
            .field("properties", &self.properties)
            .field("client_id", &self.client_id)
            .field("will", &self.will)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl fmt::Debug for LastWill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastWill")
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("properties", &self.properties)
            .field("topic", &self.topic)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}
