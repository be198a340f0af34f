//! Chat models (`task = 'chat'`): the request and reply types, the model settings every chat
//! provider shares, and the two layers that sit outside a provider's client stack: the
//! persistent response cache and the job's cost budget.
//!
//! The order, outermost first, is cache -> budget -> rate limit -> retry -> provider
//! (DESIGN.md §5). A cache hit never reaches the budget or the network; the budget reserves
//! a call's worst-case cost before the rate limiter sees it and settles against the usage the
//! provider reports. Rate limit and retry live in [`super::remote::stack`].
//!
//! Money is fixed point, never floating point: prices are read from their decimal text into
//! [`Money`] (integer units of 1e-16 USD), so sums are exact.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use super::prices::{Money, Prices};
use super::remote::limits::estimate_tokens;
use super::remote::stack::TokenUsage;
use super::ModelOptions;
use crate::error::{OperatorError, Result};

/// Default `max_tokens` of a chat model.
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// Default `max_concurrency` of a chat model: calls in flight per function call.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;

/// One chat call: a single user turn, with the model's system prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// The system prompt, if the model has one.
    pub system: Option<String>,
    /// The user turn.
    pub prompt: String,
    /// Bound on generated tokens.
    pub max_tokens: u32,
    /// Sampling temperature; `None` leaves the provider's default.
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// The cache key of this request to model `model_id`: SHA-256 over the model id, the
    /// system prompt, the prompt and every parameter, each length-prefixed so no two
    /// different requests share a key.
    pub fn cache_key(&self, model_id: &str) -> String {
        let mut h = Sha256::new();
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(b"strata-chat-v1");
        field(model_id.as_bytes());
        match &self.system {
            None => field(b"\0none"),
            Some(s) => field(s.as_bytes()),
        }
        field(self.prompt.as_bytes());
        field(&self.max_tokens.to_le_bytes());
        match self.temperature {
            None => field(b"\0none"),
            Some(t) => field(&t.to_bits().to_le_bytes()),
        }
        hex::encode(h.finalize())
    }

    /// A conservative estimate of the input tokens (see [`estimate_tokens`]).
    pub fn estimated_input_tokens(&self) -> u64 {
        estimate_tokens(&self.prompt) + self.system.as_deref().map_or(0, estimate_tokens)
    }
}

/// A chat answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatReply {
    /// The generated text.
    pub text: String,
    /// Tokens as the provider reported them (for a cache hit: those of the original call).
    pub usage: TokenUsage,
    /// Answered from the response cache, at no cost.
    pub cached: bool,
}

/// Generates text. Implemented by every chat provider and by the layers around them.
#[async_trait]
pub trait ChatModel: Send + Sync + fmt::Debug {
    /// The provider's model id.
    fn model_id(&self) -> &str;
    /// Answer one request (retries, limits and the rest happen inside).
    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply>;
}

/// What every chat model takes from its options: `system`, `max_tokens`, `temperature`,
/// `max_concurrency`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatSettings {
    /// `system`: the system prompt of every call.
    pub system: Option<String>,
    /// `max_tokens` (default [`DEFAULT_MAX_TOKENS`]); `ai_complete`'s third argument
    /// overrides it per call.
    pub max_tokens: u32,
    /// `temperature`, 0 to 2.
    pub temperature: Option<f32>,
    /// `max_concurrency` (default [`DEFAULT_MAX_CONCURRENCY`]): rows in flight at once.
    pub max_concurrency: usize,
}

impl ChatSettings {
    /// Take the shared chat options.
    pub fn from_options(opts: &mut ModelOptions) -> Result<Self> {
        let system = opts.take("system").filter(|s| !s.trim().is_empty());
        let max_tokens = match opts.take_positive("max_tokens")? {
            None => DEFAULT_MAX_TOKENS,
            Some(n) if n <= 1_000_000 => n as u32,
            Some(n) => {
                return Err(opts.error("max_tokens", format!("must be at most 1000000, got {n}")))
            }
        };
        let temperature = match opts.take_parsed::<f32>("temperature", "a number from 0 to 2")? {
            None => None,
            Some(t) if (0.0..=2.0).contains(&t) => Some(t),
            Some(t) => {
                return Err(opts.error("temperature", format!("must be from 0 to 2, got {t}")))
            }
        };
        let max_concurrency = match opts.take_positive("max_concurrency")? {
            None => DEFAULT_MAX_CONCURRENCY,
            Some(n) if n <= 1024 => n as usize,
            Some(n) => {
                return Err(opts.error("max_concurrency", format!("must be at most 1024, got {n}")))
            }
        };
        Ok(Self {
            system,
            max_tokens,
            temperature,
            max_concurrency,
        })
    }

    /// The request for `prompt`, with `max_tokens` overriding the model's bound.
    pub fn request(&self, prompt: String, max_tokens: Option<u32>) -> ChatRequest {
        ChatRequest {
            system: self.system.clone(),
            prompt,
            max_tokens: max_tokens.unwrap_or(self.max_tokens),
            temperature: self.temperature,
        }
    }
}

/// `SET job.max_cost_usd`: the spend of the whole job, shared by its models.
#[derive(Debug)]
pub struct Budget {
    limit: Money,
    state: Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    /// Settled cost of finished calls.
    spent: Money,
    /// Worst-case cost of calls in flight.
    reserved: Money,
    /// Set once a call was refused; every later call is refused too.
    exhausted: bool,
}

impl Budget {
    /// A budget of `limit`.
    pub fn new(limit: Money) -> Self {
        Self {
            limit,
            state: Mutex::default(),
        }
    }

    /// The limit.
    pub fn limit(&self) -> Money {
        self.limit
    }

    /// What finished calls cost so far.
    pub fn spent(&self) -> Money {
        self.state.lock().expect("budget lock").spent
    }

    /// Reserve `bound` for a call, or refuse when the spend could pass the limit.
    fn reserve(&self, model: &str, bound: Money) -> Result<()> {
        let mut s = self.state.lock().expect("budget lock");
        if s.exhausted || Money(s.spent.0 + s.reserved.0 + bound.0) > self.limit {
            s.exhausted = true;
            return Err(OperatorError::BudgetExceeded {
                model: model.to_string(),
                limit: self.limit.to_string(),
                spent: s.spent.to_string(),
                in_flight: s.reserved.to_string(),
                next: bound.to_string(),
            });
        }
        s.reserved.0 += bound.0;
        Ok(())
    }

    /// Release a reservation and add what the call actually cost.
    fn settle(&self, bound: Money, cost: Money) {
        let mut s = self.state.lock().expect("budget lock");
        s.reserved.0 -= bound.0;
        s.spent.0 += cost.0;
    }
}

/// The budget layer: costs every call at the model's prices, and with a job budget reserves
/// a call's bound before it goes out and settles the actual cost after. The model's spend so
/// far is the gauge `strata_model_cost_usd{model}` (a float for dashboards; the exact sum is
/// [`Metered::spent`]).
#[derive(Debug)]
pub struct Metered {
    model: String,
    inner: Arc<dyn ChatModel>,
    prices: Prices,
    budget: Option<Arc<Budget>>,
    spent: Mutex<Money>,
}

impl Metered {
    /// Wrap `inner` (model alias `model`), costing calls at `prices`, within `budget` if any.
    pub fn new(
        model: &str,
        inner: Arc<dyn ChatModel>,
        prices: Prices,
        budget: Option<Arc<Budget>>,
    ) -> Self {
        Self {
            model: model.to_string(),
            inner,
            prices,
            budget,
            spent: Mutex::default(),
        }
    }

    /// What this model's calls cost so far.
    pub fn spent(&self) -> Money {
        *self.spent.lock().expect("spend lock")
    }
}

#[async_trait]
impl ChatModel for Metered {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply> {
        let bound = self.prices.bound(request);
        if let Some(budget) = &self.budget {
            budget.reserve(&self.model, bound)?;
        }
        let reply = self.inner.complete(request).await;
        let cost = match &reply {
            Ok(r) => self.prices.cost(&r.usage),
            // A failed call reports no usage: providers do not bill failed attempts.
            Err(_) => Money::default(),
        };
        if let Some(budget) = &self.budget {
            budget.settle(bound, cost);
        }
        let total = {
            let mut spent = self.spent.lock().expect("spend lock");
            spent.0 += cost.0;
            *spent
        };
        metrics::gauge!("strata_model_cost_usd", "model" => self.model.clone())
            .set(total.0 as f64 / 10f64.powi(Money::SCALE as i32));
        reply
    }
}

/// What the cache stores per request.
#[derive(Serialize, Deserialize)]
struct CacheEntry {
    model_id: String,
    text: String,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
}

/// The response cache: one small JSON object per request under `'cache.path'`, named by
/// [`ChatRequest::cache_key`] (`<path>/<model alias>/<k0k1>/<key>.json`). Local folders and
/// object_store URLs (`s3://...`) both work, so reruns on another machine share it.
///
/// Only successful answers are stored. A read or write failure of the cache is logged and
/// counted (`strata_model_cache_total{result="error"}`) and the call goes to the model: the
/// cache can cost money when it is down, never rows.
#[derive(Debug)]
pub struct Cached {
    model: String,
    inner: Arc<dyn ChatModel>,
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
    url: String,
    /// Where hits are recorded (usage rows with `cache_hit`, no tokens, no cost).
    usage: Option<(Arc<super::usage::UsageLog>, super::usage::UsageModel)>,
}

impl Cached {
    /// Wrap `inner` (model alias `model`) with a cache at `location`.
    pub fn new(
        model: &str,
        inner: Arc<dyn ChatModel>,
        location: strata_pipeline::storage::StorageLocation,
        usage: Option<(Arc<super::usage::UsageLog>, super::usage::UsageModel)>,
    ) -> Self {
        Self {
            usage,
            model: model.to_string(),
            inner,
            prefix: location.child(model),
            store: location.store,
            url: location.url,
        }
    }

    fn path(&self, key: &str) -> ObjPath {
        self.prefix
            .clone()
            .join(&key[..2])
            .join(format!("{key}.json"))
    }

    fn count(&self, result: &'static str) {
        metrics::counter!("strata_model_cache_total", "model" => self.model.clone(), "result" => result)
            .increment(1);
    }
}

#[async_trait]
impl ChatModel for Cached {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply> {
        let model_id = self.inner.model_id();
        let path = self.path(&request.cache_key(model_id));
        match self.store.get(&path).await {
            Ok(got) => match got
                .bytes()
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<CacheEntry>(&b).ok())
            {
                Some(e) if e.model_id == model_id => {
                    self.count("hit");
                    if let Some((log, model)) = &self.usage {
                        log.record(model.cache_hit_row(model_id));
                    }
                    return Ok(ChatReply {
                        text: e.text,
                        usage: TokenUsage {
                            input_tokens: e.input_tokens,
                            output_tokens: e.output_tokens,
                            cache_read_tokens: e.cache_read_tokens,
                            cache_write_tokens: e.cache_write_tokens,
                        },
                        cached: true,
                    });
                }
                _ => {
                    tracing::warn!(model = %self.model, path = %path, "unreadable cache entry; calling the model");
                    self.count("error");
                }
            },
            Err(object_store::Error::NotFound { .. }) => self.count("miss"),
            Err(e) => {
                tracing::warn!(model = %self.model, cache = %self.url, error = %e, "cache read failed; calling the model");
                self.count("error");
            }
        }
        let reply = self.inner.complete(request).await?;
        let entry = CacheEntry {
            model_id: model_id.to_string(),
            text: reply.text.clone(),
            input_tokens: reply.usage.input_tokens,
            output_tokens: reply.usage.output_tokens,
            cache_read_tokens: reply.usage.cache_read_tokens,
            cache_write_tokens: reply.usage.cache_write_tokens,
        };
        let body = serde_json::to_vec(&entry).expect("a cache entry serializes");
        if let Err(e) = self.store.put(&path, PutPayload::from(body)).await {
            tracing::warn!(model = %self.model, cache = %self.url, error = %e, "cache write failed");
            self.count("error");
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refuses_the_call_that_could_pass_the_limit() {
        let budget = Budget::new(Money::parse("1").unwrap());
        budget.reserve("m", Money::parse("0.6").unwrap()).unwrap();
        budget.settle(Money::parse("0.6").unwrap(), Money::parse("0.5").unwrap());
        budget.reserve("m", Money::parse("0.5").unwrap()).unwrap();
        let err = budget
            .reserve("m", Money::parse("0.01").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("job.max_cost_usd"), "{err}");
        // Once refused, always refused: no call slips in after the stop.
        budget.settle(Money::parse("0.5").unwrap(), Money::default());
        assert!(budget.reserve("m", Money(1)).is_err());
        assert_eq!(budget.spent().to_string(), "0.5");
    }

    #[test]
    fn cache_keys_cover_every_parameter() {
        let base = ChatRequest {
            system: None,
            prompt: "hi".into(),
            max_tokens: 10,
            temperature: None,
        };
        let k = base.cache_key("m");
        assert_eq!(k, base.clone().cache_key("m"));
        assert_ne!(k, base.cache_key("other"));
        let variants = [
            ChatRequest {
                system: Some(String::new()),
                ..base.clone()
            },
            ChatRequest {
                prompt: "hi ".into(),
                ..base.clone()
            },
            ChatRequest {
                max_tokens: 11,
                ..base.clone()
            },
            ChatRequest {
                temperature: Some(0.0),
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(k, v.cache_key("m"), "{v:?}");
        }
    }
}
