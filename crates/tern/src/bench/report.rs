//! The result of a run: a machine-readable [`Report`] (`--json`), its human
//! summary, and the progress line printed each second while a run goes on.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::{Duration, interval};

use super::roles::{Phase, Shared};

/// Latency percentiles of messages received, in microseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Latency {
    /// Messages measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Highest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// The percentiles of `histogram`.
    pub fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Latency::default();
        }
        Latency {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: (histogram.mean() * 10.0).round() / 10.0,
        }
    }
}

/// Everything a run measured.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    /// The scenario run.
    pub scenario: String,
    /// The broker's address.
    pub broker: String,
    /// MQTT version: "3.1.1" or "5".
    pub protocol: String,
    /// QoS of publishes and subscriptions.
    pub qos: u8,
    /// Payload size in bytes.
    pub size: usize,
    /// Publishing connections.
    pub publishers: usize,
    /// Subscribing connections (or idle ones for `conn`).
    pub subscribers: usize,
    /// Closed-loop window per publisher, if any.
    pub inflight: Option<u64>,
    /// Messages per second per publisher, if limited.
    pub rate: Option<f64>,
    /// Connections established.
    pub connections: u64,
    /// Connections established per second during set-up.
    pub connect_rate: f64,
    /// Seconds of publishing (or of holding connections).
    pub duration_s: f64,
    /// Messages published.
    pub sent: u64,
    /// Messages received by all subscribers.
    pub received: u64,
    /// Receipts expected: each message times the subscribers it should reach.
    pub expected: u64,
    /// Messages published per second over the publishing phase.
    pub sent_per_s: f64,
    /// Messages received per second over the publishing phase.
    pub received_per_s: f64,
    /// End-to-end latency.
    pub latency_us: Latency,
    /// Expected receipts that never came.
    pub lost: u64,
    /// Receipts of a message already received.
    pub duplicates: u64,
    /// Messages received after a later one of the same publisher.
    pub out_of_order: u64,
    /// QoS 1/2 publishes the broker acknowledged with a failure code.
    pub refused: u64,
    /// Closed-loop windows written off after a stall.
    pub stalls: u64,
    /// CPU seconds this bench process used per second of publishing (1.0 is
    /// one core busy): near the cores it may use, the bench was the limit.
    pub bench_cpu: f64,
    /// Connections that failed.
    pub errors: u64,
    /// The first few connection errors.
    pub error_samples: Vec<String>,
    /// Why the run counts as failed (empty when it passed).
    pub failures: Vec<String>,
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

impl Report {
    /// The summary printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let window = self.inflight.map_or("open loop".into(), |n| {
            format!("closed loop, {n} in flight")
        });
        let rate = self.rate.map_or("unlimited".into(), |r| {
            format!("{} msg/s each", thousands(r))
        });
        let _ = writeln!(
            out,
            "{} against {} (MQTT {}, QoS {}, {} B, {}, {})",
            self.scenario, self.broker, self.protocol, self.qos, self.size, rate, window
        );
        let roles = if self.scenario == "conn" {
            "idle".to_string()
        } else {
            format!(
                "{} publishers, {} subscribers",
                self.publishers, self.subscribers
            )
        };
        let _ = writeln!(
            out,
            "  connections  {} established ({roles}), {} conn/s, {} errors",
            self.connections,
            thousands(self.connect_rate),
            self.errors
        );
        if self.publishers > 0 || self.received > 0 {
            let _ = writeln!(
                out,
                "  throughput   {} msg/s sent, {} msg/s received over {:.1} s",
                thousands(self.sent_per_s),
                thousands(self.received_per_s),
                self.duration_s
            );
            let _ = writeln!(
                out,
                "  messages     {} sent, {} received of {} expected: {} lost, {} duplicates, {} out of order",
                self.sent,
                self.received,
                self.expected,
                self.lost,
                self.duplicates,
                self.out_of_order
            );
            let _ = writeln!(
                out,
                "  bench CPU    {:.0} % of one core while publishing",
                self.bench_cpu * 100.0
            );
            let l = &self.latency_us;
            if l.count > 0 {
                let _ = writeln!(
                    out,
                    "  latency      p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs (mean {:.0} µs)",
                    l.p50, l.p99, l.p999, l.max, l.mean
                );
            }
        } else {
            let _ = writeln!(out, "  held for     {:.1} s", self.duration_s);
        }
        if self.refused + self.stalls > 0 {
            let _ = writeln!(
                out,
                "  refused      {}; closed-loop stalls {}",
                self.refused, self.stalls
            );
        }
        for sample in &self.error_samples {
            let _ = writeln!(out, "  error        {sample}");
        }
        for failure in &self.failures {
            let _ = writeln!(out, "  FAILED       {failure}");
        }
        out
    }
}

/// CPU time (user and system) used by this process so far, in seconds, from
/// /proc (Linux; `None` elsewhere). The kernel reports it in units of 1/100 s.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Prints a progress line on stderr each second until the run is done.
pub async fn progress(shared: Arc<Shared>, mut phase: watch::Receiver<Phase>) {
    let start = Instant::now();
    let mut ticks = interval(Duration::from_secs(1));
    ticks.tick().await;
    let mut last = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = phase.wait_for(|phase| *phase == Phase::Done) => return,
        }
        let sent: u64 = shared
            .publishers
            .iter()
            .map(|cell| cell.sent.load(Ordering::Relaxed))
            .sum();
        let received = shared.received.load(Ordering::Relaxed);
        eprintln!(
            "[{:>4.0}s] {:?}: sent {} msg/s, received {} msg/s, {} connections, {} errors",
            start.elapsed().as_secs_f64(),
            *phase.borrow(),
            thousands((sent - last.0) as f64),
            thousands((received - last.1) as f64),
            shared.connected.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
        );
        last = (sent, received);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_numbers_get_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }

    #[test]
    fn the_json_names_the_measurements() {
        let report = Report {
            lost: 3,
            ..Report::default()
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["lost"], 3);
        assert!(json["latency_us"]["p999"].is_u64());
        assert!(json.get("received_per_s").is_some());
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let spent = process_cpu_seconds().unwrap();
        assert!(spent >= 0.0);
    }
}
