//! Bounded retries with exponential backoff, full jitter and `Retry-After`.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How many times, and how patiently, a call is repeated.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `attempt + 1` (attempts count from 1).
    ///
    /// A `Retry-After` from the cloud wins (capped at `max_delay`); otherwise
    /// full jitter over an exponentially growing window, with `unit` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_delay);
        }
        let window = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        window.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_within_its_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, None, 0.999_999).as_millis(), 499);
        assert_eq!(policy.delay(3, None, 0.5), Duration::from_secs(1));
        assert_eq!(policy.delay(20, None, 1.0), Duration::from_secs(30));
        assert_eq!(policy.delay(2, None, 0.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let policy = RetryPolicy::default();
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(7)), 0.1),
            Duration::from_secs(7)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600)), 0.1),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now: DateTime<Utc> = "2015-10-21T07:27:50Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
