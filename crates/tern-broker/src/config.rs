//! [`BrokerConfig`]: every setting of the broker, with its default, named as
//! Mosquitto users know it, and [`BrokerConfig::validate`], which names the
//! key at fault and the fix.
//!
//! The binary reads it from a file (TOML or any serde format) or builds it
//! in code; unknown keys are refused so that a misspelt setting is not
//! silently ignored.
//!
//! Listeners come in two forms: `listeners`, a list of addresses for MQTT
//! over plain TCP, and `listener`, a list of [`ListenerConfig`] tables
//! (TOML `[[listener]]`) with a transport (TCP, TLS, WebSocket, secure
//! WebSocket), PROXY protocol and limits of their own. Both are served.

mod listener;

mod cluster;

pub use cluster::ClusterSettings;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tern_codec::{MAX_PACKET_SIZE, QoS};
use tern_session::Durability;
use thiserror::Error;

pub use self::listener::{
    DEFAULT_WS_PATH, ListenerConfig, ListenerError, ListenerKind, ListenerProblem,
};

/// The smallest `max_packet_size` accepted: room for a CONNECT with a
/// client identifier and a will.
pub const MIN_PACKET_SIZE: u32 = 128;

/// The longest `connect_timeout` accepted, in seconds: one day.
pub const MAX_CONNECT_TIMEOUT: u64 = 86_400;

/// All settings of a broker. Every field has a default (see
/// [`BrokerConfig::default`]); a serde source may set any subset of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Addresses to accept MQTT connections on (plain TCP).
    /// Default: `["0.0.0.0:1883"]`. Port 0 picks a free port (tests).
    pub listeners: Vec<SocketAddr>,
    /// Listeners with their own transport, TLS, WebSocket, PROXY protocol
    /// or connection limit (TOML: `[[listener]]` tables), served besides
    /// `listeners`. Default: none.
    pub listener: Vec<ListenerConfig>,
    /// Directory of the session store (sled). Default: `./tern-data`.
    /// `None` (an empty string in a file) keeps sessions and retained
    /// messages in memory only: nothing survives a restart.
    #[serde(deserialize_with = "data_dir")]
    pub data_dir: Option<PathBuf>,
    /// Largest packet accepted from a client, fixed header included, in
    /// bytes; larger ones close the connection (MQTT 5: reason 0x95).
    /// Announced to MQTT 5 clients as Maximum Packet Size.
    /// Default: 1,048,576 (1 MiB); at most 268,435,460.
    pub max_packet_size: u32,
    /// Most outgoing QoS 1 and 2 messages in flight to one client at once
    /// (further limited by an MQTT 5 client's Receive Maximum); also the
    /// Receive Maximum announced to MQTT 5 clients. Default: 20.
    pub max_inflight_messages: u16,
    /// Most messages queued for one client (offline or slow) beyond those
    /// in flight. When full, the oldest QoS 0 message is dropped first,
    /// then the oldest message; expired messages are dropped when they
    /// reach the front. Default: 1000.
    pub max_queued_messages: usize,
    /// Longest keep alive allowed, in seconds. An MQTT 5 client asking for
    /// more (or for 0, when this is below 65,535) is told this value as
    /// Server Keep Alive; an MQTT 3.1/3.1.1 client asking for more is
    /// refused, as Mosquitto does. Default: 65,535.
    pub max_keepalive: u16,
    /// Whether clients may publish retained messages. Default: true.
    pub retain_available: bool,
    /// Highest QoS accepted from publishers and granted to subscribers
    /// (0, 1 or 2). Default: 2.
    pub max_qos: u8,
    /// Whether a client may connect with an empty client identifier (the
    /// broker then assigns one). Default: true.
    pub allow_zero_length_clientid: bool,
    /// Highest topic alias an MQTT 5 client may use towards the broker; 0
    /// disables topic aliases. Default: 10.
    pub max_topic_alias: u16,
    /// Most topic aliases the broker assigns in the PUBLISH packets it
    /// sends to one MQTT 5 client that announces a Topic Alias Maximum
    /// (the lower of the two applies); when all are in use the least
    /// recently used alias is reassigned. 0 disables them. Default: 0
    /// (off: full topics are sent, as Mosquitto does).
    pub max_topic_alias_outbound: u16,
    /// Seconds between two publications of the `$SYS/broker/...` topics;
    /// 0 disables them. Default: 10.
    pub sys_interval: u64,
    /// Longest session expiry interval granted, in seconds; a client asking
    /// for more gets this (MQTT 5 clients are told). It also bounds the
    /// persistent sessions of MQTT 3.1.1 clients (clean session 0), which
    /// otherwise never expire. Default: none (no limit).
    pub session_expiry_max: Option<u32>,
    /// When a QoS 1/2 message is acknowledged to its publisher relative to
    /// its storage in persistent sessions. Default: `flush`.
    pub durability: DurabilityConfig,
    /// Most client connections open at once, over all listeners, counted
    /// from the TCP accept (before CONNECT). A connection beyond it is
    /// closed at once, before anything is read from it (as Mosquitto
    /// does), so a flood cannot make the broker hold more sockets than
    /// this. -1 (any negative value) means no limit. Default: -1.
    pub max_connections: i64,
    /// Seconds a new connection has to send CONNECT before it is closed
    /// (a socket that never sends CONNECT holds a file descriptor until
    /// then). Between 1 and 86,400. Default: 10.
    pub connect_timeout: u64,
    /// Where to serve the admin API (HTTP, JSON): health and readiness
    /// probes, and in a cluster its status, join, leave and leader
    /// transfer (`tern cluster`). Default: none.
    pub admin_listen: Option<SocketAddr>,
    /// Run as a node of a cluster (see [`ClusterSettings`]). Default:
    /// none, a single node.
    pub cluster: Option<ClusterSettings>,
    /// A password file (`user:hash` per line, as written by `tern passwd`
    /// or Mosquitto's `mosquitto_passwd`). Clients that send a user name
    /// must send its password (else CONNACK 0x86; MQTT 3.1.1: 4). Reloaded
    /// on SIGHUP. Default: none (user names are not checked).
    pub password_file: Option<PathBuf>,
    /// An ACL file: which user or client may publish, receive and
    /// subscribe to which topics (docs/security.md has the grammar).
    /// Reloaded on SIGHUP. Default: none (everything is allowed).
    pub acl_file: Option<PathBuf>,
    /// Whether a client may connect without a user name (else CONNACK
    /// 0x87; MQTT 3.1.1: 5, as Mosquitto answers). Default: true without a
    /// `password_file`, false with one. A `[[listener]]` may override it
    /// for its own connections ([`ListenerConfig::allow_anonymous`]).
    pub allow_anonymous: Option<bool>,
    /// What an `acl_file` decides when none of its rules matches.
    /// Default: `deny` (as Mosquitto).
    pub acl_default: AclDefault,
    /// Longest client identifier accepted, in bytes; a longer one is
    /// refused with CONNACK 0x85 (MQTT 3.1.1: 2). Default: 256.
    pub max_client_id_length: u16,
    /// Most levels (`/`-separated parts) in a topic name or filter. A
    /// PUBLISH beyond it is not routed (MQTT 5: PUBACK/PUBREC 0x90); a
    /// subscription beyond it is refused (SUBACK 0x8F; 3.1.1: 0x80).
    /// Default: 128.
    pub max_topic_levels: u16,
    /// Longest topic name or filter, in bytes, with the same answers as
    /// `max_topic_levels`. Default: 4096.
    pub max_topic_length: u16,
    /// Most subscriptions one client (session) may hold; a SUBSCRIBE
    /// beyond it is refused for the new filters (SUBACK 0x97; 3.1.1:
    /// 0x80). 0 means no limit. Default: 1000.
    pub max_subscriptions_per_client: u32,
    /// Most PUBLISH packets per second one client may send. Beyond it the
    /// broker stops reading from that client until it is within the rate
    /// again (TCP pushes back on the client; nothing is lost or refused).
    /// Bursts of up to one second's worth pass. 0 means no limit. Default: 0.
    pub max_message_rate: u32,
    /// Most bytes per second read from one client, throttled the same way
    /// as `max_message_rate`. 0 means no limit; else at least 1024.
    /// Default: 0.
    pub max_bytes_rate: u32,
    /// Most new connections accepted per second, over all listeners;
    /// beyond it a new socket is closed before anything is read (bursts of
    /// one second's worth pass). 0 means no limit. Default: 0.
    pub max_connection_rate: u32,
    /// Milliseconds a plain TCP connection may be idle (nothing read,
    /// nothing to send) before it is parked: its task and timers are
    /// released and its socket waits in a shared poller, until the client
    /// sends something, a message is queued for it, its keep-alive runs
    /// out or another connection takes its session over. A parked
    /// connection holds about half the memory of one that waits in its
    /// own task (docs/performance.md). TLS and WebSocket connections are
    /// not parked. 0: never park. Default: 2000.
    pub park_idle_after_ms: u32,
    /// Microseconds the runtime's workers keep polling for I/O after the
    /// broker last read something, before they sleep: a busy broker then
    /// picks up the next packet without the cost of being woken (see
    /// `server::idle_poll`), for CPU spent polling. Worth it on cores of
    /// the broker's own; off by default, since polling counts as CPU use
    /// (CPU limits, autoscalers) and takes time from processes sharing the
    /// cores. At most [`MAX_IDLE_POLL_US`]; 0: sleep at once. Default: 0.
    pub idle_poll_us: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listeners: vec![SocketAddr::from(([0, 0, 0, 0], 1883))],
            listener: Vec::new(),
            data_dir: Some(PathBuf::from("./tern-data")),
            max_packet_size: 1024 * 1024,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_keepalive: u16::MAX,
            retain_available: true,
            max_qos: 2,
            allow_zero_length_clientid: true,
            max_topic_alias: 10,
            max_topic_alias_outbound: 0,
            sys_interval: 10,
            session_expiry_max: None,
            durability: DurabilityConfig::Flush,
            max_connections: -1,
            connect_timeout: 10,
            admin_listen: None,
            cluster: None,
            password_file: None,
            acl_file: None,
            allow_anonymous: None,
            acl_default: AclDefault::Deny,
            max_client_id_length: 256,
            max_topic_levels: 128,
            max_topic_length: 4096,
            max_subscriptions_per_client: 1000,
            max_message_rate: 0,
            max_bytes_rate: 0,
            max_connection_rate: 0,
            park_idle_after_ms: 2000,
            idle_poll_us: 0,
        }
    }
}

/// What an ACL file decides when none of its rules matches a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclDefault {
    /// Refuse (Mosquitto's behaviour). The default.
    #[default]
    Deny,
    /// Allow: the file lists only what is forbidden.
    Allow,
}

/// The smallest `max_bytes_rate` accepted: below it a single read of a
/// packet could pause a connection for longer than its keep alive.
pub const MIN_BYTES_RATE: u32 = 1024;

/// The largest `idle_poll_us`: a worker looks for reads every millisecond
/// between polls, so a longer window would poll without a pause.
pub const MAX_IDLE_POLL_US: u32 = 1000;

/// How durable a message is when its publisher gets PUBACK or PUBREC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DurabilityConfig {
    /// Acknowledge once the message is on disk in every matching persistent
    /// session (writes waiting together share one flush). The default.
    #[default]
    Flush,
    /// Acknowledge once stored in memory; flush at most this many
    /// milliseconds later. A crash loses up to that much. In a file:
    /// `durability = { periodic_ms = 100 }`.
    #[serde(rename = "periodic_ms")]
    PeriodicMs(u64),
    /// Acknowledge once stored in memory; flush only at shutdown. For tests
    /// and benchmarks.
    None,
}

impl DurabilityConfig {
    /// The session store's setting.
    pub fn to_store(self) -> Durability {
        match self {
            Self::Flush => Durability::Flush,
            Self::PeriodicMs(millis) => Durability::Periodic(Duration::from_millis(millis)),
            Self::None => Durability::None,
        }
    }
}

fn data_dir<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    let path: Option<PathBuf> = Option::deserialize(deserializer)?;
    Ok(path.filter(|path| !path.as_os_str().is_empty()))
}

/// A setting that cannot work, with the key and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// No address to listen on.
    #[error(
        "listeners is empty and there is no [[listener]]: add at least one address, such as \
         \"0.0.0.0:1883\""
    )]
    NoListeners,
    /// The same address twice.
    #[error(
        "listeners names {0} twice (counting the bind of each [[listener]]): remove the \
         duplicate"
    )]
    DuplicateListener(SocketAddr),
    /// A `[[listener]]` table that cannot work.
    #[error(transparent)]
    Listener(#[from] ListenerError),
    /// Two listeners with one name.
    #[error("listener {0:?} is the name of two listeners: give each its own name")]
    DuplicateListenerName(String),
    /// Packet size limit out of range.
    #[error(
        "max_packet_size is {0}: set it between {MIN_PACKET_SIZE} and {MAX_PACKET_SIZE} bytes \
         (the MQTT maximum)"
    )]
    MaxPacketSize(u32),
    /// No message could ever be in flight.
    #[error("max_inflight_messages is 0: set it to at least 1 (Mosquitto's default is 20)")]
    MaxInflightMessages,
    /// No message could ever be queued.
    #[error("max_queued_messages is 0: set it to at least 1 (the default is 1000)")]
    MaxQueuedMessages,
    /// Keep alive of 0 would close every connection.
    #[error("max_keepalive is 0: set it between 1 and 65535 seconds")]
    MaxKeepalive,
    /// QoS above 2.
    #[error("max_qos is {0}: MQTT has QoS 0, 1 and 2 only; set it to one of them")]
    MaxQos(u8),
    /// No connection could ever be accepted.
    #[error("max_connections is 0: set it to -1 for no limit, or to at least 1")]
    MaxConnections,
    /// Every connection would be closed before it could send CONNECT, or
    /// an idle socket could be held for ever.
    #[error("connect_timeout is {0}: set it between 1 and 86400 seconds (the default is 10)")]
    ConnectTimeout(u64),
    /// A limit that would refuse every client.
    #[error("{0} is 0: set it to at least 1 (the default is {1})")]
    ZeroLimit(&'static str, u32),
    /// Throttling below what one read takes.
    #[error(
        "max_bytes_rate is {0}: set it to 0 (no limit) or at least {MIN_BYTES_RATE} bytes per \
         second"
    )]
    BytesRate(u32),
    /// Polling so long that a worker would never sleep.
    #[error(
        "idle_poll_us is {0}: set it between 0 (workers sleep as soon as they are idle) and \
         {MAX_IDLE_POLL_US} microseconds (50 suits a broker with cores of its own)"
    )]
    IdlePoll(u32),
    /// Periodic flush without a period.
    #[error(
        "durability.periodic_ms is 0: give the flush period in milliseconds (for example 100), \
         or use durability = \"none\""
    )]
    PeriodicDurability,
    /// A cluster setting that cannot work; the text names the key and fix.
    #[error("{0}")]
    Cluster(String),
}

impl BrokerConfig {
    /// Checks every setting; the first one that cannot work is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listeners.is_empty() && self.listener.is_empty() {
            return Err(ConfigError::NoListeners);
        }
        let binds: Vec<SocketAddr> = self
            .listeners
            .iter()
            .copied()
            .chain(self.listener.iter().map(|l| l.bind))
            .collect();
        for (index, address) in binds.iter().enumerate() {
            let is_duplicate = binds[..index].contains(address) && address.port() != 0;
            if is_duplicate {
                return Err(ConfigError::DuplicateListener(*address));
            }
        }
        for (index, listener) in self.listener.iter().enumerate() {
            listener.validate()?;
            let name = listener.display_name();
            if self.listener[..index]
                .iter()
                .any(|other| other.display_name() == name)
            {
                return Err(ConfigError::DuplicateListenerName(name));
            }
        }
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&self.max_packet_size) {
            return Err(ConfigError::MaxPacketSize(self.max_packet_size));
        }
        if self.max_inflight_messages == 0 {
            return Err(ConfigError::MaxInflightMessages);
        }
        if self.max_queued_messages == 0 {
            return Err(ConfigError::MaxQueuedMessages);
        }
        if self.max_keepalive == 0 {
            return Err(ConfigError::MaxKeepalive);
        }
        if self.max_qos > 2 {
            return Err(ConfigError::MaxQos(self.max_qos));
        }
        if self.durability == DurabilityConfig::PeriodicMs(0) {
            return Err(ConfigError::PeriodicDurability);
        }
        if self.max_connections == 0 {
            return Err(ConfigError::MaxConnections);
        }
        if !(1..=MAX_CONNECT_TIMEOUT).contains(&self.connect_timeout) {
            return Err(ConfigError::ConnectTimeout(self.connect_timeout));
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate(self.data_dir.is_some())?;
        }
        let limits = [
            ("max_client_id_length", self.max_client_id_length, 256),
            ("max_topic_levels", self.max_topic_levels, 128),
            ("max_topic_length", self.max_topic_length, 4096),
        ];
        for (key, value, default) in limits {
            if value == 0 {
                return Err(ConfigError::ZeroLimit(key, default));
            }
        }
        if self.max_bytes_rate != 0 && self.max_bytes_rate < MIN_BYTES_RATE {
            return Err(ConfigError::BytesRate(self.max_bytes_rate));
        }
        if self.idle_poll_us > MAX_IDLE_POLL_US {
            return Err(ConfigError::IdlePoll(self.idle_poll_us));
        }
        Ok(())
    }

    /// The authentication and authorization settings, with the defaults
    /// that depend on other keys applied.
    pub fn auth_settings(&self) -> tern_auth::AuthSettings {
        tern_auth::AuthSettings {
            password_file: self.password_file.clone(),
            acl_file: self.acl_file.clone(),
            allow_anonymous: self.allow_anonymous.unwrap_or(self.password_file.is_none()),
            acl_default_allow: self.acl_default == AclDefault::Allow,
        }
    }

    /// `max_connections` as a limit: `None` when unlimited (negative).
    pub fn connection_limit(&self) -> Option<usize> {
        usize::try_from(self.max_connections).ok()
    }

    /// `max_qos` as a [`QoS`] (after [`BrokerConfig::validate`]; above 2
    /// reads as 2).
    pub fn max_qos(&self) -> QoS {
        match self.max_qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }

    /// A configuration for tests: one listener on `127.0.0.1:0`, sessions
    /// in memory, `$SYS` off.
    pub fn for_tests() -> Self {
        Self {
            listeners: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            data_dir: None,
            sys_interval: 0,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<BrokerConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = BrokerConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.listeners[0].port(), 1883);
        assert_eq!(config.data_dir, Some(PathBuf::from("./tern-data")));
        assert_eq!(config.max_qos(), QoS::ExactlyOnce);
        assert_eq!(config.connection_limit(), None, "-1 is unlimited");
        assert_eq!(config.connect_timeout, 10);
        assert_eq!(parse("{}").unwrap(), config);
        let limited = parse(r#"{"max_connections": 500, "connect_timeout": 3}"#).unwrap();
        assert_eq!(limited.connection_limit(), Some(500));
        assert_eq!(limited.validate(), Ok(()));
    }

    #[test]
    fn anonymous_clients_are_allowed_unless_there_is_a_password_file() {
        let open = BrokerConfig::default().auth_settings();
        assert!(open.allow_anonymous);
        assert!(!open.acl_default_allow);
        let closed = parse(r#"{"password_file": "/etc/tern/passwd"}"#).unwrap();
        assert!(!closed.auth_settings().allow_anonymous);
        let reopened =
            parse(r#"{"password_file": "/p", "allow_anonymous": true, "acl_default": "allow"}"#)
                .unwrap()
                .auth_settings();
        assert!(reopened.allow_anonymous);
        assert!(reopened.acl_default_allow);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = parse(r#"{"max_packet_sise": 10}"#).unwrap_err();
        assert!(error.to_string().contains("max_packet_sise"), "{error}");
    }

    #[test]
    fn empty_data_dir_means_in_memory() {
        assert_eq!(parse(r#"{"data_dir": ""}"#).unwrap().data_dir, None);
        assert_eq!(parse(r#"{"data_dir": null}"#).unwrap().data_dir, None);
        let config = parse(r#"{"data_dir": "/var/lib/tern"}"#).unwrap();
        assert_eq!(config.data_dir, Some(PathBuf::from("/var/lib/tern")));
    }

    #[test]
    fn durability_forms() {
        assert_eq!(
            parse(r#"{"durability": "none"}"#).unwrap().durability,
            DurabilityConfig::None
        );
        let config = parse(r#"{"durability": {"periodic_ms": 100}}"#).unwrap();
        assert_eq!(
            config.durability.to_store(),
            Durability::Periodic(Duration::from_millis(100))
        );
    }

    #[test]
    fn validation_names_the_key_and_the_fix() {
        type Breaker = fn(&mut BrokerConfig);
        let cases: [(Breaker, &str); 13] = [
            (|c| c.max_client_id_length = 0, "max_client_id_length"),
            (|c| c.max_topic_levels = 0, "max_topic_levels"),
            (|c| c.max_bytes_rate = 100, "max_bytes_rate"),
            (|c| c.idle_poll_us = MAX_IDLE_POLL_US + 1, "idle_poll_us"),
            (|c| c.listeners.clear(), "listeners"),
            (|c| c.max_packet_size = 10, "max_packet_size"),
            (|c| c.max_inflight_messages = 0, "max_inflight_messages"),
            (|c| c.max_queued_messages = 0, "max_queued_messages"),
            (|c| c.max_keepalive = 0, "max_keepalive"),
            (|c| c.max_qos = 3, "max_qos"),
            (|c| c.max_connections = 0, "max_connections"),
            (|c| c.connect_timeout = 0, "connect_timeout"),
            (
                |c| c.durability = DurabilityConfig::PeriodicMs(0),
                "durability",
            ),
        ];
        for (break_it, key) in cases {
            let mut config = BrokerConfig::default();
            break_it(&mut config);
            let message = config.validate().unwrap_err().to_string();
            assert!(message.starts_with(key), "{message}");
        }
        let mut config = BrokerConfig::default();
        config.listeners.push(config.listeners[0]);
        assert!(matches!(
            config.validate(),
            Err(ConfigError::DuplicateListener(_))
        ));
    }

    #[test]
    fn listener_tables_are_checked_with_the_plain_listeners() {
        let config = parse(
            r#"{"listeners": [], "listener": [
                {"bind": "0.0.0.0:8883", "kind": "tls", "cert": "c.pem", "key": "k.pem"},
                {"bind": "0.0.0.0:8080", "kind": "ws", "proxy_protocol": true}
            ]}"#,
        )
        .unwrap();
        assert_eq!(config.validate(), Ok(()), "tables alone are enough");
        assert_eq!(config.listener[1].ws_path(), DEFAULT_WS_PATH);

        let mut clash = config.clone();
        clash.listeners = vec!["0.0.0.0:8080".parse().unwrap()];
        let message = clash.validate().unwrap_err().to_string();
        assert!(
            message.starts_with("listeners names 0.0.0.0:8080 twice"),
            "{message}"
        );

        let mut same_name = config.clone();
        for listener in &mut same_name.listener {
            listener.name = Some("edge".into());
        }
        let message = same_name.validate().unwrap_err().to_string();
        assert!(
            message.starts_with("listener \"edge\" is the name of two"),
            "{message}"
        );

        let mut broken = config;
        broken.listener[0].key = None;
        let message = broken.validate().unwrap_err().to_string();
        assert!(
            message.starts_with("listener \"tls 0.0.0.0:8883\": key is missing"),
            "{message}"
        );
    }
}
