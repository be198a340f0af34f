//! The rate-limit layer of the client stack: requests and tokens per window, with `governor`.
//!
//! Owns the guarantee that an endpoint never sees more than `'limits.requests_per_minute'`
//! requests in any sliding 60-second window, retries included (every attempt passes here),
//! and that tokens stay within `'limits.tokens_per_minute'` up to the estimation error.
//! It must not retry, sleep for backoff or talk to the network: [`super::stack`] calls it
//! once per attempt.
//!
//! How the quotas are shaped. governor implements GCRA, a token bucket of `burst` cells that
//! refills one cell per `period`. Over any window of length `W` it allows at most
//! `burst + W / period` cells, so `Quota::per_minute(n)` (burst `n`) lets `2n` requests through
//! in a minute. Here:
//! - requests: burst 1, one cell per `W / n`: at most `n` requests in any window of length `W`
//!   (half-open), evenly spaced, and a sustained rate of exactly `n` per window;
//! - tokens: burst `B = max(1, t / 10)`, refilled at `(t - B)` per window: at most `t` reserved
//!   tokens in any window, sustained `0.9 t`. A call whose estimate exceeds `B` reserves `B`
//!   (it waits for a full bucket and then goes), so one oversized call can pass the limit by
//!   its excess over `B`.
//!
//! Reservations and settling. Before an attempt the caller reserves an estimate of its tokens
//! (see [`estimate_tokens`]); after it, [`RateLimiter::settle`] charges any excess of the
//! provider-reported usage over the estimate. governor cannot return cells, so an
//! over-estimate is not refunded: the limiter errs towards sending fewer tokens, never more.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, ReasonablyRealtime};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;

/// The window `'limits.*_per_minute'` options are counted over.
pub const MINUTE: Duration = Duration::from_secs(60);

/// Share of the token limit that may be spent at once (the bucket's burst): `1 / 10`.
const TOKEN_BURST_DIVISOR: u32 = 10;

/// What the limiter allows: at most `requests` requests and `tokens` tokens in any sliding
/// window of length `window`. `None` means unlimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// `'limits.requests_per_minute'`.
    pub requests: Option<NonZeroU32>,
    /// `'limits.tokens_per_minute'`.
    pub tokens: Option<NonZeroU32>,
    /// The sliding window: one minute for the options; tests shorten it.
    pub window: Duration,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests: None,
            tokens: None,
            window: MINUTE,
        }
    }
}

type Gcra<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The requests and tokens buckets of one model.
pub struct RateLimiter<C: Clock = DefaultClock> {
    config: RateLimitConfig,
    requests: Option<Gcra<C>>,
    tokens: Option<(Gcra<C>, NonZeroU32)>,
}

impl<C: Clock> std::fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .finish()
    }
}

impl RateLimiter<DefaultClock> {
    /// A limiter on the real clock.
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    /// A limiter on `clock` (governor's `FakeRelativeClock` in tests).
    pub fn with_clock(config: RateLimitConfig, clock: C) -> Self {
        let requests = config.requests.map(|n| {
            let quota = Quota::with_period(period(config.window, n.get()))
                .expect("period is at least 1 ns")
                .allow_burst(NonZeroU32::MIN);
            governor::RateLimiter::direct_with_clock(quota, clock.clone())
        });
        let tokens = config.tokens.map(|t| {
            let burst = NonZeroU32::new(t.get() / TOKEN_BURST_DIVISOR).unwrap_or(NonZeroU32::MIN);
            // Cells refilled per window: the limit less what the burst may spend at once.
            let refill = (t.get() - burst.get()).max(1);
            let quota = Quota::with_period(period(config.window, refill))
                .expect("period is at least 1 ns")
                .allow_burst(burst);
            (
                governor::RateLimiter::direct_with_clock(quota, clock.clone()),
                burst,
            )
        });
        Self {
            config,
            requests,
            tokens,
        }
    }

    /// The configuration.
    pub fn config(&self) -> RateLimitConfig {
        self.config
    }

    /// Take a request and `tokens` tokens now, or say how long until the first missing
    /// one could be had (nothing is taken then, except tokens when only the request is
    /// missing; see [`RateLimiter::acquire`] for the order). For clock-driven tests.
    pub fn try_acquire(&self, tokens: u64) -> Result<(), Duration> {
        if let Some((bucket, burst)) = &self.tokens {
            match bucket.check_n(token_cells(*burst, tokens)) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    return Err(not_until.wait_time_from(bucket_clock_now(bucket)))
                }
                Err(_) => unreachable!("token cells are capped at the burst"),
            }
        }
        if let Some(bucket) = &self.requests {
            if let Err(not_until) = bucket.check() {
                return Err(not_until.wait_time_from(bucket_clock_now(bucket)));
            }
        }
        Ok(())
    }
}

/// Cells to take from the tokens bucket for `tokens` tokens: at least 1, at most the burst.
fn token_cells(burst: NonZeroU32, tokens: u64) -> NonZeroU32 {
    let capped = tokens.min(u64::from(burst.get())) as u32;
    NonZeroU32::new(capped).unwrap_or(NonZeroU32::MIN)
}

/// `window / cells`, rounded up to the nanosecond (never down: `cells + 1` periods must not
/// fit in one window), and at least 1 ns.
fn period(window: Duration, cells: u32) -> Duration {
    let nanos = (window.as_nanos() as u64).div_ceil(u64::from(cells)).max(1);
    Duration::from_nanos(nanos)
}

fn bucket_clock_now<C: Clock>(bucket: &Gcra<C>) -> C::Instant {
    bucket.clock().now()
}

impl<C: ReasonablyRealtime> RateLimiter<C> {
    /// Wait until one request carrying `tokens` (estimated) tokens may go. Tokens are taken
    /// first and the request cell last, so the request cell is taken right before the send:
    /// the request bound holds at the endpoint, not only here.
    pub async fn acquire(&self, tokens: u64) {
        if let Some((bucket, burst)) = &self.tokens {
            // Cannot fail: the cells are capped at the burst.
            let _ = bucket.until_n_ready(token_cells(*burst, tokens)).await;
        }
        if let Some(bucket) = &self.requests {
            bucket.until_ready().await;
        }
    }

    /// After an attempt: charge what the provider reported beyond the `reserved` estimate.
    /// An over-estimate is not refunded (governor cannot return cells).
    pub async fn settle(&self, reserved: u64, actual: Option<u64>) {
        let (Some((bucket, burst)), Some(actual)) = (&self.tokens, actual) else {
            return;
        };
        let mut excess = actual.saturating_sub(reserved);
        while excess > 0 {
            let cells = token_cells(*burst, excess);
            let _ = bucket.until_n_ready(cells).await;
            excess -= u64::from(cells.get());
        }
    }
}

/// A conservative estimate of the tokens in `text`, for reservations: the larger of a local
/// count (word pieces: runs of up to four letters or digits, and every other non-space
/// character on its own, as BPE and WordPiece vocabularies split them at worst) and
/// `bytes / 3`. Both over-count common English (about 4 bytes a token), so the limiter
/// reserves more than the provider will report.
pub fn estimate_tokens(text: &str) -> u64 {
    let mut pieces = 0u64;
    let mut run = 0u32;
    for c in text.chars() {
        if c.is_alphanumeric() && c.is_ascii() {
            if run == 0 {
                pieces += 1;
            }
            run = (run + 1) % 4;
        } else {
            run = 0;
            if !c.is_whitespace() {
                pieces += 1;
            }
        }
    }
    pieces.max((text.len() as u64).div_ceil(3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    /// Drive the limiter with a fake clock, trying to send as often as it allows, and return
    /// the instants (since start) of the requests it let through.
    fn admitted(
        config: RateLimitConfig,
        step: Duration,
        run_for: Duration,
        tokens: u64,
    ) -> Vec<Duration> {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(config, clock.clone());
        let mut now = Duration::ZERO;
        let mut sent = Vec::new();
        while now < run_for {
            // Several callers at each instant: the limiter alone decides.
            for _ in 0..8 {
                if limiter.try_acquire(tokens).is_ok() {
                    sent.push(now);
                }
            }
            clock.advance(step);
            now += step;
        }
        sent
    }

    /// The largest number of entries of `at` (sorted) inside any half-open window `[t, t + w)`.
    fn max_in_window(at: &[Duration], w: Duration) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..at.len() {
            while at[hi] - at[lo] >= w {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn requests_never_exceed_the_limit_in_any_sliding_window() {
        for n in [1u32, 3, 7, 60, 500] {
            let config = RateLimitConfig {
                requests: NonZeroU32::new(n),
                tokens: None,
                window: MINUTE,
            };
            let sent = admitted(
                config,
                Duration::from_millis(10),
                Duration::from_secs(300),
                1,
            );
            assert!(
                max_in_window(&sent, MINUTE) <= n as usize,
                "n = {n}: {} requests in one minute",
                max_in_window(&sent, MINUTE)
            );
            // And the limit is used, not just respected: 5 minutes at n per minute.
            assert!(
                sent.len() >= 5 * n as usize,
                "n = {n}: only {} sent",
                sent.len()
            );
        }
    }

    #[test]
    fn governor_default_burst_would_allow_twice_the_limit() {
        // The reason the quota is not Quota::per_minute(n): pins the arithmetic above.
        let clock = FakeRelativeClock::default();
        let naive = governor::RateLimiter::direct_with_clock(
            Quota::per_minute(NonZeroU32::new(10).unwrap()),
            clock.clone(),
        );
        let mut sent = Vec::new();
        let mut now = Duration::ZERO;
        while now < Duration::from_secs(120) {
            while naive.check().is_ok() {
                sent.push(now);
            }
            clock.advance(Duration::from_millis(100));
            now += Duration::from_millis(100);
        }
        assert!(max_in_window(&sent, MINUTE) > 10);
    }

    #[test]
    fn tokens_never_exceed_the_limit_in_any_sliding_window() {
        let config = RateLimitConfig {
            requests: None,
            tokens: NonZeroU32::new(10_000),
            window: MINUTE,
        };
        let per_call = 700u64;
        let sent = admitted(
            config,
            Duration::from_millis(10),
            Duration::from_secs(300),
            per_call,
        );
        let calls = max_in_window(&sent, MINUTE) as u64;
        assert!(
            calls * per_call <= 10_000,
            "{} tokens in one minute",
            calls * per_call
        );
        // Sustained rate 0.9 of the limit: at least 4 full minutes' worth in 5 minutes.
        assert!(sent.len() as u64 * per_call >= 4 * 9_000 - per_call);
    }

    #[test]
    fn a_shorter_window_scales_the_same_bound() {
        let config = RateLimitConfig {
            requests: NonZeroU32::new(4),
            tokens: None,
            window: Duration::from_millis(400),
        };
        let sent = admitted(config, Duration::from_millis(1), Duration::from_secs(4), 1);
        assert!(max_in_window(&sent, Duration::from_millis(400)) <= 4);
        assert!(sent.len() >= 40);
    }

    #[test]
    fn estimates_are_conservative() {
        assert_eq!(estimate_tokens(""), 0);
        // 11 bytes -> 4 by bytes/3; "hello" = 2 pieces, "world" = 2 pieces.
        assert_eq!(estimate_tokens("hello world"), 4);
        // Punctuation counts on its own.
        assert_eq!(estimate_tokens("a,b,c,d,e,f"), 11);
        // Multi-byte text: bytes/3 dominates.
        assert_eq!(estimate_tokens("日本語のテキスト"), 8);
    }
}
