//! What a client asks for when it connects: [`ConnectOptions`].

use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;
use tern_codec::{Connect, ConnectProperties, LastWill, MAX_PACKET_SIZE, ProtocolVersion};

/// Topic aliases the client accepts from an MQTT 5 server unless told
/// otherwise: enough for a subscriber with a handful of busy topics.
pub const DEFAULT_TOPIC_ALIAS_MAXIMUM: u16 = 32;

/// Everything the CONNECT packet carries, plus the client's own timeouts.
///
/// Fields are public: build with [`ConnectOptions::new`] and change what
/// differs. The MQTT 5 `properties` are dropped when connecting with an
/// older version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Protocol version to speak.
    pub protocol: ProtocolVersion,
    /// Client identifier; may be empty with a clean start (the server
    /// assigns one), except in MQTT 3.1.
    pub client_id: ByteString,
    /// Clean session (3.1, 3.1.1) or clean start (5.0).
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns keep-alive pings off. An MQTT 5
    /// server may override it in CONNACK.
    pub keep_alive: u16,
    /// User name.
    pub username: Option<ByteString>,
    /// Password.
    pub password: Option<Bytes>,
    /// The will message the server publishes if the connection ends
    /// without a DISCONNECT.
    pub will: Option<LastWill>,
    /// MQTT 5 CONNECT properties. `receive_maximum`, `topic_alias_maximum`
    /// and `maximum_packet_size` are also the limits the session enforces
    /// on what the server sends.
    pub properties: ConnectProperties,
    /// How long to wait for CONNACK after sending CONNECT.
    pub connect_timeout: Duration,
    /// How long to wait for PINGRESP after a PINGREQ; `None` waits one
    /// keep-alive interval.
    pub ping_timeout: Option<Duration>,
}

impl ConnectOptions {
    /// Options with a clean start, a 60 second keep alive, no credentials,
    /// no will, a 10 second connect timeout, and (for MQTT 5) up to
    /// [`DEFAULT_TOPIC_ALIAS_MAXIMUM`] topic aliases from the server.
    pub fn new(protocol: ProtocolVersion, client_id: impl Into<ByteString>) -> Self {
        Self {
            protocol,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            properties: ConnectProperties {
                topic_alias_maximum: Some(DEFAULT_TOPIC_ALIAS_MAXIMUM),
                ..ConnectProperties::default()
            },
            connect_timeout: Duration::from_secs(10),
            ping_timeout: None,
        }
    }

    /// The CONNECT packet these options describe.
    pub fn to_connect(&self) -> Connect {
        let mut connect = Connect::new(self.protocol, self.client_id.clone(), self.keep_alive);
        connect.clean_start = self.clean_start;
        connect.username = self.username.clone();
        connect.password = self.password.clone();
        connect.will = self.will.clone();
        if self.protocol.is_v5() {
            connect.properties = self.properties.clone();
        }
        connect
    }

    /// The QoS 1 and 2 messages the server may have unacknowledged towards
    /// this client at once (MQTT 5 only; earlier versions have no limit).
    pub(crate) fn receive_maximum(&self) -> Option<u16> {
        self.protocol
            .is_v5()
            .then(|| self.properties.receive_maximum.unwrap_or(u16::MAX))
    }

    /// The highest topic alias the server may use (0 before MQTT 5).
    pub(crate) fn topic_alias_maximum(&self) -> u16 {
        if self.protocol.is_v5() {
            self.properties.topic_alias_maximum.unwrap_or(0)
        } else {
            0
        }
    }

    /// The largest packet accepted from the server, fixed header included.
    pub fn max_packet_size(&self) -> u32 {
        if self.protocol.is_v5() {
            self.properties
                .maximum_packet_size
                .unwrap_or(MAX_PACKET_SIZE)
        } else {
            MAX_PACKET_SIZE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_only_sent_in_v5() {
        let mut options = ConnectOptions::new(ProtocolVersion::V3_1_1, "c");
        options.properties.session_expiry_interval = Some(30);
        assert!(options.to_connect().properties.is_empty());
        options.protocol = ProtocolVersion::V5;
        assert_eq!(
            options.to_connect().properties.session_expiry_interval,
            Some(30)
        );
    }

    #[test]
    fn limits_follow_the_version() {
        let mut options = ConnectOptions::new(ProtocolVersion::V3_1_1, "c");
        options.properties.maximum_packet_size = Some(1000);
        assert_eq!(options.receive_maximum(), None);
        assert_eq!(options.topic_alias_maximum(), 0);
        assert_eq!(options.max_packet_size(), MAX_PACKET_SIZE);
        options.protocol = ProtocolVersion::V5;
        assert_eq!(options.receive_maximum(), Some(u16::MAX));
        assert_eq!(options.topic_alias_maximum(), DEFAULT_TOPIC_ALIAS_MAXIMUM);
        assert_eq!(options.max_packet_size(), 1000);
    }
}
