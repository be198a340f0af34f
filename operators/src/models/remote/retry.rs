//! The retry policy of the client stack: which failures are retried and how long to wait.
//!
//! Owns the decision "retry or give up" and the backoff delay; [`super::stack`] runs the loop.
//! Nothing else in strata retries a model call (the AWS SDK's own retries are turned off).
//! Retried: throttling (HTTP 429, Bedrock `ThrottlingException`), server errors (5xx, model
//! not ready), timeouts and connection errors. Never retried: validation and access errors
//! (other 4xx) and responses that cannot be decoded.

use std::time::{Duration, SystemTime};

/// The most a `Retry-After` is honoured for; a longer one is waited for this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// `'retry.*'` options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `'retry.max_attempts'`: attempts in all, the first included (1 = no retries).
    pub max_attempts: u32,
    /// `'retry.base_ms'`: the backoff cap of the first retry.
    pub base: Duration,
    /// `'retry.max_ms'`: the backoff cap of any retry.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_millis(200),
            max: Duration::from_millis(20_000),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff (AWS architecture blog, "Exponential Backoff And
    /// Jitter"): a uniform delay in `[0, min(max, base * 2^(retry - 1))]`, where `retry` is 1
    /// for the first retry. A `Retry-After` from the server is a floor.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = retry.saturating_sub(1).min(31);
        let cap = self
            .base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max);
        let jitter = Duration::from_nanos(fastrand::u64(0..=cap.as_nanos() as u64));
        match retry_after {
            Some(after) => jitter.max(after.min(MAX_RETRY_AFTER)),
            None => jitter,
        }
    }
}

/// Parse a `Retry-After` header: delay-seconds or an HTTP date (RFC 9110 §10.2.3). Also
/// accepts fractional seconds, which some OpenAI-compatible servers send.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e6)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_grows() {
        let p = RetryPolicy {
            max_attempts: 8,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1_000),
        };
        for _ in 0..200 {
            assert!(p.delay(1, None) <= Duration::from_millis(100));
            assert!(p.delay(3, None) <= Duration::from_millis(400));
            assert!(p.delay(30, None) <= Duration::from_millis(1_000));
            assert!(p.delay(u32::MAX, None) <= Duration::from_millis(1_000));
        }
        // Full jitter spreads: not every draw is the same.
        let draws: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| p.delay(5, None)).collect();
        assert!(draws.len() > 1);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        for _ in 0..50 {
            assert!(p.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(100_000))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn parses_retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 0.5 ", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
