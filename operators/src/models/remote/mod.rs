//! Remote model providers: `openai` (any OpenAI-compatible endpoint) and `bedrock`, behind
//! the shared client stack.
//!
//! Owns everything between a model's `embed` (and, later, `ai_*`) and the network:
//! [`stack`] (the attempt loop: rate limit -> retry -> provider, telemetry, the
//! [`stack::AttemptObserver`] hook), [`limits`] (governor quotas), [`retry`] (backoff and
//! which errors are retried), and one module per provider ([`openai`], [`bedrock`]) that knows
//! only its wire format. Providers never retry; nothing outside [`stack`] does either.

pub mod bedrock;
pub mod converse;
pub mod limits;
pub mod openai;
pub mod retry;
pub mod stack;

use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};

use super::{Embedder, ModelOptions};
use crate::error::Result;

/// `provider = 'openai'`, `task = 'embedding'`: see [`openai::OpenAiEmbedder::from_options`].
pub fn openai_embedder(opts: &mut ModelOptions, observer: Observer) -> Result<Arc<dyn Embedder>> {
    openai::build(opts, observer)
}

/// Told of every attempt (the usage log), if anyone listens.
pub type Observer = Option<Arc<dyn stack::AttemptObserver>>;

/// `provider = 'openai'`, `task = 'chat'`: see [`openai::OpenAiChat::from_options`].
pub fn openai_chat(
    opts: &mut ModelOptions,
    observer: Observer,
) -> Result<Arc<dyn super::chat::ChatModel>> {
    openai::build_chat(opts, observer)
}

/// `provider = 'bedrock'`, `task = 'chat'`: see [`converse::BedrockChat::from_options`].
pub async fn bedrock_chat(
    opts: &mut ModelOptions,
    observer: Observer,
) -> Result<Arc<dyn super::chat::ChatModel>> {
    converse::build(opts, observer).await
}

/// `provider = 'bedrock'`, `task = 'embedding'`: see [`bedrock::BedrockEmbedder::from_options`].
pub async fn bedrock_embedder(
    opts: &mut ModelOptions,
    observer: Observer,
) -> Result<Arc<dyn Embedder>> {
    bedrock::build(opts, observer).await
}

/// How an `embed` call is split into requests: `max_batch` texts per request, at most
/// `max_concurrency` requests in flight (the rate limiter still decides when each goes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPlan {
    /// Texts per request.
    pub max_batch: usize,
    /// Requests in flight at once per `embed` call.
    pub max_concurrency: usize,
}

impl BatchPlan {
    /// Take `max_batch` (default `default_batch`, at most `limit`) and `max_concurrency`
    /// (default `default_concurrency`).
    pub fn from_options(
        opts: &mut ModelOptions,
        default_batch: usize,
        limit: usize,
        default_concurrency: usize,
    ) -> Result<Self> {
        let max_batch = match opts.take_positive("max_batch")? {
            None => default_batch,
            Some(n) if n as usize <= limit => n as usize,
            Some(n) => {
                return Err(opts.error(
                    "max_batch",
                    format!("must be at most {limit} for this model, got {n}"),
                ))
            }
        };
        let max_concurrency = match opts.take_positive("max_concurrency")? {
            None => default_concurrency,
            Some(n) if n <= 1024 => n as usize,
            Some(n) => {
                return Err(opts.error("max_concurrency", format!("must be at most 1024, got {n}")))
            }
        };
        Ok(Self {
            max_batch,
            max_concurrency,
        })
    }
}

/// Run `calls` (one per batch, in input order) at most `max_concurrency` at a time and
/// concatenate their vectors in input order. No calls, no request.
pub(crate) async fn in_order<F>(calls: Vec<F>, max_concurrency: usize) -> Result<Vec<f32>>
where
    F: Future<Output = Result<Vec<f32>>>,
{
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<Vec<f32>> = futures::stream::iter(calls)
        .buffered(max_concurrency.max(1))
        .try_collect()
        .await?;
    Ok(parts.concat())
}

/// One chat call through `stack`: reserves the input estimate plus `max_tokens` against the
/// token limit and turns the provider's reply into a [`ChatReply`].
pub(crate) async fn chat_call<P: stack::Provider<Response = String>>(
    stack: &stack::ClientStack<P>,
    wire: &P::Request,
    request: &super::chat::ChatRequest,
) -> Result<super::chat::ChatReply> {
    let tokens = request.estimated_input_tokens() + u64::from(request.max_tokens);
    let reply = stack.call(wire, tokens).await?;
    Ok(super::chat::ChatReply {
        text: reply.value,
        usage: reply.usage,
        cached: false,
    })
}

/// An error and its causes on one line ("error sending request: ...: Connection refused").
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
