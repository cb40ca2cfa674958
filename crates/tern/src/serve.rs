//! `tern serve`: runs a broker node.
//!
//! Settings come from, in rising priority: the defaults of
//! [`BrokerConfig`], a TOML file (`--config`), `TERN_*` environment
//! variables and command-line flags. With nothing given, the broker listens
//! on 0.0.0.0:1883 and keeps its data in `./tern-data`. docs/configuration.md
//! lists every setting.
//!
//! SIGTERM and SIGINT shut the broker down gracefully: it stops accepting,
//! sends MQTT 5 clients DISCONNECT 0x8B, flushes sessions to disk and exits 0.
//! SIGHUP reloads what can change while running: the certificates of TLS
//! listeners (connections stay up; a failed reload keeps the old ones).
//!
//! A config file with `[[listener]]` tables and no `listeners` key serves
//! the tables only: the default plain listener on 0.0.0.0:1883 is added only
//! when the file names no listener at all.
//!
//! SIGHUP reloads the password and ACL files (a bad file is logged and the
//! previous users and rules stay in force).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use tern_broker::{AclDefault, BrokerConfig, ClusterSettings, DurabilityConfig, Server};
use tokio::signal::unix::{SignalKind, signal};

/// Flags of `tern serve`. Each also reads the `TERN_*` variable named in
/// its help; a flag given on the command line wins over the variable, and
/// both win over the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags and TERN_* variables override its values.
    #[arg(long, env = "TERN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to accept MQTT connections on; repeat the flag (or separate
    /// addresses with commas in TERN_LISTEN) for several [default: 0.0.0.0:1883].
    #[arg(
        long = "listen",
        env = "TERN_LISTEN",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    listen: Vec<SocketAddr>,
    /// Directory of the session store [default: ./tern-data].
    #[arg(
        long,
        env = "TERN_DATA_DIR",
        value_name = "DIR",
        conflicts_with = "in_memory"
    )]
    data_dir: Option<PathBuf>,
    /// Keep sessions and retained messages in memory only: nothing survives a restart.
    #[arg(long, env = "TERN_IN_MEMORY")]
    in_memory: bool,
    /// Largest packet accepted from a client, in bytes [default: 1048576].
    #[arg(long, env = "TERN_MAX_PACKET_SIZE", value_name = "BYTES")]
    max_packet_size: Option<u32>,
    /// Most QoS 1/2 messages in flight to one client [default: 20].
    #[arg(long, env = "TERN_MAX_INFLIGHT_MESSAGES", value_name = "N")]
    max_inflight_messages: Option<u16>,
    /// Most messages queued for one offline or slow client [default: 1000].
    #[arg(long, env = "TERN_MAX_QUEUED_MESSAGES", value_name = "N")]
    max_queued_messages: Option<usize>,
    /// Longest keep alive allowed, in seconds [default: 65535].
    #[arg(long, env = "TERN_MAX_KEEPALIVE", value_name = "SECONDS")]
    max_keepalive: Option<u16>,
    /// Whether clients may publish retained messages [default: true].
    #[arg(long, env = "TERN_RETAIN_AVAILABLE", value_name = "BOOL")]
    retain_available: Option<bool>,
    /// Highest QoS accepted and granted: 0, 1 or 2 [default: 2].
    #[arg(long, env = "TERN_MAX_QOS", value_name = "QOS")]
    max_qos: Option<u8>,
    /// Whether a client may connect with an empty client id [default: true].
    #[arg(long, env = "TERN_ALLOW_ZERO_LENGTH_CLIENTID", value_name = "BOOL")]
    allow_zero_length_clientid: Option<bool>,
    /// Highest topic alias an MQTT 5 client may use; 0 disables them [default: 10].
    #[arg(long, env = "TERN_MAX_TOPIC_ALIAS", value_name = "N")]
    max_topic_alias: Option<u16>,
    /// Highest topic alias the broker assigns towards an MQTT 5 client that
    /// accepts them; 0 sends full topics [default: 0].
    #[arg(long, env = "TERN_MAX_TOPIC_ALIAS_OUTBOUND", value_name = "N")]
    max_topic_alias_outbound: Option<u16>,
    /// Most client connections at once, all listeners together; -1 for no
    /// limit [default: -1].
    #[arg(
        long,
        env = "TERN_MAX_CONNECTIONS",
        value_name = "N",
        allow_negative_numbers = true
    )]
    max_connections: Option<i64>,
    /// Seconds a new connection has to send CONNECT [default: 10].
    #[arg(long, env = "TERN_CONNECT_TIMEOUT", value_name = "SECONDS")]
    connect_timeout: Option<u64>,
    /// Seconds between publications of $SYS topics; 0 disables them [default: 10].
    #[arg(long, env = "TERN_SYS_INTERVAL", value_name = "SECONDS")]
    sys_interval: Option<u64>,
    /// Longest session expiry interval granted, in seconds [default: no limit].
    #[arg(long, env = "TERN_SESSION_EXPIRY_MAX", value_name = "SECONDS")]
    session_expiry_max: Option<u32>,
    /// When a QoS 1/2 message is acknowledged: `flush` (on disk), `none`
    /// (in memory), or `periodic:MS` (flushed within MS milliseconds) [default: flush].
    #[arg(long, env = "TERN_DURABILITY", value_name = "MODE", value_parser = parse_durability)]
    durability: Option<DurabilityConfig>,
    /// Where to serve the admin API (HTTP, JSON): /healthz, /readyz and,
    /// in a cluster, /cluster/status, join, leave, transfer-leader.
    #[arg(long, env = "TERN_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// This node's id in a cluster (unique, at least 1, kept across
    /// restarts). Giving it makes this node a cluster member.
    #[arg(
        long,
        env = "TERN_NODE_ID",
        value_name = "N",
        requires = "cluster_listen"
    )]
    node_id: Option<u64>,
    /// Where to accept gRPC from the other nodes (Raft and forwarded messages).
    #[arg(
        long,
        env = "TERN_CLUSTER_LISTEN",
        value_name = "ADDR",
        requires = "node_id"
    )]
    cluster_listen: Option<SocketAddr>,
    /// The host:port other nodes dial to reach this one, when it differs
    /// from --cluster-listen [default: the --cluster-listen address].
    #[arg(long, env = "TERN_ADVERTISE", value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Seeds to join a cluster through: cluster addresses of members, or
    /// a DNS name resolving to several (comma-separated in TERN_JOIN).
    #[arg(long, env = "TERN_JOIN", value_name = "SEED", value_delimiter = ',')]
    join: Vec<String>,
    /// Start a new cluster with this node as its first member (if it has
    /// no cluster data yet). Give it to one node only.
    #[arg(long, env = "TERN_BOOTSTRAP")]
    bootstrap: bool,
    /// How many nodes vote in Raft; later nodes join as learners [default: 3].
    #[arg(long, env = "TERN_VOTERS", value_name = "N")]
    voters: Option<usize>,
    /// Password file (`tern passwd` or `mosquitto_passwd`); reloaded on SIGHUP.
    #[arg(long, env = "TERN_PASSWORD_FILE", value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// ACL file (docs/security.md has the grammar); reloaded on SIGHUP.
    #[arg(long, env = "TERN_ACL_FILE", value_name = "FILE")]
    acl_file: Option<PathBuf>,
    /// Whether clients without a user name may connect (default: true
    /// without a password file, false with one).
    #[arg(long, env = "TERN_ALLOW_ANONYMOUS", value_name = "BOOL")]
    allow_anonymous: Option<bool>,
    /// What the ACL file decides when no rule matches: deny or allow.
    #[arg(long, env = "TERN_ACL_DEFAULT", value_name = "DECISION", value_parser = parse_acl_default)]
    acl_default: Option<AclDefault>,
    /// Longest client identifier accepted, in bytes.
    #[arg(long, env = "TERN_MAX_CLIENT_ID_LENGTH", value_name = "BYTES")]
    max_client_id_length: Option<u16>,
    /// Most levels in a topic name or filter.
    #[arg(long, env = "TERN_MAX_TOPIC_LEVELS", value_name = "N")]
    max_topic_levels: Option<u16>,
    /// Longest topic name or filter, in bytes.
    #[arg(long, env = "TERN_MAX_TOPIC_LENGTH", value_name = "BYTES")]
    max_topic_length: Option<u16>,
    /// Most subscriptions per client (0: no limit).
    #[arg(long, env = "TERN_MAX_SUBSCRIPTIONS_PER_CLIENT", value_name = "N")]
    max_subscriptions_per_client: Option<u32>,
    /// Most PUBLISH packets per second per client, throttled (0: no limit).
    #[arg(long, env = "TERN_MAX_MESSAGE_RATE", value_name = "N")]
    max_message_rate: Option<u32>,
    /// Most bytes per second read from one client, throttled (0: no limit).
    #[arg(long, env = "TERN_MAX_BYTES_RATE", value_name = "BYTES")]
    max_bytes_rate: Option<u32>,
    /// Most new connections per second over all listeners (0: no limit).
    #[arg(long, env = "TERN_MAX_CONNECTION_RATE", value_name = "N")]
    max_connection_rate: Option<u32>,
    /// Milliseconds of idleness after which a plain TCP connection is
    /// parked, holding less memory (0: never) [default: 2000].
    #[arg(long, env = "TERN_PARK_IDLE_AFTER_MS", value_name = "MS")]
    park_idle_after_ms: Option<u32>,
    /// Microseconds the workers keep polling for I/O after the last read
    /// before they sleep, so a busy broker is not woken per packet; for a
    /// broker with cores of its own, 50 (0: sleep at once; at most 1000)
    /// [default: 0].
    #[arg(long, env = "TERN_IDLE_POLL_US", value_name = "US")]
    idle_poll_us: Option<u32>,
    /// Log filter, in tracing's EnvFilter syntax (for example `info` or
    /// `tern_broker=debug`) [default: info, openraft at warn].
    #[arg(
        long,
        env = "TERN_LOG",
        value_name = "FILTER",
        default_value = "info,openraft=warn"
    )]
    log: String,
}

fn parse_durability(text: &str) -> Result<DurabilityConfig, String> {
    match text {
        "flush" => Ok(DurabilityConfig::Flush),
        "none" => Ok(DurabilityConfig::None),
        _ => text
            .strip_prefix("periodic:")
            .and_then(|millis| millis.parse().ok())
            .map(DurabilityConfig::PeriodicMs)
            .ok_or_else(|| {
                format!("{text:?} is not a durability: use flush, none or periodic:MILLISECONDS")
            }),
    }
}

/// Reads the config file, reporting a bad key with its line and the fix.
fn parse_acl_default(text: &str) -> Result<AclDefault, String> {
    match text {
        "deny" => Ok(AclDefault::Deny),
        "allow" => Ok(AclDefault::Allow),
        _ => Err(format!("{text:?} is not an ACL default: use deny or allow")),
    }
}

fn read_config_file(path: &Path) -> anyhow::Result<BrokerConfig> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the config file {}: check the path given to --config",
            path.display()
        )
    })?;
    let mut config: BrokerConfig = toml::from_str(&text).map_err(|error| {
        let line = error
            .span()
            .map(|span| text[..span.start].matches('\n').count() + 1)
            .map(|line| format!(" line {line}"))
            .unwrap_or_default();
        anyhow::anyhow!(
            "{}{line}: {}; docs/configuration.md lists every setting and its type",
            path.display(),
            error.message().trim_end()
        )
    })?;
    if only_listener_tables(&text) {
        config.listeners.clear();
    }
    Ok(config)
}

/// Whether a config file has `[[listener]]` tables but no `listeners` key
/// (then it does not want the default plain listener). `text` parsed as a
/// `BrokerConfig` already.
fn only_listener_tables(text: &str) -> bool {
    toml::from_str::<toml::Table>(text)
        .is_ok_and(|table| table.contains_key("listener") && !table.contains_key("listeners"))
}

/// The configuration: defaults, then the file, then variables and flags.
pub fn build_config(args: &ServeArgs) -> anyhow::Result<BrokerConfig> {
    let mut config = match &args.config {
        Some(path) => read_config_file(path)?,
        None => BrokerConfig::default(),
    };
    if !args.listen.is_empty() {
        config.listeners = args.listen.clone();
    }
    if args.in_memory {
        config.data_dir = None;
    } else if let Some(dir) = &args.data_dir {
        config.data_dir = Some(dir.clone());
    }
    macro_rules! override_with_flags {
        ($($field:ident),*) => {
            $( if let Some(value) = args.$field { config.$field = value; } )*
        };
    }
    override_with_flags!(
        max_packet_size,
        max_inflight_messages,
        max_queued_messages,
        max_keepalive,
        retain_available,
        max_qos,
        allow_zero_length_clientid,
        max_topic_alias,
        max_topic_alias_outbound,
        max_connections,
        connect_timeout,
        sys_interval,
        durability,
        acl_default,
        max_client_id_length,
        max_topic_levels,
        max_topic_length,
        max_subscriptions_per_client,
        max_message_rate,
        max_bytes_rate,
        max_connection_rate,
        park_idle_after_ms,
        idle_poll_us
    );
    if let Some(path) = &args.password_file {
        config.password_file = Some(path.clone());
    }
    if let Some(path) = &args.acl_file {
        config.acl_file = Some(path.clone());
    }
    if let Some(allow) = args.allow_anonymous {
        config.allow_anonymous = Some(allow);
    }
    if let Some(seconds) = args.session_expiry_max {
        config.session_expiry_max = Some(seconds);
    }
    if args.admin_listen.is_some() {
        config.admin_listen = args.admin_listen;
    }
    apply_cluster_flags(args, &mut config);
    config
        .validate()
        .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
    Ok(config)
}

/// The cluster flags, over the `[cluster]` table of the config file.
fn apply_cluster_flags(args: &ServeArgs, config: &mut BrokerConfig) {
    if let (Some(node_id), Some(listen)) = (args.node_id, args.cluster_listen) {
        let cluster = config
            .cluster
            .get_or_insert_with(|| ClusterSettings::new(node_id, listen));
        cluster.node_id = node_id;
        cluster.cluster_listen = listen;
    }
    let Some(cluster) = config.cluster.as_mut() else {
        return;
    };
    if args.advertise.is_some() {
        cluster.advertise.clone_from(&args.advertise);
    }
    if !args.join.is_empty() {
        cluster.join.clone_from(&args.join);
    }
    cluster.bootstrap |= args.bootstrap;
    if let Some(voters) = args.voters {
        cluster.voters = voters;
    }
}

fn init_logging(filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|error| {
        anyhow::anyhow!("--log {filter:?} is not a valid filter ({error}); try `info` or `debug`")
    })?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// Runs the broker until SIGTERM or SIGINT.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(&args.log)?;
    let config = build_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tern-worker")
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: BrokerConfig) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch for SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
    let data = match &config.data_dir {
        Some(dir) => dir.display().to_string(),
        None => "memory only".to_owned(),
    };
    let server = Server::start(config).await?;
    for listener in server.listeners() {
        tracing::info!(
            address = %listener.address,
            kind = listener.kind,
            listener = %listener.name,
            data = %data,
            "tern listening for MQTT"
        );
    }
    loop {
        tokio::select! {
            _ = terminate.recv() => {
                tracing::info!(signal = "SIGTERM", "shutting down");
                break;
            }
            _ = interrupt.recv() => {
                tracing::info!(signal = "SIGINT", "shutting down");
                break;
            }
            _ = hangup.recv() => {
                tracing::info!(signal = "SIGHUP", "reloading");
                // Each listener's outcome is logged by the server.
                server.reload_tls();
                if let Err(error) = server.reload_auth().await {
                    tracing::error!(
                        "reload failed, the previous users and rules stay in force: {error}; \
                         fix the file and send SIGHUP again"
                    );
                }
            }
        }
    }
    server.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn args(argv: &[&str]) -> ServeArgs {
        Wrapper::try_parse_from(std::iter::once("serve").chain(argv.iter().copied()))
            .expect("valid arguments")
            .args
    }

    #[test]
    fn no_flags_give_the_embedded_default() {
        let config = build_config(&args(&[])).unwrap();
        assert_eq!(config, BrokerConfig::default());
        assert_eq!(config.listeners, ["0.0.0.0:1883".parse().unwrap()]);
        assert_eq!(config.data_dir, Some(PathBuf::from("./tern-data")));
    }

    #[test]
    fn flags_override_the_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "max_queued_messages = 5\nmax_qos = 1\nsys_interval = 0"
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let config = build_config(&args(&[
            "--config",
            path,
            "--listen",
            "127.0.0.1:1884",
            "--listen",
            "127.0.0.1:1885",
            "--max-qos",
            "2",
            "--durability",
            "periodic:50",
            "--max-connections",
            "-1",
            "--connect-timeout",
            "3",
        ]))
        .unwrap();
        assert_eq!(config.max_queued_messages, 5);
        assert_eq!(config.max_qos, 2);
        assert_eq!(config.sys_interval, 0);
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.durability, DurabilityConfig::PeriodicMs(50));
        assert_eq!(config.max_connections, -1);
        assert_eq!(config.connect_timeout, 3);
    }

    #[test]
    fn authentication_and_limit_flags() {
        let config = build_config(&args(&[
            "--password-file",
            "/etc/tern/passwd",
            "--acl-file",
            "/etc/tern/acl",
            "--acl-default",
            "allow",
            "--max-subscriptions-per-client",
            "5",
            "--max-connection-rate",
            "50",
        ]))
        .unwrap();
        let auth = config.auth_settings();
        assert_eq!(auth.password_file, Some(PathBuf::from("/etc/tern/passwd")));
        assert!(
            !auth.allow_anonymous,
            "a password file closes anonymous access"
        );
        assert!(auth.acl_default_allow);
        assert_eq!(config.max_subscriptions_per_client, 5);
        assert_eq!(config.max_connection_rate, 50);
        let error = parse_acl_default("maybe").unwrap_err();
        assert!(error.contains("deny or allow"), "{error}");
    }

    #[test]
    fn a_misspelt_key_is_named_with_its_line() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "max_qos = 1\nmax_packt_size = 10").unwrap();
        let path = file.path().to_str().unwrap();
        let error = build_config(&args(&["--config", path]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
        assert!(error.contains("max_packt_size"), "{error}");
        assert!(error.contains("docs/configuration.md"), "{error}");
    }

    #[test]
    fn listener_tables_alone_replace_the_default_listener() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "[[listener]]\nbind = \"127.0.0.1:8080\"\nkind = \"ws\"\nproxy_protocol = true"
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let config = build_config(&args(&["--config", path])).unwrap();
        assert!(config.listeners.is_empty(), "{:?}", config.listeners);
        assert_eq!(config.listener.len(), 1);
        assert!(config.listener[0].proxy_protocol);

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "listeners = [\"127.0.0.1:1883\"]\n[[listener]]\nbind = \"127.0.0.1:8080\"\nkind = \"ws\""
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let config = build_config(&args(&["--config", path])).unwrap();
        assert_eq!(config.listeners.len(), 1);
        assert_eq!(config.listener.len(), 1);
    }

    #[test]
    fn a_bad_listener_table_names_the_listener_and_the_key() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "[[listener]]\nbind = \"127.0.0.1:8883\"\nkind = \"tls\""
        )
        .unwrap();
        let path = file.path().to_str().unwrap();
        let error = build_config(&args(&["--config", path]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("listener \"tls 127.0.0.1:8883\": cert is missing"),
            "{error}"
        );
    }

    #[test]
    fn an_invalid_value_names_the_key_and_the_fix() {
        let error = build_config(&args(&["--max-qos", "3"]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("max_qos is 3"), "{error}");
        let error = parse_durability("sometimes").unwrap_err();
        assert!(error.contains("periodic:MILLISECONDS"), "{error}");
    }
}
