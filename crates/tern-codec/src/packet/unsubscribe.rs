//! UNSUBSCRIBE: a list of topic filters to remove.

use bytes::{BufMut, BytesMut};

use super::{Layout, read_packet_id};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{UnsubscribeProperties, read_properties_in};
use crate::topic::TopicFilter;
use crate::wire::{Reader, prefixed_len, put_prefixed};
use crate::{PacketId, PacketType, ProtocolVersion};

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Identifier echoed by the UNSUBACK.
    pub packet_id: PacketId,
    /// MQTT 5 properties.
    pub properties: UnsubscribeProperties,
    /// At least one topic filter, in the order sent.
    pub filters: Vec<TopicFilter>,
}

impl Unsubscribe {
    pub(super) fn decode(
        reader: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(reader)?;
        let properties = read_properties_in(reader, PacketType::Unsubscribe, version)?;
        let mut filters = Vec::new();
        while !reader.is_empty() {
            filters
                .push(TopicFilter::new(reader.string()?).map_err(DecodeError::InvalidTopicFilter)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        let mut layout = Layout {
            remaining: 2,
            ..Layout::default()
        };
        for filter in &self.filters {
            layout.remaining += prefixed_len(filter.as_str().len(), "topic filter")?;
        }
        layout.add_properties(&self.properties, version)?;
        Ok(layout)
    }

    pub(super) fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        layout.write_properties(&self.properties, version, dst);
        for filter in &self.filters {
            put_prefixed(dst, filter.as_str().as_bytes());
        }
    }
}
