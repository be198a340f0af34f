//! The client stack every remote model call goes through: rate limit -> retry -> provider.
//!
//! Owns the attempt loop: for each attempt, reserve with the [`RateLimiter`], send through
//! the [`Provider`], settle the reservation against the reported usage, tell the
//! [`AttemptObserver`], record metrics and a span, then retry or give up per the
//! [`RetryPolicy`]. It is generic over the request, so embeddings and chat share it.
//!
//! It must not know any provider's wire format (that is the [`Provider`]'s job), and no
//! provider may retry on its own: this loop is the only place that does.
//!
//! Telemetry per attempt: the `model_attempt` span; counters
//! `strata_model_requests_total{model,provider,status}`,
//! `strata_model_tokens_total{model,kind}` (`kind` = `input`/`output`, as the provider
//! reported them); histograms `strata_model_latency_seconds{model}` and
//! `strata_model_rate_limit_wait_seconds{model}`.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tracing::Instrument;

use super::limits::{RateLimitConfig, RateLimiter};
use super::retry::RetryPolicy;
use crate::error::{OperatorError, Result};
use crate::models::ModelOptions;

/// Token counts a provider reported for one attempt. `None`: not reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Input (prompt) tokens.
    pub input_tokens: Option<u64>,
    /// Output (completion) tokens.
    pub output_tokens: Option<u64>,
    /// Input tokens read from the provider's prompt cache.
    pub cache_read_tokens: Option<u64>,
    /// Input tokens written to the provider's prompt cache.
    pub cache_write_tokens: Option<u64>,
}

impl TokenUsage {
    /// Every token the provider counted, when it counted any.
    pub fn total(&self) -> Option<u64> {
        let parts = [
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
        ];
        parts
            .iter()
            .any(Option::is_some)
            .then(|| parts.iter().flatten().sum())
    }
}

/// A successful attempt: the provider's answer and what it reported using.
#[derive(Clone, Debug)]
pub struct Reply<T> {
    /// The decoded answer.
    pub value: T,
    /// Tokens as reported by the provider.
    pub usage: TokenUsage,
}

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// HTTP 429, Bedrock `ThrottlingException` / `ServiceQuotaExceededException`: retried,
    /// honouring `Retry-After`.
    Throttled,
    /// HTTP 5xx, model not ready, model timeout: retried.
    Server,
    /// The attempt timed out (`timeout_ms`): retried.
    Timeout,
    /// Connection refused/reset, DNS, TLS: retried.
    Connect,
    /// Validation, authentication, access, not found (other 4xx): not retried.
    Client,
    /// The response could not be decoded or has the wrong shape: not retried.
    BadResponse,
}

impl ErrorKind {
    /// Whether the retry layer tries again.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Server | ErrorKind::Timeout | ErrorKind::Connect
        )
    }

    /// The `status` label of metrics and attempt records.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Server => "server_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect_error",
            ErrorKind::Client => "client_error",
            ErrorKind::BadResponse => "bad_response",
        }
    }
}

/// A failed attempt, classified by the provider. The message never holds credentials.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// Retry class.
    pub kind: ErrorKind,
    /// HTTP status, when a response came back.
    pub status: Option<u16>,
    /// The provider's error code (`ThrottlingException`, `invalid_request_error`, ...).
    pub code: Option<String>,
    /// What happened, for the user.
    pub message: String,
    /// The server's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl CallError {
    /// An error of `kind` with `message` and nothing else.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: None,
            code: None,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// One remote API, one attempt at a time. Implementations classify failures into
/// [`CallError`]s and never retry.
#[async_trait]
pub trait Provider: Send + Sync + fmt::Debug + 'static {
    /// A prepared request (serialized once, sent by every attempt).
    type Request: Send + Sync;
    /// The decoded answer.
    type Response: Send;
    /// Where calls go, for errors and spans: a URL, or the Bedrock model and region.
    /// Never holds credentials.
    fn target(&self) -> &str;
    /// Send one attempt.
    async fn send(&self, request: &Self::Request) -> Result<Reply<Self::Response>, CallError>;
}

/// Identifies a model in errors, metrics, spans and attempt records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelIdentity {
    /// The alias of `CREATE MODEL <name>`.
    pub name: String,
    /// `provider = '...'`.
    pub provider: &'static str,
    /// The provider's model id.
    pub model_id: String,
}

/// How an attempt ended, in an [`AttemptRecord`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptStatus {
    /// The provider answered.
    Ok,
    /// It failed.
    Error(ErrorKind),
}

impl AttemptStatus {
    /// `ok` or the [`ErrorKind`] label.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptStatus::Ok => "ok",
            AttemptStatus::Error(kind) => kind.as_str(),
        }
    }
}

/// What the stack tells its [`AttemptObserver`] after every attempt, failed or not.
#[derive(Clone, Debug)]
pub struct AttemptRecord<'a> {
    /// The model.
    pub model: &'a ModelIdentity,
    /// 1 for the first attempt of a call.
    pub attempt: u32,
    /// When the request was sent (after the rate limiter let it go).
    pub started_at: SystemTime,
    /// How it ended.
    pub status: AttemptStatus,
    /// HTTP status of a failed attempt, when a response came back.
    pub http_status: Option<u16>,
    /// The provider's error code, on failure.
    pub error_code: Option<&'a str>,
    /// From send to answer.
    pub latency: Duration,
    /// Tokens the provider reported; all `None` on failure (never an estimate).
    pub usage: TokenUsage,
}

/// Receives every attempt: the hook the usage table is built on.
pub trait AttemptObserver: Send + Sync + fmt::Debug {
    /// Called once per attempt, from the task that made it.
    fn on_attempt(&self, record: &AttemptRecord<'_>);
}

/// The layers' settings: `'limits.*'` and `'retry.*'` options, and the observer.
#[derive(Clone, Debug, Default)]
pub struct StackConfig {
    /// Rate limits.
    pub limits: RateLimitConfig,
    /// Retries.
    pub retry: RetryPolicy,
    /// Told of every attempt.
    pub observer: Option<Arc<dyn AttemptObserver>>,
}

impl StackConfig {
    /// Take `'limits.requests_per_minute'`, `'limits.tokens_per_minute'`,
    /// `'retry.max_attempts'`, `'retry.base_ms'` and `'retry.max_ms'` from `opts`; every
    /// attempt is told to `observer` (the usage log), if any.
    pub fn from_options(
        opts: &mut ModelOptions,
        observer: Option<Arc<dyn AttemptObserver>>,
    ) -> Result<Self> {
        let per_minute = |opts: &mut ModelOptions, key: &str| -> Result<Option<NonZeroU32>> {
            match opts.take_positive(key)? {
                None => Ok(None),
                Some(n) => u32::try_from(n)
                    .ok()
                    .and_then(NonZeroU32::new)
                    .map(Some)
                    .ok_or_else(|| {
                        opts.error(key, format!("must be at most {}, got {n}", u32::MAX))
                    }),
            }
        };
        let limits = RateLimitConfig {
            requests: per_minute(opts, "limits.requests_per_minute")?,
            tokens: per_minute(opts, "limits.tokens_per_minute")?,
            ..RateLimitConfig::default()
        };
        let defaults = RetryPolicy::default();
        let max_attempts = match opts.take_positive("retry.max_attempts")? {
            None => defaults.max_attempts,
            Some(n) if n <= 100 => n as u32,
            Some(n) => {
                return Err(opts.error("retry.max_attempts", format!("must be 1 to 100, got {n}")))
            }
        };
        let base = match opts.take_parsed::<u64>("retry.base_ms", "milliseconds (an integer)")? {
            None => defaults.base,
            Some(ms) => Duration::from_millis(ms),
        };
        let max = match opts.take_parsed::<u64>("retry.max_ms", "milliseconds (an integer)")? {
            None => defaults.max.max(base),
            Some(ms) => Duration::from_millis(ms),
        };
        if max < base {
            return Err(opts.error(
                "retry.max_ms",
                format!(
                    "must be at least retry.base_ms ({} ms), got {} ms",
                    base.as_millis(),
                    max.as_millis()
                ),
            ));
        }
        Ok(Self {
            limits,
            retry: RetryPolicy {
                max_attempts,
                base,
                max,
            },
            observer,
        })
    }
}

/// Rate limit -> retry -> provider, for one model. Built once per model; share it with `Arc`.
#[derive(Debug)]
pub struct ClientStack<P: Provider> {
    identity: ModelIdentity,
    provider: P,
    limiter: RateLimiter,
    retry: RetryPolicy,
    observer: Option<Arc<dyn AttemptObserver>>,
}

impl<P: Provider> ClientStack<P> {
    /// Wrap `provider` in the layers `config` describes.
    pub fn new(identity: ModelIdentity, provider: P, config: StackConfig) -> Self {
        Self {
            identity,
            provider,
            limiter: RateLimiter::new(config.limits),
            retry: config.retry,
            observer: config.observer,
        }
    }

    /// The model this stack serves.
    pub fn identity(&self) -> &ModelIdentity {
        &self.identity
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// Make one call: as many attempts as the retry policy allows, each one rate-limited.
    /// `estimated_tokens` is reserved against `'limits.tokens_per_minute'` per attempt (for
    /// chat: input estimate + max_tokens; see [`super::limits::estimate_tokens`]).
    pub async fn call(
        &self,
        request: &P::Request,
        estimated_tokens: u64,
    ) -> Result<Reply<P::Response>> {
        let model = self.identity.name.as_str();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let waited = Instant::now();
            self.limiter.acquire(estimated_tokens).await;
            metrics::histogram!("strata_model_rate_limit_wait_seconds", "model" => model.to_string())
                .record(waited.elapsed().as_secs_f64());

            let span = tracing::debug_span!(
                "model_attempt",
                model,
                provider = self.identity.provider,
                target = self.provider.target(),
                attempt,
            );
            let started_at = SystemTime::now();
            let started = Instant::now();
            let outcome = self.provider.send(request).instrument(span).await;
            let latency = started.elapsed();

            let (status, http_status, usage) = match &outcome {
                Ok(reply) => (AttemptStatus::Ok, None, reply.usage),
                Err(e) => (
                    AttemptStatus::Error(e.kind),
                    e.status,
                    TokenUsage::default(),
                ),
            };
            self.limiter.settle(estimated_tokens, usage.total()).await;
            self.record(
                attempt,
                started_at,
                status,
                http_status,
                &outcome,
                latency,
                usage,
            );

            let error = match outcome {
                Ok(reply) => return Ok(reply),
                Err(error) => error,
            };
            if !error.kind.is_retryable() {
                return Err(self.give_up(attempt, &error, "not retried"));
            }
            if attempt >= self.retry.max_attempts {
                let hint = match error.kind {
                    ErrorKind::Connect => "check that the endpoint is up and reachable from here",
                    ErrorKind::Timeout => "raise timeout_ms or retry.max_attempts",
                    ErrorKind::Throttled => {
                        "lower 'limits.requests_per_minute' / 'limits.tokens_per_minute' \
                         or raise retry.max_attempts"
                    }
                    _ => "the endpoint kept failing: raise retry.max_attempts or try later",
                };
                return Err(self.give_up(
                    attempt,
                    &error,
                    &format!(
                        "retries exhausted (retry.max_attempts = {}); {hint}",
                        self.retry.max_attempts
                    ),
                ));
            }
            let delay = self.retry.delay(attempt, error.retry_after);
            tracing::debug!(
                model,
                attempt,
                status = error.kind.as_str(),
                delay_ms = delay.as_millis() as u64,
                error = %error,
                "model call failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        attempt: u32,
        started_at: SystemTime,
        status: AttemptStatus,
        http_status: Option<u16>,
        outcome: &Result<Reply<P::Response>, CallError>,
        latency: Duration,
        usage: TokenUsage,
    ) {
        let model = self.identity.name.clone();
        metrics::counter!(
            "strata_model_requests_total",
            "model" => model.clone(),
            "provider" => self.identity.provider,
            "status" => status.as_str(),
        )
        .increment(1);
        metrics::histogram!("strata_model_latency_seconds", "model" => model.clone())
            .record(latency.as_secs_f64());
        if let Some(n) = usage.input_tokens {
            metrics::counter!("strata_model_tokens_total", "model" => model.clone(), "kind" => "input")
                .increment(n);
        }
        if let Some(n) = usage.output_tokens {
            metrics::counter!("strata_model_tokens_total", "model" => model, "kind" => "output")
                .increment(n);
        }
        if let Some(observer) = &self.observer {
            let error_code = outcome.as_ref().err().and_then(|e| e.code.as_deref());
            observer.on_attempt(&AttemptRecord {
                model: &self.identity,
                attempt,
                started_at,
                status,
                http_status,
                error_code,
                latency,
                usage,
            });
        }
    }

    fn give_up(&self, attempts: u32, error: &CallError, why: &str) -> OperatorError {
        let status = error
            .status
            .map(|s| format!("HTTP {s}, "))
            .unwrap_or_default();
        let code = error
            .code
            .as_deref()
            .map(|c| format!("{c}, "))
            .unwrap_or_default();
        OperatorError::Call {
            model: self.identity.name.clone(),
            message: format!(
                "{} ({}) failed after {attempts} attempt{} ({status}{code}{}: {why}): {}",
                self.provider.target(),
                self.identity.model_id,
                if attempts == 1 { "" } else { "s" },
                error.kind.as_str(),
                error.message
            ),
        }
    }
}
