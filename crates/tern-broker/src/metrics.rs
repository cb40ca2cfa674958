//! Counters of the whole broker: messages and bytes in and out, connected
//! clients, and messages dropped by reason. Connection tasks and routing
//! add to them with relaxed atomics; `$SYS` and [`crate::Server::metrics`]
//! read them.

use std::sync::atomic::{AtomicU64, Ordering};

use tern_session::DropCounters;

use crate::protocol::Denial;

/// The broker's counters; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub clients_connected: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_expired: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub connections_refused: AtomicU64,
    pub messages_forwarded: AtomicU64,
    pub messages_from_peers: AtomicU64,
    pub connections_rate_limited: AtomicU64,
    pub connect_denied: AtomicU64,
    pub publish_denied: AtomicU64,
    pub subscribe_denied: AtomicU64,
    pub read_denied: AtomicU64,
    pub limits_exceeded: AtomicU64,
    /// Connections parked now (`server::parking`).
    pub connections_parked: AtomicU64,
}

/// Adds `amount` to `counter`.
pub(crate) fn add(counter: &AtomicU64, amount: u64) {
    if amount > 0 {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Records how many connections are parked now.
    pub(crate) fn set_parked(&self, parked: usize) {
        self.connections_parked
            .store(parked as u64, Ordering::Relaxed);
    }

    /// Counts the drops a session made between two readings of its
    /// counters.
    pub(crate) fn count_drops(&self, before: DropCounters, after: DropCounters) {
        let queue_full = (after.queue_full_qos0 + after.queue_full_oldest)
            .saturating_sub(before.queue_full_qos0 + before.queue_full_oldest);
        add(&self.dropped_queue_full, queue_full);
        add(
            &self.dropped_expired,
            after.expired.saturating_sub(before.expired),
        );
        add(
            &self.dropped_too_large,
            after
                .packet_too_large
                .saturating_sub(before.packet_too_large),
        );
        add(
            &self.read_denied,
            after.not_authorized.saturating_sub(before.not_authorized),
        );
    }

    /// Counts one refusal by authentication, the ACL or a limit.
    pub(crate) fn count_denial(&self, denial: Denial) {
        let counter = match denial {
            Denial::Connect | Denial::Will => &self.connect_denied,
            Denial::Publish => &self.publish_denied,
            Denial::Subscribe => &self.subscribe_denied,
            Denial::Limit => &self.limits_exceeded,
        };
        add(counter, 1);
    }

    /// One client more (`true`) or less (`false`) is connected.
    pub(crate) fn client_connected(&self, connected: bool) {
        if connected {
            self.clients_connected.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self.clients_connected.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |count| Some(count.saturating_sub(1)),
            );
        }
    }

    /// A consistent-enough copy for reporting.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        MetricsSnapshot {
            messages_received: read(&self.messages_received),
            messages_sent: read(&self.messages_sent),
            bytes_received: read(&self.bytes_received),
            bytes_sent: read(&self.bytes_sent),
            clients_connected: read(&self.clients_connected),
            dropped_queue_full: read(&self.dropped_queue_full),
            dropped_expired: read(&self.dropped_expired),
            dropped_too_large: read(&self.dropped_too_large),
            connections_refused: read(&self.connections_refused),
            messages_forwarded: read(&self.messages_forwarded),
            messages_from_peers: read(&self.messages_from_peers),
            connections_rate_limited: read(&self.connections_rate_limited),
            connect_denied: read(&self.connect_denied),
            publish_denied: read(&self.publish_denied),
            subscribe_denied: read(&self.subscribe_denied),
            read_denied: read(&self.read_denied),
            limits_exceeded: read(&self.limits_exceeded),
            connections_parked: read(&self.connections_parked),
        }
    }
}

/// The broker's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsSnapshot {
    /// PUBLISH packets received from clients.
    pub messages_received: u64,
    /// PUBLISH packets sent to clients.
    pub messages_sent: u64,
    /// Bytes read from client sockets.
    pub bytes_received: u64,
    /// Bytes written to client sockets.
    pub bytes_sent: u64,
    /// Clients connected now.
    pub clients_connected: u64,
    /// Messages dropped because a client's queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped because they expired before delivery.
    pub dropped_expired: u64,
    /// Messages dropped because they exceeded a client's Maximum Packet Size.
    pub dropped_too_large: u64,
    /// Connections closed at once because `max_connections` were open.
    pub connections_refused: u64,
    /// Messages sent to other nodes of the cluster (once per node).
    pub messages_forwarded: u64,
    /// Messages received from other nodes of the cluster.
    pub messages_from_peers: u64,
    /// Connections closed at once because `max_connection_rate` was reached.
    pub connections_rate_limited: u64,
    /// CONNECTs refused by authentication (bad credentials, anonymous,
    /// failed enhanced authentication) or a will the ACL forbids.
    pub connect_denied: u64,
    /// PUBLISH packets the ACL did not allow (not routed).
    pub publish_denied: u64,
    /// Subscriptions the ACL did not allow.
    pub subscribe_denied: u64,
    /// Deliveries withheld because the subscriber may not read the topic.
    pub read_denied: u64,
    /// Client identifiers, topics and subscriptions refused by a limit.
    pub limits_exceeded: u64,
    /// Idle connections parked now (`park_idle_after_ms`): they wait
    /// without a task of their own.
    pub connections_parked: u64,
}

impl MetricsSnapshot {
    /// Every message dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_expired + self.dropped_too_large
    }
}
