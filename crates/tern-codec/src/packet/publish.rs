//! PUBLISH: an application message on its way to or from the broker.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::{Layout, read_packet_id};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{
    PublishProperties, checked_body_len, read_boxed_properties, section_len, write_properties,
};
use crate::topic::{TopicError, validate_topic_name};
use crate::wire::{Reader, prefixed_len, put_prefixed};
use crate::{PacketId, PacketType, ProtocolVersion, QoS};

/// A PUBLISH packet. `packet_id` is present exactly when `qos` is above 0;
/// the decoder guarantees it and the encoder checks it.
///
/// Unlike other packets, PUBLISH keeps its properties behind a pointer that
/// is only allocated when there are any: a broker holds many messages in
/// queues, and most carry no properties. Read them with
/// [`Publish::properties`] and change them with [`Publish::properties_mut`].
#[derive(Clone)]
pub struct Publish {
    /// This is a redelivery of an earlier attempt.
    pub dup: bool,
    /// Quality of service of this delivery.
    pub qos: QoS,
    /// The message is (to be) retained.
    pub retain: bool,
    /// The topic name. Empty only in MQTT 5 when a topic alias stands for it.
    pub topic: ByteString,
    /// Packet identifier, for QoS 1 and 2.
    pub packet_id: Option<PacketId>,
    /// MQTT 5 properties, `None` when there are none; ignored when encoding
    /// for older versions.
    properties: Option<Box<PublishProperties>>,
    /// The application payload, shared with the receive buffer.
    pub payload: Bytes,
}

impl Publish {
    /// A QoS 0 message with no properties.
    pub fn new(topic: impl Into<ByteString>, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.into(),
            packet_id: None,
            properties: None,
            payload: payload.into(),
        }
    }

    pub(super) fn decode(
        reader: &mut Reader,
        flags: u8,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        // The fixed header parser has already rejected QoS 3 and DUP on QoS 0.
        let qos = QoS::from_bits((flags >> 1) & 0b11)?;
        let topic = reader.topic_name()?;
        if topic.is_empty() && !version.is_v5() {
            return Err(DecodeError::InvalidTopicName(TopicError::Empty));
        }
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(read_packet_id(reader)?),
        };
        let properties = if version.is_v5() {
            read_boxed_properties::<PublishProperties>(reader, PacketType::Publish)?
        } else {
            None
        };
        if topic.is_empty() && properties.as_ref().is_none_or(|p| p.topic_alias.is_none()) {
            return Err(DecodeError::EmptyTopicWithoutAlias);
        }
        Ok(Self {
            dup: flags & 0b1000 != 0,
            qos,
            retain: flags & 0b0001 != 0,
            topic,
            packet_id,
            properties,
            payload: reader.take_rest(),
        })
    }

    pub(super) fn first_byte(&self) -> u8 {
        (PacketType::Publish as u8) << 4
            | u8::from(self.dup) << 3
            | self.qos.as_u8() << 1
            | u8::from(self.retain)
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        if self.packet_id.is_some() != (self.qos != QoS::AtMostOnce) {
            return Err(EncodeError::PacketIdMismatch);
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::DupWithQos0);
        }
        let alias_only =
            self.topic.is_empty() && version.is_v5() && self.properties().topic_alias.is_some();
        if !alias_only {
            validate_topic_name(&self.topic).map_err(|error| EncodeError::InvalidTopic {
                field: "topic name",
                error,
            })?;
        }
        let mut layout = Layout {
            remaining: prefixed_len(self.topic.len(), "topic name")? + self.payload.len(),
            ..Layout::default()
        };
        if self.packet_id.is_some() {
            layout.remaining += 2;
        }
        if version.is_v5() {
            // Most messages have no properties: skip the property walk.
            layout.properties = match &self.properties {
                None => 0,
                Some(properties) => checked_body_len(&**properties)?,
            };
            layout.remaining += section_len(layout.properties);
        }
        Ok(layout)
    }

    pub(super) fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        put_prefixed(dst, self.topic.as_bytes());
        if let Some(packet_id) = self.packet_id {
            dst.put_u16(packet_id.get());
        }
        if version.is_v5() {
            match &self.properties {
                None => dst.put_u8(0),
                Some(properties) => write_properties(&**properties, layout.properties, dst),
            }
        }
        dst.put_slice(&self.payload);
    }

    /// The MQTT 5 properties (an empty set when there are none).
    pub fn properties(&self) -> &PublishProperties {
        static NONE: PublishProperties = PublishProperties::EMPTY;
        self.properties.as_deref().unwrap_or(&NONE)
    }

    /// The MQTT 5 properties, for changing them.
    pub fn properties_mut(&mut self) -> &mut PublishProperties {
        self.properties.get_or_insert_with(Box::default)
    }

    /// Replaces the MQTT 5 properties.
    pub fn set_properties(&mut self, properties: PublishProperties) {
        self.properties = if properties.is_empty() {
            None
        } else {
            Some(Box::new(properties))
        };
    }

    /// Removes and returns the MQTT 5 properties.
    pub fn take_properties(&mut self) -> PublishProperties {
        self.properties
            .take()
            .map(|boxed| *boxed)
            .unwrap_or_default()
    }

    /// Checks the topic as a topic name (non-empty, no wildcards).
    pub fn validate_topic(&self) -> Result<(), TopicError> {
        validate_topic_name(&self.topic)
    }
}

impl PartialEq for Publish {
    fn eq(&self, other: &Self) -> bool {
        // No properties and an empty allocated set are the same value.
        self.dup == other.dup
            && self.qos == other.qos
            && self.retain == other.retain
            && self.topic == other.topic
            && self.packet_id == other.packet_id
            && self.properties() == other.properties()
            && self.payload == other.payload
    }
}

impl Eq for Publish {}

impl fmt::Debug for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Payloads are application data: never print them.
        f.debug_struct("Publish")
            .field("dup", &self.dup)
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .field("topic", &self.topic)
            .field("packet_id", &self.packet_id)
            .field("properties", self.properties())
            .field("payload_len", &self.payload.len())
            .finish()
    }
}
