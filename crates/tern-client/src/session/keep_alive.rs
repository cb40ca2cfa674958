//! Keep-alive: when to send PINGREQ, and when a missing PINGRESP means the
//! connection is dead. Time comes in as an argument; nothing here reads
//! the clock.

use std::time::{Duration, Instant};

/// What the keep-alive timer wants done at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum KeepAliveAction {
    /// Nothing is due.
    Nothing,
    /// The client has been silent for a whole interval: send PINGREQ.
    SendPing,
    /// The last PINGREQ was not answered in time.
    TimedOut,
}

/// The keep-alive timer of a connected session.
#[derive(Debug)]
pub(super) struct KeepAlive {
    /// The keep-alive interval in force; `None` when it is off.
    interval: Option<Duration>,
    /// How long to wait for PINGRESP; `None` waits one interval.
    ping_timeout: Option<Duration>,
    /// When the client last sent any packet.
    last_sent: Option<Instant>,
    /// When the unanswered PINGREQ was sent.
    ping_sent: Option<Instant>,
}

impl KeepAlive {
    pub(super) fn new(keep_alive_secs: u16, ping_timeout: Option<Duration>) -> Self {
        let mut timer = Self {
            interval: None,
            ping_timeout,
            last_sent: None,
            ping_sent: None,
        };
        timer.set_interval(keep_alive_secs);
        timer
    }

    /// Sets the interval in seconds (the server's keep alive may override
    /// the client's); 0 turns pings off.
    pub(super) fn set_interval(&mut self, secs: u16) {
        self.interval = (secs > 0).then(|| Duration::from_secs(u64::from(secs)));
    }

    pub(super) fn interval(&self) -> Option<Duration> {
        self.interval
    }

    /// Any packet written counts as a sign of life.
    pub(super) fn packet_sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
    }

    /// PINGRESP arrived.
    pub(super) fn pong(&mut self) {
        self.ping_sent = None;
    }

    /// When [`KeepAlive::poll`] next has something to do.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let interval = self.interval?;
        match self.ping_sent {
            Some(sent) => Some(sent + self.ping_timeout.unwrap_or(interval)),
            None => Some(self.last_sent? + interval),
        }
    }

    /// Checks the timer at `now`.
    pub(super) fn poll(&mut self, now: Instant) -> KeepAliveAction {
        let Some(deadline) = self.deadline() else {
            return KeepAliveAction::Nothing;
        };
        if now < deadline {
            return KeepAliveAction::Nothing;
        }
        if self.ping_sent.is_some() {
            return KeepAliveAction::TimedOut;
        }
        self.ping_sent = Some(now);
        KeepAliveAction::SendPing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_after_an_idle_interval_and_times_out_without_an_answer() {
        let start = Instant::now();
        let mut timer = KeepAlive::new(10, Some(Duration::from_secs(3)));
        timer.packet_sent(start);
        assert_eq!(timer.deadline(), Some(start + Duration::from_secs(10)));
        assert_eq!(
            timer.poll(start + Duration::from_secs(9)),
            KeepAliveAction::Nothing
        );
        let ping = start + Duration::from_secs(10);
        assert_eq!(timer.poll(ping), KeepAliveAction::SendPing);
        timer.packet_sent(ping);
        assert_eq!(timer.deadline(), Some(ping + Duration::from_secs(3)));
        assert_eq!(
            timer.poll(ping + Duration::from_secs(3)),
            KeepAliveAction::TimedOut
        );
    }

    #[test]
    fn an_answered_ping_rearms_the_interval_and_zero_turns_it_off() {
        let start = Instant::now();
        let mut timer = KeepAlive::new(5, None);
        timer.packet_sent(start);
        let ping = start + Duration::from_secs(5);
        assert_eq!(timer.poll(ping), KeepAliveAction::SendPing);
        timer.packet_sent(ping);
        // Without a ping timeout, the answer may take one interval.
        assert_eq!(timer.deadline(), Some(ping + Duration::from_secs(5)));
        timer.pong();
        assert_eq!(timer.deadline(), Some(ping + Duration::from_secs(5)));
        timer.set_interval(0);
        assert_eq!(timer.deadline(), None);
        assert_eq!(
            timer.poll(ping + Duration::from_secs(60)),
            KeepAliveAction::Nothing
        );
    }
}
