//! Messages from the server: topic aliases (MQTT 5), and the QoS 2 packet
//! identifiers answered with PUBREC and not yet released, which make a
//! redelivered QoS 2 message a duplicate rather than a second message.
//!
//! The client delivers a QoS 2 message when its PUBLISH arrives (method B
//! of the specification) and remembers the identifier until PUBREL, so a
//! PUBREL for an identifier it does not know releases a message delivered
//! on an earlier connection: it is completed all the same.

use std::collections::{HashMap, HashSet};

use bytestring::ByteString;
use tern_codec::{PacketId, Publish};

use crate::ProtocolError;

/// The receiving half of the session.
#[derive(Debug)]
pub(super) struct Incoming {
    /// QoS 2 messages delivered and acknowledged with PUBREC, waiting for PUBREL.
    unreleased: HashSet<PacketId>,
    /// How many of those the server may have at once (MQTT 5).
    receive_maximum: Option<u16>,
    /// Topic alias → topic name, as set by the server on this connection.
    aliases: HashMap<u16, ByteString>,
    /// The highest alias this client announced.
    alias_maximum: u16,
}

impl Incoming {
    pub(super) fn new(receive_maximum: Option<u16>, alias_maximum: u16) -> Self {
        Self {
            unreleased: HashSet::new(),
            receive_maximum,
            aliases: HashMap::new(),
            alias_maximum,
        }
    }

    /// Replaces an alias with its topic, or records the alias of a message
    /// that carries both, and removes the alias property.
    pub(super) fn resolve_topic_alias(
        &mut self,
        publish: &mut Publish,
    ) -> Result<(), ProtocolError> {
        let Some(alias) = publish.properties().topic_alias else {
            return Ok(());
        };
        if alias == 0 || alias > self.alias_maximum {
            return Err(ProtocolError::TopicAliasOutOfRange {
                alias,
                maximum: self.alias_maximum,
            });
        }
        if publish.topic.is_empty() {
            publish.topic = self
                .aliases
                .get(&alias)
                .cloned()
                .ok_or(ProtocolError::UnknownTopicAlias(alias))?;
        } else {
            self.aliases.insert(alias, publish.topic.clone());
        }
        let mut properties = publish.take_properties();
        properties.topic_alias = None;
        publish.set_properties(properties);
        Ok(())
    }

    /// Records a QoS 2 PUBLISH; true if it is new, false if it repeats one
    /// not yet released (do not deliver it again, but answer PUBREC again).
    pub(super) fn receive_qos2(&mut self, packet_id: PacketId) -> Result<bool, ProtocolError> {
        if self.unreleased.contains(&packet_id) {
            return Ok(false);
        }
        if let Some(maximum) = self.receive_maximum
            && self.unreleased.len() >= usize::from(maximum)
        {
            return Err(ProtocolError::ReceiveMaximumExceeded(maximum));
        }
        self.unreleased.insert(packet_id);
        Ok(true)
    }

    /// Forgets a released QoS 2 identifier.
    pub(super) fn release(&mut self, packet_id: PacketId) {
        self.unreleased.remove(&packet_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_is_set_by_a_topic_and_used_by_an_empty_one() {
        let mut incoming = Incoming::new(None, 4);
        let mut first = Publish::new("a/b", "1");
        first.properties_mut().topic_alias = Some(2);
        incoming.resolve_topic_alias(&mut first).unwrap();
        assert!(first.properties().is_empty());
        let mut second = Publish::new("", "2");
        second.properties_mut().topic_alias = Some(2);
        second.properties_mut().content_type = Some("text/plain".into());
        incoming.resolve_topic_alias(&mut second).unwrap();
        assert_eq!(second.topic, "a/b");
        assert_eq!(second.properties().topic_alias, None);
        assert_eq!(
            second.properties().content_type.as_deref(),
            Some("text/plain")
        );
    }

    #[test]
    fn aliases_out_of_range_or_unknown_are_refused() {
        let mut incoming = Incoming::new(None, 4);
        let mut publish = Publish::new("", "x");
        publish.properties_mut().topic_alias = Some(5);
        assert_eq!(
            incoming.resolve_topic_alias(&mut publish),
            Err(ProtocolError::TopicAliasOutOfRange {
                alias: 5,
                maximum: 4
            })
        );
        publish.properties_mut().topic_alias = Some(3);
        assert_eq!(
            incoming.resolve_topic_alias(&mut publish),
            Err(ProtocolError::UnknownTopicAlias(3))
        );
    }

    #[test]
    fn qos2_identifiers_are_bounded_by_the_receive_maximum() {
        let mut incoming = Incoming::new(Some(1), 0);
        let one = PacketId::new(1).unwrap();
        let two = PacketId::new(2).unwrap();
        assert_eq!(incoming.receive_qos2(one), Ok(true));
        assert_eq!(incoming.receive_qos2(one), Ok(false));
        assert_eq!(
            incoming.receive_qos2(two),
            Err(ProtocolError::ReceiveMaximumExceeded(1))
        );
        incoming.release(one);
        assert_eq!(incoming.receive_qos2(two), Ok(true));
    }
}
