//! An application message held by the broker on behalf of a client, with
//! its absolute MQTT 5 expiry time.

use tern_codec::{PacketId, Publish, QoS};

use crate::Timestamp;

/// A message waiting in a session's queue, in flight to a client, retained,
/// or held as a will.
///
/// The PUBLISH is kept normalised: no packet identifier, no DUP flag, no
/// topic alias and no Message Expiry Interval property. The expiry is held
/// instead as an absolute time, so the interval left can be computed at
/// delivery ([`Message::to_publish`]) however long the message waited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    publish: Publish,
    expires_at: Option<Timestamp>,
}

impl Message {
    /// A message received at `now`: its Message Expiry Interval, if any,
    /// becomes an absolute expiry time. `publish.qos` is the QoS this
    /// message is delivered with.
    pub fn new(publish: Publish, now: Timestamp) -> Self {
        let expires_at = publish
            .properties()
            .message_expiry_interval
            .map(|seconds| now.saturating_add_secs(seconds));
        Self::with_expiry(publish, expires_at)
    }

    /// A message with an absolute expiry time (`None`: never expires).
    /// Packet identifier, DUP, topic alias and Message Expiry Interval of
    /// `publish` are cleared.
    pub fn with_expiry(mut publish: Publish, expires_at: Option<Timestamp>) -> Self {
        publish.packet_id = None;
        publish.dup = false;
        let properties = publish.properties();
        if properties.topic_alias.is_some() || properties.message_expiry_interval.is_some() {
            let properties = publish.properties_mut();
            properties.topic_alias = None;
            properties.message_expiry_interval = None;
        }
        Self {
            publish,
            expires_at,
        }
    }

    /// The normalised PUBLISH (no packet id, no expiry interval).
    pub fn publish(&self) -> &Publish {
        &self.publish
    }

    /// The topic the message was published to.
    pub fn topic(&self) -> &str {
        &self.publish.topic
    }

    /// The QoS this message is delivered with.
    pub fn qos(&self) -> QoS {
        self.publish.qos
    }

    /// When the message expires; `None` if it never does.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }

    /// True once the expiry time has been reached.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Seconds of life left at `now`, rounded up so that a live message
    /// never announces 0; `None` if the message never expires, `Some(0)`
    /// once expired.
    pub fn remaining_expiry(&self, now: Timestamp) -> Option<u32> {
        let at = self.expires_at?;
        let millis = at.as_millis().saturating_sub(now.as_millis());
        Some(u32::try_from(millis.div_ceil(1000)).unwrap_or(u32::MAX))
    }

    /// The PUBLISH to send at `now`: with `packet_id` (required for QoS 1
    /// and 2), the DUP flag for a redelivery, and the expiry interval left.
    pub fn to_publish(&self, now: Timestamp, packet_id: Option<PacketId>, dup: bool) -> Publish {
        let mut publish = self.publish.clone();
        publish.packet_id = packet_id;
        publish.dup = dup && publish.qos != QoS::AtMostOnce;
        if let Some(remaining) = self.remaining_expiry(now) {
            publish.properties_mut().message_expiry_interval = Some(remaining);
        }
        publish
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish_with_expiry(seconds: Option<u32>) -> Publish {
        let mut publish = Publish::new("a/b", "payload");
        publish.qos = QoS::AtLeastOnce;
        publish.packet_id = PacketId::new(9);
        publish.dup = true;
        publish.properties_mut().message_expiry_interval = seconds;
        publish
    }

    #[test]
    fn expiry_interval_becomes_an_absolute_time() {
        let message = Message::new(publish_with_expiry(Some(10)), Timestamp::from_millis(5_000));
        assert_eq!(message.expires_at(), Some(Timestamp::from_millis(15_000)));
        assert_eq!(message.publish().properties().message_expiry_interval, None);
        assert_eq!(message.publish().packet_id, None);
        assert!(!message.publish().dup);
    }

    #[test]
    fn remaining_interval_is_rounded_up_and_reaches_zero_at_expiry() {
        let message = Message::new(publish_with_expiry(Some(10)), Timestamp::from_millis(0));
        assert_eq!(
            message.remaining_expiry(Timestamp::from_millis(0)),
            Some(10)
        );
        assert_eq!(
            message.remaining_expiry(Timestamp::from_millis(8_500)),
            Some(2)
        );
        assert_eq!(
            message.remaining_expiry(Timestamp::from_millis(9_999)),
            Some(1)
        );
        assert!(!message.is_expired(Timestamp::from_millis(9_999)));
        assert!(message.is_expired(Timestamp::from_millis(10_000)));
        assert_eq!(
            message.remaining_expiry(Timestamp::from_millis(20_000)),
            Some(0)
        );
    }

    #[test]
    fn messages_without_expiry_never_expire() {
        let message = Message::new(publish_with_expiry(None), Timestamp::from_millis(0));
        assert!(!message.is_expired(Timestamp::from_millis(u64::MAX)));
        assert_eq!(message.remaining_expiry(Timestamp::from_millis(1)), None);
    }

    #[test]
    fn to_publish_sets_packet_id_dup_and_remaining_interval() {
        let message = Message::new(publish_with_expiry(Some(60)), Timestamp::from_millis(0));
        let publish = message.to_publish(Timestamp::from_millis(30_000), PacketId::new(3), true);
        assert_eq!(publish.packet_id, PacketId::new(3));
        assert!(publish.dup);
        assert_eq!(publish.properties().message_expiry_interval, Some(30));
    }
}
