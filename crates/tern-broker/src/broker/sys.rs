//! The `$SYS/broker/...` topics, under Mosquitto's names: published as
//! retained QoS 0 messages every `sys_interval` seconds, and never stored
//! (a restart rebuilds them).

use std::sync::Arc;
use std::time::Duration;

use tern_codec::Publish;
use tern_session::Message;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{Broker, stopped, wall_clock};

impl Broker {
    /// Every `$SYS` topic with its current value.
    pub(crate) fn sys_values(&self) -> Vec<(&'static str, String)> {
        let metrics = self.metrics.snapshot();
        let retained = self.retained.read().map_or(0, |index| index.len());
        let count = |value: u64| value.to_string();
        vec![
            (
                "$SYS/broker/version",
                format!("tern version {}", env!("CARGO_PKG_VERSION")),
            ),
            (
                "$SYS/broker/uptime",
                format!("{} seconds", self.started.elapsed().as_secs()),
            ),
            (
                "$SYS/broker/clients/connected",
                count(metrics.clients_connected),
            ),
            (
                "$SYS/broker/messages/received",
                count(metrics.messages_received),
            ),
            ("$SYS/broker/messages/sent", count(metrics.messages_sent)),
            ("$SYS/broker/bytes/received", count(metrics.bytes_received)),
            ("$SYS/broker/bytes/sent", count(metrics.bytes_sent)),
            (
                "$SYS/broker/publish/messages/dropped",
                count(metrics.dropped()),
            ),
            (
                "$SYS/broker/subscriptions/count",
                count(self.router.len() as u64),
            ),
            (
                "$SYS/broker/retained messages/count",
                count(retained as u64),
            ),
            ("$SYS/broker/denied/connect", count(metrics.connect_denied)),
            ("$SYS/broker/denied/publish", count(metrics.publish_denied)),
            (
                "$SYS/broker/denied/subscribe",
                count(metrics.subscribe_denied),
            ),
            ("$SYS/broker/denied/read", count(metrics.read_denied)),
            ("$SYS/broker/denied/limits", count(metrics.limits_exceeded)),
            (
                "$SYS/broker/connections/rate_limited",
                count(metrics.connections_rate_limited),
            ),
            (
                "$SYS/broker/connections/parked",
                count(metrics.connections_parked),
            ),
        ]
    }

    /// Publishes every `$SYS` topic once.
    pub(crate) fn publish_sys(&self) {
        let now = wall_clock();
        for (topic, value) in self.sys_values() {
            let mut publish = Publish::new(topic, value);
            publish.retain = true;
            for pending in self.route(Message::new(publish, now), None, now).pendings {
                self.track_write(pending);
            }
        }
    }
}

/// The `$SYS` task: publishes every `interval` until shutdown.
pub(crate) async fn sys_task(
    broker: Arc<Broker>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            _ = ticker.tick() => broker.publish_sys(),
        }
    }
}
