//! One run from start to end: plan the connections of the scenario, set
//! them up (subscribers first, so that nothing published is missed), start
//! publishing, stop after `--duration`, drain what is still on its way, and
//! add up what every task measured.
//!
//! Every task has one owner here: subscriber and publisher tasks live in a
//! `JoinSet`, watch the run's [`Phase`], and are joined before the report is
//! made.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context, anyhow};
use bytestring::ByteString;
use tern_client::ConnectOptions;
use tokio::net::lookup_host;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant, sleep, sleep_until};

use super::error::BenchError;
use super::link::Link;
use super::report::{Latency, Report, process_cpu_seconds, progress};
use super::roles::{
    Phase, PublisherCell, PublisherOutcome, PublisherPlan, Shared, SubscriberOutcome, publisher,
    subscriber,
};
use super::tracker::{Tracker, new_histogram};
use super::{BenchArgs, Scenario};
use crate::connection::qos;
use crate::tls::TlsClient;

/// Connections set up at once when `--conn-rate` is unlimited.
const SETUP_CONCURRENCY: usize = 64;
/// Error messages kept in the report.
const ERROR_SAMPLES: usize = 5;
/// Connections per source address when `conn` picks its own addresses:
/// below the 14,000 even ports of the default ephemeral range, which Linux
/// tries first for `connect()` (it scans them all before the odd ones).
const CONNECTIONS_PER_SOURCE: usize = 10_000;

/// Who connects, to what, and who expects whose messages.
struct Plan {
    /// One filter per subscriber (`None`: an idle connection).
    subscriptions: Vec<Option<String>>,
    /// One topic per publisher.
    topics: Vec<String>,
    /// Receipts per message (0: nobody in this run receives).
    receivers: u64,
}

impl Plan {
    fn new(args: &BenchArgs, run: u32) -> Plan {
        let count = args.count.unwrap_or(args.scenario.default_count());
        let base = format!("tern-bench/{run:08x}/{}", args.scenario.name());
        let numbered = |n: usize| (0..n).map(|i| format!("{base}/{i}")).collect::<Vec<_>>();
        let (subscriptions, topics, receivers) = match args.scenario {
            Scenario::Conn => (vec![None; count], Vec::new(), 0),
            Scenario::Pub => {
                let pattern = args.topic.clone().unwrap_or_else(|| format!("{base}/%i"));
                let topics = (0..count).map(|i| pattern.replace("%i", &i.to_string()));
                (Vec::new(), topics.collect(), 0)
            }
            Scenario::Sub => {
                let filter = args.topic.clone().unwrap_or_else(|| "tern-bench/#".into());
                (vec![Some(filter); count], Vec::new(), 0)
            }
            Scenario::Pairs => (
                numbered(count).into_iter().map(Some).collect(),
                numbered(count),
                1,
            ),
            Scenario::FanIn => (vec![Some(format!("{base}/+"))], numbered(count), 1),
            Scenario::FanOut => (vec![Some(base.clone()); count], vec![base], count as u64),
        };
        Plan {
            subscriptions,
            topics,
            receivers,
        }
    }

    /// The publishers whose messages subscriber `subscriber` should get.
    fn expected_publishers(&self, scenario: Scenario, subscriber: usize) -> Vec<usize> {
        match scenario {
            Scenario::Pairs => vec![subscriber],
            Scenario::FanIn | Scenario::FanOut => (0..self.topics.len()).collect(),
            Scenario::Conn | Scenario::Pub | Scenario::Sub => Vec::new(),
        }
    }
}

/// The addresses to connect from: `--source-addresses`, or, for `conn`
/// against a broker on an IPv4 loopback address, as many of 127.0.0.1,
/// 127.0.0.2, ... as keep [`CONNECTIONS_PER_SOURCE`] or fewer on each
/// (Linux routes all of 127.0.0.0/8 to the loopback interface). Empty: the
/// kernel chooses.
fn source_addresses(args: &BenchArgs, target: SocketAddr, connections: usize) -> Vec<IpAddr> {
    if !args.source_addresses.is_empty() {
        return args.source_addresses.clone();
    }
    let loopback_v4 = matches!(target.ip(), IpAddr::V4(ip) if ip.is_loopback());
    if args.scenario != Scenario::Conn || !loopback_v4 || connections <= CONNECTIONS_PER_SOURCE {
        return Vec::new();
    }
    // At most 127.0.0.254: 2.5 million connections.
    let count = connections.div_ceil(CONNECTIONS_PER_SOURCE).min(254) as u8;
    (1..=count)
        .map(|last| IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .collect()
}

/// A random-enough run id: the clock's nanoseconds mixed with the process id.
fn run_id() -> u32 {
    let nanos = super::payload::now_ns();
    let mixed = (nanos ^ (u64::from(std::process::id()) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 32) as u32
}

/// Opens the connections of one kind, `--conn-rate` per second or
/// [`SETUP_CONCURRENCY`] at a time, and subscribes each to its filter.
/// `kind` and `first` make client ids and source addresses distinct.
async fn connect_all(
    args: &BenchArgs,
    (target, sources, tls): (SocketAddr, &[IpAddr], Option<&TlsClient>),
    run: u32,
    filters: Vec<Option<String>>,
    (kind, first): (char, usize),
) -> Vec<Result<Link, BenchError>> {
    let run_qos = qos(args.qos);
    let started = Instant::now();
    let mut pending = JoinSet::new();
    let mut links: Vec<Option<Result<Link, BenchError>>> =
        (0..filters.len()).map(|_| None).collect();
    for (index, filter) in filters.into_iter().enumerate() {
        if args.conn_rate > 0.0 {
            sleep_until(started + Duration::from_secs_f64(index as f64 / args.conn_rate)).await;
        }
        while pending.len() >= SETUP_CONCURRENCY {
            if let Some(Ok((i, link))) = pending.join_next().await {
                links[i] = Some(link);
            }
        }
        let source = (!sources.is_empty())
            .then(|| SocketAddr::new(sources[(first + index) % sources.len()], 0));
        let client_id = format!("tb-{run:08x}-{kind}{index}");
        let mut options = ConnectOptions::new(args.version, client_id);
        options.keep_alive = args.keep_alive;
        options.username = args.username.as_deref().map(Into::into);
        options.password = args
            .password
            .as_ref()
            .map(|password| password.clone().into());
        let tls = tls.cloned();
        pending.spawn(async move {
            let result = async {
                let mut link = Link::connect(target, source, tls.as_ref(), options).await?;
                if let Some(filter) = filter {
                    link.subscribe(&filter, run_qos).await?;
                }
                Ok(link)
            }
            .await;
            (index, result)
        });
    }
    while let Some(joined) = pending.join_next().await {
        if let Ok((i, link)) = joined {
            links[i] = Some(link);
        }
    }
    links
        .into_iter()
        .map(|link| link.unwrap_or(Err(BenchError::Timeout("a set-up task"))))
        .collect()
}

/// Splits set-up results into the links and the errors.
fn sort_out(
    results: Vec<Result<Link, BenchError>>,
    errors: &mut Vec<String>,
) -> Vec<(usize, Link)> {
    let mut links = Vec::with_capacity(results.len());
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(link) => links.push((index, link)),
            Err(error) => errors.push(error.to_string()),
        }
    }
    links
}

fn sent_so_far(shared: &Shared) -> u64 {
    shared
        .publishers
        .iter()
        .map(|cell| cell.sent.load(Ordering::Relaxed))
        .sum()
}

/// Runs the scenario of `args` and measures it.
pub async fn execute(args: &BenchArgs) -> anyhow::Result<Report> {
    let address = format!("{}:{}", args.host, args.port);
    let target = lookup_host(&address)
        .await
        .with_context(|| format!("could not resolve {address}"))?
        .next()
        .ok_or_else(|| anyhow!("{address} resolves to no address"))?;
    let pub_address = format!(
        "{}:{}",
        args.pub_host.as_deref().unwrap_or(&args.host),
        args.pub_port.unwrap_or(args.port)
    );
    let pub_target = if pub_address == address {
        target
    } else {
        lookup_host(&pub_address)
            .await
            .with_context(|| format!("could not resolve {pub_address}"))?
            .next()
            .ok_or_else(|| anyhow!("{pub_address} resolves to no address"))?
    };
    let tls = args.tls.client(&args.host)?;
    let pub_tls = match &args.pub_host {
        Some(host) => args.tls.client(host)?,
        None => tls.clone(),
    };
    let run = run_id();
    let plan = Plan::new(args, run);
    let publishers = plan.topics.len();
    let shared = Arc::new(Shared {
        publishers: (0..publishers).map(|_| PublisherCell::default()).collect(),
        received: Default::default(),
        errors: Default::default(),
        connected: Default::default(),
        credit: args.inflight.is_some() && plan.receivers > 0,
    });
    let (phase_tx, phase) = watch::channel(Phase::Setup);
    let progress = (!args.quiet).then(|| tokio::spawn(progress(shared.clone(), phase.clone())));

    // Subscribers first, so that they miss nothing.
    let setup_started = Instant::now();
    let subscriptions = plan.subscriptions.clone();
    let sources = source_addresses(args, target, subscriptions.len() + publishers);
    let sub_links = connect_all(
        args,
        (target, &sources, tls.as_ref()),
        run,
        subscriptions,
        ('s', 0),
    )
    .await;
    if args.settle > 0.0 {
        sleep(Duration::from_secs_f64(args.settle)).await;
    }
    let no_filters = vec![None; publishers];
    let pub_links = connect_all(
        args,
        (pub_target, &sources, pub_tls.as_ref()),
        run,
        no_filters,
        ('p', sub_links.len()),
    )
    .await;
    let setup_time = (setup_started.elapsed().as_secs_f64() - args.settle.max(0.0)).max(0.0);
    let mut error_samples = Vec::new();
    let sub_links = sort_out(sub_links, &mut error_samples);
    let pub_links = sort_out(pub_links, &mut error_samples);
    let setup_errors = error_samples.len() as u64;
    shared.errors.fetch_add(setup_errors, Ordering::Relaxed);
    let connections = (sub_links.len() + pub_links.len()) as u64;
    shared.connected.fetch_add(connections, Ordering::Relaxed);
    if setup_errors > 0 && args.scenario != Scenario::Conn {
        phase_tx.send_replace(Phase::Done);
        return Err(anyhow!(
            "{setup_errors} of {} connections could not be set up against {address}; the first: {}",
            setup_errors + connections,
            error_samples[0]
        ));
    }

    let mut subscribers = JoinSet::new();
    for (index, link) in sub_links {
        let tracker = Tracker::new(run, publishers);
        let task = subscriber(link, tracker, shared.clone(), phase.clone());
        subscribers.spawn(async move { (index, task.await) });
    }
    let mut publishing = JoinSet::new();
    for (index, link) in pub_links {
        let plan = PublisherPlan {
            index: index as u32,
            run,
            topic: ByteString::from(plan.topics[index].as_str()),
            qos: qos(args.qos),
            size: args.size,
            rate: args.rate.filter(|rate| *rate > 0.0),
            limit: args.messages,
            inflight: args.inflight,
            receivers: plan.receivers,
        };
        let task = publisher(link, plan, shared.clone(), phase.clone());
        publishing.spawn(async move { (index, task.await) });
    }

    phase_tx.send_replace(Phase::Publishing);
    let cpu_at_start = process_cpu_seconds();
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(args.duration);
    let mut pub_outcomes: Vec<Option<PublisherOutcome>> = (0..publishers).map(|_| None).collect();
    while !(publishers > 0 && publishing.is_empty()) {
        tokio::select! {
            () = sleep_until(end) => break,
            Some(joined) = publishing.join_next(), if !publishing.is_empty() => {
                let (index, outcome) = joined.context("a publisher task failed")?;
                pub_outcomes[index] = Some(outcome);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sent_in_time = sent_so_far(&shared);
    let received_in_time = shared.received.load(Ordering::Relaxed);
    let bench_cpu = process_cpu_seconds()
        .zip(cpu_at_start)
        .map_or(0.0, |(end, start)| {
            ((end - start) / elapsed * 100.0).round() / 100.0
        });

    // Drain: wait for the messages still on their way and for the
    // publishers' last acknowledgments, until nothing moves for a second.
    phase_tx.send_replace(Phase::Draining);
    let drain_end = Instant::now() + Duration::from_secs_f64(args.drain.max(0.0));
    let mut last_move = (shared.received.load(Ordering::Relaxed), Instant::now());
    loop {
        let received = shared.received.load(Ordering::Relaxed);
        let all_in = received >= sent_so_far(&shared) * plan.receivers;
        if all_in && publishing.is_empty() {
            break;
        }
        let now = Instant::now();
        if received != last_move.0 {
            last_move = (received, now);
        }
        if now >= drain_end || (!all_in && now >= last_move.1 + Duration::from_secs(1)) {
            break;
        }
        tokio::select! {
            Some(joined) = publishing.join_next(), if !publishing.is_empty() => {
                let (index, outcome) = joined.context("a publisher task failed")?;
                pub_outcomes[index] = Some(outcome);
            }
            () = sleep(Duration::from_millis(10)) => {}
        }
    }
    phase_tx.send_replace(Phase::Done);
    while let Some(joined) = publishing.join_next().await {
        let (index, outcome) = joined.context("a publisher task failed")?;
        pub_outcomes[index] = Some(outcome);
    }
    let mut sub_outcomes = Vec::new();
    while let Some(joined) = subscribers.join_next().await {
        sub_outcomes.push(joined.context("a subscriber task failed")?);
    }
    if let Some(progress) = progress {
        let _ = progress.await;
    }

    let mut report = Report {
        scenario: args.scenario.name().into(),
        broker: address,
        protocol: if args.version.is_v5() { "5" } else { "3.1.1" }.into(),
        qos: args.qos,
        size: args.size.max(super::payload::HEADER_LEN),
        publishers,
        subscribers: plan.subscriptions.len(),
        inflight: args.inflight,
        rate: args.rate.filter(|rate| *rate > 0.0),
        connections,
        connect_rate: if setup_time > 0.0 {
            connections as f64 / setup_time
        } else {
            0.0
        },
        duration_s: (elapsed * 1000.0).round() / 1000.0,
        sent_per_s: (sent_in_time as f64 / elapsed).round(),
        received_per_s: (received_in_time as f64 / elapsed).round(),
        errors: shared.errors.load(Ordering::Relaxed),
        bench_cpu,
        ..Report::default()
    };
    add_up(
        &mut report,
        args.scenario,
        &plan,
        pub_outcomes,
        sub_outcomes,
        error_samples,
    );
    Ok(report)
}

/// Adds what the tasks measured to `report` and decides whether it failed.
fn add_up(
    report: &mut Report,
    scenario: Scenario,
    plan: &Plan,
    pub_outcomes: Vec<Option<PublisherOutcome>>,
    sub_outcomes: Vec<(usize, SubscriberOutcome)>,
    mut errors: Vec<String>,
) {
    let sent_by: Vec<u64> = pub_outcomes
        .iter()
        .map(|outcome| outcome.as_ref().map_or(0, |outcome| outcome.sent))
        .collect();
    for outcome in pub_outcomes.into_iter().flatten() {
        report.refused += outcome.refused;
        report.stalls += outcome.stalls;
        errors.extend(outcome.error.map(|error| format!("publisher: {error}")));
    }
    report.sent = sent_by.iter().sum();
    report.expected = report.sent * plan.receivers;
    let mut latency = new_histogram();
    for (index, outcome) in sub_outcomes {
        let tracker = &outcome.tracker;
        // Both histograms have the same bounds, so adding cannot fail.
        if let Some(histogram) = &tracker.latency {
            let _ = latency.add(histogram);
        }
        report.received += tracker.received;
        for stream in tracker.own.iter().chain(tracker.foreign.values()) {
            report.duplicates += stream.duplicates;
            report.out_of_order += stream.out_of_order;
        }
        for publisher in plan.expected_publishers(scenario, index) {
            report.lost += sent_by[publisher].saturating_sub(tracker.own[publisher].unique);
        }
        if scenario == Scenario::Sub {
            report.lost += tracker
                .foreign
                .values()
                .map(|stream| stream.gaps())
                .sum::<u64>();
        }
        errors.extend(outcome.error.map(|error| format!("subscriber: {error}")));
    }
    report.latency_us = Latency::of(&latency);
    report.errors = report.errors.max(errors.len() as u64);
    errors.truncate(ERROR_SAMPLES);
    report.error_samples = errors;

    let qos_name = ["QoS 0", "QoS 1", "QoS 2"][usize::from(report.qos.min(2))];
    if report.errors > 0 {
        report
            .failures
            .push(format!("{} connections failed", report.errors));
    }
    if report.qos > 0 && report.lost > 0 {
        report
            .failures
            .push(format!("{} messages lost at {qos_name}", report.lost));
    }
    if report.qos == 2 && report.duplicates > 0 {
        report
            .failures
            .push(format!("{} duplicates at QoS 2", report.duplicates));
    }
    let publishes = !matches!(scenario, Scenario::Conn | Scenario::Sub);
    if publishes && report.sent == 0 {
        report.failures.push("nothing was published".into());
    }
    if report.qos > 0 && report.refused > 0 {
        report
            .failures
            .push(format!("{} messages refused by the broker", report.refused));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn plan_of(line: &[&str]) -> (BenchArgs, Plan) {
        let args = Cli::try_parse_from(std::iter::once("bench").chain(line.iter().copied()))
            .unwrap()
            .args;
        let plan = Plan::new(&args, 0xabcd);
        (args, plan)
    }

    #[test]
    fn pairs_give_each_publisher_its_own_subscriber() {
        let (args, plan) = plan_of(&["pairs", "-c", "3"]);
        assert_eq!(plan.topics[2], "tern-bench/0000abcd/pairs/2");
        assert_eq!(
            plan.subscriptions[2].as_deref(),
            Some(plan.topics[2].as_str())
        );
        assert_eq!(plan.receivers, 1);
        assert_eq!(plan.expected_publishers(args.scenario, 1), [1]);
    }

    #[test]
    fn fan_in_has_one_wildcard_subscriber_and_fan_out_one_topic() {
        let (args, plan) = plan_of(&["fan-in"]);
        assert_eq!(plan.topics.len(), 8);
        assert_eq!(
            plan.subscriptions,
            [Some("tern-bench/0000abcd/fan-in/+".to_string())]
        );
        assert_eq!(plan.expected_publishers(args.scenario, 0).len(), 8);

        let (_, plan) = plan_of(&["fan-out", "-c", "4"]);
        assert_eq!(plan.topics, ["tern-bench/0000abcd/fan-out"]);
        assert_eq!(plan.subscriptions.len(), 4);
        assert_eq!(plan.receivers, 4);
    }

    #[test]
    fn conn_pub_and_sub_need_no_partner_in_the_run() {
        let (_, plan) = plan_of(&["conn", "-c", "5"]);
        assert_eq!((plan.subscriptions, plan.topics.len()), (vec![None; 5], 0));
        let (_, plan) = plan_of(&["pub", "-c", "2", "-t", "a/%i/b"]);
        assert_eq!(plan.topics, ["a/0/b", "a/1/b"]);
        assert_eq!(plan.receivers, 0);
        let (_, plan) = plan_of(&["sub"]);
        assert_eq!(plan.subscriptions, [Some("tern-bench/#".to_string())]);
    }

    #[test]
    fn conn_spreads_a_large_count_over_loopback_addresses() {
        let loopback: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        let (args, _) = plan_of(&["conn", "-c", "19000"]);
        let sources = source_addresses(&args, loopback, 19_000);
        assert_eq!(sources.len(), 2);
        assert_eq!(sources[1].to_string(), "127.0.0.2");
        // Few connections, another scenario or a remote broker: the kernel chooses.
        assert!(source_addresses(&args, loopback, 5_000).is_empty());
        assert!(source_addresses(&args, "10.0.0.1:1883".parse().unwrap(), 19_000).is_empty());
        let (pairs, _) = plan_of(&["pairs", "-c", "19000"]);
        assert!(source_addresses(&pairs, loopback, 38_000).is_empty());
        // Addresses given on the command line win.
        let (given, _) = plan_of(&["conn", "-c", "19000", "--source-addresses", "127.0.0.9"]);
        assert_eq!(source_addresses(&given, loopback, 19_000).len(), 1);
    }

    #[test]
    fn emqtt_bench_style_flags_parse() {
        let (args, _) = plan_of(&[
            "pairs",
            "-h",
            "127.0.0.1",
            "-p",
            "1884",
            "-V",
            "5",
            "-q",
            "2",
            "-s",
            "256",
            "-r",
            "100",
            "-d",
            "1.5",
            "--inflight",
            "10",
            "--source-addresses",
            "127.0.0.1,127.0.0.2",
            "--json",
        ]);
        assert!(args.version.is_v5());
        assert_eq!((args.qos, args.size, args.inflight), (2, 256, Some(10)));
        assert_eq!((args.rate, args.duration), (Some(100.0), 1.5));
        assert_eq!(args.source_addresses.len(), 2);
        assert!(args.json);
    }
}
