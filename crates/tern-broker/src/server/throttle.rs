//! [`TokenBucket`]: a rate with bursts of one second's worth, for
//! `max_message_rate`, `max_bytes_rate` (per connection, through
//! [`Throttle`]) and `max_connection_rate` (per broker). Time is an
//! argument.
//!
//! Why per-client rates throttle instead of refusing: a client beyond its
//! rate has its socket left unread until it is within the rate again, so
//! TCP flow control slows it down. Nothing is lost, MQTT 3.1.1 clients
//! (which have no reason code for it) are treated like MQTT 5 ones, and a
//! client with a short burst is not disconnected. Refusing (PUBACK 0x96,
//! or DISCONNECT 0x96) would make well-behaved clients retry and lose QoS 0
//! messages. The connection rate instead refuses: a socket beyond it is
//! closed before anything is read, which is what a flood should cost.

use std::time::{Duration, Instant};

/// Tokens refill at `rate` per second up to one second's worth; see the
/// module docs.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens per second (`rate` > 0).
    pub(crate) fn new(rate: u32, now: Instant) -> Self {
        debug_assert!(rate > 0, "a rate of 0 means no bucket");
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
    }

    /// Takes `amount` tokens, going into debt if needed; returns how long
    /// to pause until the debt is paid (zero when there is none).
    pub(crate) fn take(&mut self, amount: u64, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= amount as f64;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.tokens / self.rate)
    }

    /// Takes one token if there is one.
    pub(crate) fn try_take_one(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// The reading pause of one connection under `max_message_rate` and
/// `max_bytes_rate`: the connection counts what it reads and decodes, and
/// neither reads nor decodes before [`Throttle::paused_until`].
#[derive(Debug)]
pub(crate) struct Throttle {
    // Boxed: most connections have no rate limit, and every idle
    // connection's task holds this inline (see `connection`).
    messages: Option<Box<TokenBucket>>,
    bytes: Option<Box<TokenBucket>>,
    until: Option<Instant>,
}

impl Throttle {
    /// Rates of 0 are not limited.
    pub(crate) fn new(max_message_rate: u32, max_bytes_rate: u32, now: Instant) -> Self {
        let bucket = |rate: u32| (rate > 0).then(|| Box::new(TokenBucket::new(rate, now)));
        Self {
            messages: bucket(max_message_rate),
            bytes: bucket(max_bytes_rate),
            until: None,
        }
    }

    /// `bytes` were read from the socket.
    pub(crate) fn read(&mut self, bytes: usize, now: Instant) {
        if let Some(bucket) = &mut self.bytes {
            let pause = bucket.take(bytes as u64, now);
            self.pause(pause, now);
        }
    }

    /// A PUBLISH was decoded.
    pub(crate) fn publish(&mut self, now: Instant) {
        if let Some(bucket) = &mut self.messages {
            let pause = bucket.take(1, now);
            self.pause(pause, now);
        }
    }

    /// No rate is limited (and so nothing is paused).
    pub(crate) fn is_unlimited(&self) -> bool {
        self.messages.is_none() && self.bytes.is_none() && self.until.is_none()
    }

    /// Until when nothing is read or decoded, if paused.
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.until
    }

    /// The pause is over.
    pub(crate) fn resume(&mut self) {
        self.until = None;
    }

    fn pause(&mut self, pause: Duration, now: Instant) {
        if pause.is_zero() {
            return;
        }
        let until = now + pause;
        if self.until.is_none_or(|current| current < until) {
            tracing::debug!(?pause, "throttled");
            self.until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_pauses_for_the_longer_debt() {
        let start = Instant::now();
        let mut off = Throttle::new(0, 0, start);
        for _ in 0..1000 {
            off.publish(start);
            off.read(1 << 20, start);
        }
        assert_eq!(off.paused_until(), None, "0 means no limit");
        let mut throttle = Throttle::new(2, 1024, start);
        throttle.publish(start);
        throttle.publish(start);
        assert_eq!(throttle.paused_until(), None, "the burst passes");
        throttle.publish(start);
        assert_eq!(
            throttle.paused_until(),
            Some(start + Duration::from_millis(500))
        );
        throttle.read(3072, start);
        assert_eq!(
            throttle.paused_until(),
            Some(start + Duration::from_secs(2))
        );
        throttle.resume();
        assert_eq!(throttle.paused_until(), None);
    }

    #[test]
    fn bursts_of_one_second_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        for _ in 0..10 {
            assert_eq!(bucket.take(1, start), Duration::ZERO);
        }
        assert_eq!(bucket.take(1, start), Duration::from_millis(100));
        // 300 ms later 3 tokens came back, one of them paid the debt.
        let later = start + Duration::from_millis(300);
        assert_eq!(bucket.take(2, later), Duration::ZERO);
        assert!(bucket.take(1, later) > Duration::ZERO);
        // Idle time refills at most one second's worth.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(bucket.take(10, much_later), Duration::ZERO);
        assert!(bucket.take(1, much_later) > Duration::ZERO);
    }

    #[test]
    fn try_take_refuses_when_empty() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2, start);
        assert!(bucket.try_take_one(start));
        assert!(bucket.try_take_one(start));
        assert!(!bucket.try_take_one(start));
        assert!(bucket.try_take_one(start + Duration::from_millis(500)));
    }
}
