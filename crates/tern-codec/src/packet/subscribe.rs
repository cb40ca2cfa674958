//! SUBSCRIBE: a list of topic filters, each with its options.

use bytes::{BufMut, BytesMut};

use super::{Layout, read_packet_id};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{SubscribeProperties, read_properties_in};
use crate::topic::TopicFilter;
use crate::wire::{Reader, prefixed_len, put_prefixed};
use crate::{PacketId, PacketType, ProtocolVersion, SubscriptionOptions};

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Identifier echoed by the SUBACK.
    pub packet_id: PacketId,
    /// MQTT 5 properties, including the subscription identifier.
    pub properties: SubscribeProperties,
    /// At least one topic filter with its options, in the order sent.
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
}

impl Subscribe {
    pub(super) fn decode(
        reader: &mut Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(reader)?;
        let properties = read_properties_in(reader, PacketType::Subscribe, version)?;
        let mut filters = Vec::new();
        while !reader.is_empty() {
            let filter =
                TopicFilter::new(reader.string()?).map_err(DecodeError::InvalidTopicFilter)?;
            let options = SubscriptionOptions::from_byte(reader.u8()?, version)?;
            if options.no_local && filter.is_shared() {
                return Err(DecodeError::NoLocalOnSharedSubscription);
            }
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
        }
        Ok(Self {
            packet_id,
            properties,
            filters,
        })
    }

    pub(super) fn layout(&self, version: ProtocolVersion) -> Result<Layout, EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters(PacketType::Subscribe));
        }
        let mut layout = Layout {
            remaining: 2,
            ..Layout::default()
        };
        for (filter, options) in &self.filters {
            if options.no_local && filter.is_shared() && version.is_v5() {
                return Err(EncodeError::NoLocalOnSharedSubscription);
            }
            layout.remaining += prefixed_len(filter.as_str().len(), "topic filter")? + 1;
        }
        layout.add_properties(&self.properties, version)?;
        Ok(layout)
    }

    pub(super) fn write_body(&self, version: ProtocolVersion, layout: &Layout, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        layout.write_properties(&self.properties, version, dst);
        for (filter, options) in &self.filters {
            put_prefixed(dst, filter.as_str().as_bytes());
            dst.put_u8(options.to_byte(version));
        }
    }
}
