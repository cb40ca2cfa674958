//! `tern bench`: a load generator for MQTT brokers, in the spirit of
//! emqtt-bench, speaking MQTT through tern-client's `ClientSession` and
//! tern-codec (the one protocol implementation).
//!
//! Scenarios: `conn` (open connections at a rate and hold them), `pub`,
//! `sub`, `pairs` (N publisher/subscriber pairs, each pair on its own
//! topic), `fan-in` (N publishers, one wildcard subscriber) and `fan-out`
//! (one publisher, N subscribers of its topic).
//!
//! Every payload carries its publisher, a per-publisher sequence number and
//! the send time ([`payload`]); subscribers record end-to-end latency in an
//! HDR histogram and sequence numbers per publisher ([`tracker`]), so a run
//! reports lost, duplicate and out-of-order messages exactly. `--inflight N`
//! runs a closed loop ([`roles`]): a publisher never has more than N
//! messages published and not yet delivered, so a saturation figure
//! measures the broker, not how much the socket buffers hold.
//!
//! The run itself is in [`run`]; [`report`] prints it. Connection errors are
//! typed ([`error::BenchError`]); `anyhow` appears only in [`run_command`].

mod error;
mod link;
mod payload;
mod report;
mod roles;
mod run;
mod tracker;

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum, value_parser};
use tern_codec::ProtocolVersion;

use crate::connection::{check_credentials, parse_version};
use crate::tls::TlsArgs;

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Open --count connections at --conn-rate and hold them for --duration.
    Conn,
    /// --count publishers on --topic (%i is the publisher's index), no subscribers.
    Pub,
    /// --count subscribers of --topic, measuring what other processes publish.
    Sub,
    /// --count publisher/subscriber pairs, each pair on its own topic.
    Pairs,
    /// --count publishers, one subscriber of a wildcard covering them all.
    FanIn,
    /// One publisher, --count subscribers of its topic.
    FanOut,
}

impl Scenario {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Conn => "conn",
            Self::Pub => "pub",
            Self::Sub => "sub",
            Self::Pairs => "pairs",
            Self::FanIn => "fan-in",
            Self::FanOut => "fan-out",
        }
    }

    fn default_count(self) -> usize {
        match self {
            Self::Conn => 100,
            Self::Pub | Self::Sub => 1,
            Self::Pairs | Self::FanIn => 8,
            Self::FanOut => 16,
        }
    }
}

/// The flags of `tern bench`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    /// The scenario to run.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Broker host name or address.
    #[arg(short = 'h', long, default_value = "localhost")]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long, default_value_t = 1883)]
    pub port: u16,
    /// Publishers connect to this host instead of --host: another node of
    /// a cluster, to measure publish on node A -> subscriber on node B.
    #[arg(long, value_name = "HOST")]
    pub pub_host: Option<String>,
    /// Port of --pub-host [default: --port].
    #[arg(long, value_name = "PORT")]
    pub pub_port: Option<u16>,
    /// Seconds to wait between setting up the subscribers and publishing
    /// (in a cluster, subscriptions reach the other nodes within a heartbeat).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub settle: f64,
    /// MQTT version: 31, 311 or 5.
    #[arg(short = 'V', long = "protocol-version", value_name = "VERSION",
          default_value = "311", value_parser = parse_version)]
    pub version: ProtocolVersion,
    /// User name of every connection (a broker with a password file).
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password of every connection.
    #[arg(short = 'P', long)]
    pub password: Option<String>,
    /// TLS: --cafile (and --cert/--key for a broker that asks for a client
    /// certificate).
    #[command(flatten)]
    pub tls: TlsArgs,
    /// QoS of publishes and subscriptions: 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 28, the bench header).
    #[arg(short = 's', long, value_name = "BYTES", default_value_t = 64)]
    pub size: usize,
    /// Connections, publishers, subscribers or pairs, depending on the
    /// scenario [default: conn 100, pub/sub 1, pairs/fan-in 8, fan-out 16].
    #[arg(short = 'c', long)]
    pub count: Option<usize>,
    /// Messages per second per publisher; 0 or absent is unlimited.
    #[arg(short = 'r', long, value_name = "MSG/S")]
    pub rate: Option<f64>,
    /// Seconds to publish (or to hold connections).
    #[arg(short = 'd', long, value_name = "SECONDS", default_value_t = 10.0)]
    pub duration: f64,
    /// Stop each publisher after this many messages.
    #[arg(short = 'L', long, value_name = "N")]
    pub messages: Option<u64>,
    /// Closed loop: at most N messages per publisher published but not yet
    /// delivered (acknowledged, when the run has no subscriber).
    #[arg(long, value_name = "N", value_parser = value_parser!(u64).range(1..))]
    pub inflight: Option<u64>,
    /// Connections opened per second while setting up; 0 is unlimited.
    #[arg(long, value_name = "CONN/S", default_value_t = 0.0)]
    pub conn_rate: f64,
    /// Topic for `pub` (%i is the publisher index) or filter for `sub`
    /// [default: tern-bench/<run>/pub/%i, tern-bench/#].
    #[arg(short = 't', long)]
    pub topic: Option<String>,
    /// Local addresses to connect from, in turn (for example
    /// 127.0.0.1,127.0.0.2), to hold more connections than one address has
    /// ports [default: `conn` against 127.x with more than 10,000
    /// connections spreads them over 127.0.0.1, 127.0.0.2, ...].
    #[arg(long, value_name = "ADDRS", value_delimiter = ',')]
    pub source_addresses: Vec<IpAddr>,
    /// Keep alive in seconds.
    #[arg(
        short = 'k',
        long = "keepalive",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub keep_alive: u16,
    /// Seconds to wait for messages still on their way after publishing stops.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    pub drain: f64,
    /// Worker threads [default: the CPUs this process may use].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the result as JSON on standard output (the summary goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON result to this file.
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// No progress line each second.
    #[arg(long)]
    pub quiet: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
}

/// Runs `tern bench` on a multi-threaded runtime. Fails when the run could
/// not be set up, or when it measured a failure (lost QoS 1/2 messages,
/// QoS 2 duplicates, failed connections): the report is printed first.
pub fn run_command(args: BenchArgs) -> anyhow::Result<()> {
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    if args
        .rate
        .is_some_and(|rate| !rate.is_finite() || rate < 0.0)
    {
        bail!("--rate must be a non-negative number of messages per second");
    }
    check_credentials(
        args.version,
        args.username.as_deref(),
        args.password.as_deref(),
    )?;
    if args.inflight.is_some() && args.qos == 0 && args.scenario == Scenario::Pub {
        bail!(
            "--inflight needs subscribers or QoS 1/2 acknowledgments; `pub` at QoS 0 has neither"
        );
    }
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(2)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let report = runtime.block_on(run::execute(&args))?;
    let json = serde_json::to_string_pretty(&report).context("could not encode the result")?;
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    if args.json {
        eprint!("{}", report.summary());
        println!("{json}");
    } else {
        print!("{}", report.summary());
    }
    if let Some(failure) = report.failures.first() {
        bail!("the bench measured a failure: {failure}");
    }
    Ok(())
}
