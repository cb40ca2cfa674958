//! Points in time and the MQTT 5 session expiry setting.
//!
//! Nothing in this crate reads a clock: callers pass `now` as a
//! [`Timestamp`], wall-clock milliseconds since the Unix epoch. Wall-clock
//! (not monotonic) time is used because expiry times are stored on disk and
//! must keep their meaning across restarts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The instant `millis` milliseconds after the Unix epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Converts a wall-clock time; times before the epoch become the epoch.
    /// The caller reads the clock (`SystemTime::now()`), never this crate.
    pub fn from_system_time(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        Self(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// `self` plus `seconds`, saturating at the end of time.
    pub const fn saturating_add_secs(self, seconds: u32) -> Self {
        Self(self.0.saturating_add(seconds as u64 * 1000))
    }

    /// `self` plus `duration`, saturating at the end of time.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later.
    pub const fn saturating_duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// How long a session outlives its connection (MQTT 5 §3.1.2.11.2).
///
/// MQTT 3.1.1's clean session maps to [`SessionExpiry::OnDisconnect`]
/// (clean) or [`SessionExpiry::Never`] (persistent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SessionExpiry {
    /// Interval 0: the session ends with the connection and is never stored.
    #[default]
    OnDisconnect,
    /// The session ends this many seconds after the connection closes.
    After(u32),
    /// Interval `u32::MAX`: the session never expires.
    Never,
}

impl SessionExpiry {
    /// Interprets the Session Expiry Interval property.
    pub const fn from_interval(seconds: u32) -> Self {
        match seconds {
            0 => Self::OnDisconnect,
            u32::MAX => Self::Never,
            seconds => Self::After(seconds),
        }
    }

    /// The Session Expiry Interval property value.
    pub const fn interval(self) -> u32 {
        match self {
            Self::OnDisconnect => 0,
            Self::After(seconds) => seconds,
            Self::Never => u32::MAX,
        }
    }

    /// True when the session outlives its connection and so is stored.
    pub const fn is_persistent(self) -> bool {
        !matches!(self, Self::OnDisconnect)
    }

    /// When a session whose connection closed at `disconnected_at` ends;
    /// `None` if it never does.
    pub const fn expires_at(self, disconnected_at: Timestamp) -> Option<Timestamp> {
        match self {
            Self::OnDisconnect => Some(disconnected_at),
            Self::After(seconds) => Some(disconnected_at.saturating_add_secs(seconds)),
            Self::Never => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_expiry_interval_boundaries() {
        assert_eq!(SessionExpiry::from_interval(0), SessionExpiry::OnDisconnect);
        assert_eq!(SessionExpiry::from_interval(u32::MAX), SessionExpiry::Never);
        assert_eq!(SessionExpiry::from_interval(30), SessionExpiry::After(30));
        for interval in [0, 1, 30, u32::MAX - 1, u32::MAX] {
            assert_eq!(SessionExpiry::from_interval(interval).interval(), interval);
        }
        let at = Timestamp::from_millis(1_000);
        assert_eq!(SessionExpiry::OnDisconnect.expires_at(at), Some(at));
        assert_eq!(
            SessionExpiry::After(2).expires_at(at),
            Some(Timestamp::from_millis(3_000))
        );
        assert_eq!(SessionExpiry::Never.expires_at(at), None);
    }

    #[test]
    fn timestamps_saturate() {
        let end = Timestamp::from_millis(u64::MAX - 5);
        assert_eq!(end.saturating_add_secs(1).as_millis(), u64::MAX);
        assert_eq!(
            Timestamp::from_millis(5).saturating_duration_since(Timestamp::from_millis(9)),
            Duration::ZERO
        );
        assert_eq!(Timestamp::from_system_time(UNIX_EPOCH).as_millis(), 0);
    }
}
