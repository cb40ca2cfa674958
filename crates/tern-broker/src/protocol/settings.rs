//! [`ProtocolSettings`]: the part of the broker configuration the protocol
//! applies, derived once and shared by every connection.

use std::time::Duration;

use tern_codec::QoS;

use crate::config::BrokerConfig;

/// The broker settings the protocol applies, derived once from
/// [`BrokerConfig`] and shared by every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolSettings {
    /// Largest packet accepted from a client.
    pub max_packet_size: u32,
    /// Receive Maximum announced to MQTT 5 clients: unacknowledged QoS 1/2
    /// publishes a client may have outstanding.
    pub receive_maximum: u16,
    /// Most outgoing QoS 1/2 messages in flight per client.
    pub max_inflight_messages: u16,
    /// Longest keep alive allowed.
    pub max_keepalive: u16,
    /// Whether retained messages are accepted.
    pub retain_available: bool,
    /// Highest QoS accepted and granted.
    pub max_qos: QoS,
    /// Whether an empty client identifier gets one assigned.
    pub allow_zero_length_clientid: bool,
    /// Highest inbound topic alias.
    pub max_topic_alias: u16,
    /// Most topic aliases assigned towards one MQTT 5 client (0: none).
    pub max_topic_alias_outbound: u16,
    /// Longest session expiry granted, in seconds.
    pub session_expiry_max: Option<u32>,
    /// How long a connection may take to send CONNECT.
    pub connect_timeout: Duration,
    /// Assigned client identifiers are this prefix and a connection number.
    pub assigned_id_prefix: String,
    /// Most messages delivered per input, so one busy client cannot hold
    /// its task (the runtime is asked to continue).
    pub deliveries_per_turn: usize,
    /// Longest client identifier accepted, in bytes.
    pub max_client_id_length: u16,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: u16,
    /// Longest topic name or filter, in bytes.
    pub max_topic_length: u16,
    /// Most subscriptions per session (`None`: no limit).
    pub max_subscriptions: Option<usize>,
}

impl ProtocolSettings {
    /// The settings of `config`; assigned identifiers start with `prefix`.
    pub fn new(config: &BrokerConfig, assigned_id_prefix: String) -> Self {
        Self {
            max_packet_size: config.max_packet_size,
            receive_maximum: config.max_inflight_messages.max(1),
            max_inflight_messages: config.max_inflight_messages.max(1),
            max_keepalive: config.max_keepalive.max(1),
            retain_available: config.retain_available,
            max_qos: config.max_qos(),
            allow_zero_length_clientid: config.allow_zero_length_clientid,
            max_topic_alias: config.max_topic_alias,
            max_topic_alias_outbound: config.max_topic_alias_outbound,
            session_expiry_max: config.session_expiry_max,
            connect_timeout: Duration::from_secs(
                config
                    .connect_timeout
                    .clamp(1, crate::config::MAX_CONNECT_TIMEOUT),
            ),
            assigned_id_prefix,
            deliveries_per_turn: 256,
            max_client_id_length: config.max_client_id_length,
            max_topic_levels: config.max_topic_levels,
            max_topic_length: config.max_topic_length,
            max_subscriptions: (config.max_subscriptions_per_client > 0)
                .then_some(config.max_subscriptions_per_client as usize),
        }
    }
}
