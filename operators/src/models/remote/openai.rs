//! `provider = 'openai'`: any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM,
//! llama.cpp server, Ollama, ...), over `reqwest` with rustls.
//!
//! Owns the wire format of `POST {endpoint}/embeddings` and the classification of its
//! failures into [`CallError`]s. It must not retry or rate-limit (the [`ClientStack`] does)
//! and must never log or display the API key.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;

use super::stack::{
    CallError, ClientStack, ErrorKind, ModelIdentity, Provider, Reply, StackConfig, TokenUsage,
};
use super::{describe, in_order, limits::estimate_tokens, retry::parse_retry_after, BatchPlan};
use crate::error::Result;
use crate::models::{Embedder, ModelOptions};

/// Default texts per request (`max_batch`).
pub const DEFAULT_MAX_BATCH: usize = 256;
/// Default requests in flight per `embed` call (`max_concurrency`).
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// Default per-attempt timeout (`timeout_ms`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `POST /embeddings` attempt against an OpenAI-compatible endpoint.
pub struct OpenAiEmbeddings {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
    dimensions: usize,
}

impl fmt::Debug for OpenAiEmbeddings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbeddings")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

/// A serialized `/embeddings` request body and how many texts it holds.
#[derive(Debug)]
pub struct EmbeddingsRequest {
    body: Vec<u8>,
    texts: usize,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
}

/// The error code and message of an error body: OpenAI's `{"error": {"message", "type",
/// "code"}}`, vLLM's `{"message", "type"}`, or the raw text.
fn error_details(body: &str) -> (Option<String>, String) {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        let obj = v.get("error").filter(|e| e.is_object()).unwrap_or(&v);
        let message = obj
            .get("message")
            .and_then(text)
            .or_else(|| v.get("error").and_then(text));
        if let Some(message) = message {
            let code = obj
                .get("code")
                .and_then(text)
                .or_else(|| obj.get("type").and_then(text));
            return (code, message);
        }
    }
    let trimmed: String = body.trim().chars().take(500).collect();
    (
        None,
        if trimmed.is_empty() {
            "(empty body)".into()
        } else {
            trimmed
        },
    )
}

impl OpenAiEmbeddings {
    fn classify_status(status: u16) -> ErrorKind {
        match status {
            429 => ErrorKind::Throttled,
            408 => ErrorKind::Timeout,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::Client,
        }
    }

    fn decode(&self, body: &[u8], texts: usize) -> Result<Reply<Vec<f32>>, CallError> {
        let bad = |m: String| CallError::new(ErrorKind::BadResponse, m);
        let parsed: EmbeddingsResponse = serde_json::from_slice(body).map_err(|e| {
            bad(format!(
                "response is not an OpenAI embeddings response: {e}"
            ))
        })?;
        if parsed.data.len() != texts {
            return Err(bad(format!(
                "sent {texts} texts but the response holds {} embeddings",
                parsed.data.len()
            )));
        }
        let d = self.dimensions;
        let mut out = vec![0f32; texts * d];
        let mut seen = vec![false; texts];
        for item in parsed.data {
            if item.index >= texts || seen[item.index] {
                return Err(bad(format!(
                    "embedding index {} is out of range or repeated (sent {texts} texts)",
                    item.index
                )));
            }
            if item.embedding.len() != d {
                return Err(bad(format!(
                    "embedding {} has {} values but the model declares dimensions = {d}; set \
                     dimensions to the model's output size (or check that the server honours \
                     the 'dimensions' parameter)",
                    item.index,
                    item.embedding.len()
                )));
            }
            seen[item.index] = true;
            out[item.index * d..(item.index + 1) * d].copy_from_slice(&item.embedding);
        }
        Ok(Reply {
            value: out,
            usage: TokenUsage {
                input_tokens: parsed.usage.and_then(|u| u.prompt_tokens),
                ..TokenUsage::default()
            },
        })
    }
}

#[async_trait]
impl Provider for OpenAiEmbeddings {
    type Request = EmbeddingsRequest;
    type Response = Vec<f32>;

    fn target(&self) -> &str {
        &self.url
    }

    async fn send(&self, request: &EmbeddingsRequest) -> Result<Reply<Vec<f32>>, CallError> {
        let mut builder = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.body.clone());
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connect
            };
            CallError::new(kind, describe(&e.without_url()))
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = response.bytes().await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connect
            };
            CallError::new(
                kind,
                format!("reading the response: {}", describe(&e.without_url())),
            )
        })?;
        if !(200..300).contains(&status) {
            let (code, message) = error_details(&String::from_utf8_lossy(&body));
            return Err(CallError {
                kind: Self::classify_status(status),
                status: Some(status),
                code,
                message,
                retry_after,
            });
        }
        self.decode(&body, request.texts).map_err(|e| CallError {
            status: Some(status),
            ..e
        })
    }
}

/// `embed` through an OpenAI-compatible endpoint.
#[derive(Debug)]
pub struct OpenAiEmbedder {
    stack: ClientStack<OpenAiEmbeddings>,
    model: String,
    dimensions: usize,
    send_dimensions: bool,
    plan: BatchPlan,
}

impl OpenAiEmbedder {
    /// Build from the options of `CREATE MODEL ... WITH (provider = 'openai', ...)`; `config`
    /// carries the stack settings (see [`StackConfig::from_options`]).
    ///
    /// Options: `endpoint` (base URL including `/v1`), `model`, `dimensions` (required);
    /// `api_key_env`, `max_batch`, `max_concurrency`, `timeout_ms`, `send_dimensions`.
    pub fn from_options(opts: &mut ModelOptions, config: StackConfig) -> Result<Self> {
        let endpoint = opts.require(
            "endpoint",
            "the base URL including /v1, e.g. 'http://127.0.0.1:8000/v1'",
        )?;
        let parsed = reqwest::Url::parse(&endpoint)
            .map_err(|e| opts.error("endpoint", format!("'{endpoint}' is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(opts.error(
                "endpoint",
                format!("'{endpoint}' must be an http:// or https:// URL"),
            ));
        }
        let url = format!("{}/embeddings", endpoint.trim_end_matches('/'));
        let model = opts.require(
            "model",
            "the served model name, e.g. 'text-embedding-3-small'",
        )?;
        let dimensions = required_dimensions(opts)?;
        let api_key = match opts.take("api_key_env") {
            None => None,
            Some(var) => match std::env::var(&var) {
                Ok(key) if !key.is_empty() => Some(key),
                _ => {
                    return Err(opts.error(
                        "api_key_env",
                        format!(
                            "environment variable '{var}' is not set; export it with the API key"
                        ),
                    ))
                }
            },
        };
        let send_dimensions = opts.take_bool("send_dimensions")?.unwrap_or(true);
        let plan = BatchPlan::from_options(opts, DEFAULT_MAX_BATCH, 2048, DEFAULT_MAX_CONCURRENCY)?;
        let timeout = take_timeout(opts)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .build()
            .map_err(|e| opts.error("endpoint", format!("cannot build the HTTP client: {e}")))?;
        let identity = ModelIdentity {
            name: opts.model().to_ascii_lowercase(),
            provider: "openai",
            model_id: model.clone(),
        };
        let provider = OpenAiEmbeddings {
            client,
            url,
            api_key,
            dimensions,
        };
        Ok(Self {
            stack: ClientStack::new(identity, provider, config),
            model,
            dimensions,
            send_dimensions,
            plan,
        })
    }

    /// One request's worth of texts through the client stack.
    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<f32>> {
        let request = self.request(batch);
        let tokens = batch.iter().map(|t| estimate_tokens(t)).sum();
        Ok(self.stack.call(&request, tokens).await?.value)
    }

    fn request(&self, texts: &[String]) -> EmbeddingsRequest {
        let mut body = serde_json::json!({
            "model": self.model,
            "input": texts,
            "encoding_format": "float",
        });
        if self.send_dimensions {
            body["dimensions"] = self.dimensions.into();
        }
        EmbeddingsRequest {
            body: serde_json::to_vec(&body).expect("a JSON value serializes"),
            texts: texts.len(),
        }
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<f32>> {
        let calls: Vec<_> = texts
            .chunks(self.plan.max_batch)
            .map(|batch| self.embed_batch(batch))
            .collect();
        in_order(calls, self.plan.max_concurrency).await
    }
}

/// `dimensions`: required for remote models (the vector type is fixed at plan time).
pub(super) fn required_dimensions(opts: &mut ModelOptions) -> Result<usize> {
    let d = opts.take_positive("dimensions")?.ok_or_else(|| {
        opts.error(
            "dimensions",
            "is required for remote models: embed() returns FixedSizeList<Float32, dimensions>, \
                 fixed when the job is planned; set it to the model's output size",
        )
    })?;
    usize::try_from(d)
        .ok()
        .filter(|d| *d <= 65_536)
        .ok_or_else(|| opts.error("dimensions", format!("must be at most 65536, got {d}")))
}

/// `timeout_ms`: the limit of one attempt.
pub(super) fn take_timeout(opts: &mut ModelOptions) -> Result<Duration> {
    Ok(opts
        .take_positive("timeout_ms")?
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_TIMEOUT))
}

/// Convenience for [`super::openai_embedder`].
pub(super) fn build(opts: &mut ModelOptions) -> Result<Arc<dyn Embedder>> {
    let config = StackConfig::from_options(opts)?;
    Ok(Arc::new(OpenAiEmbedder::from_options(opts, config)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_of_common_servers() {
        let openai =
            r#"{"error": {"message": "bad input", "type": "invalid_request_error", "code": null}}"#;
        assert_eq!(
            error_details(openai),
            (Some("invalid_request_error".into()), "bad input".into())
        );
        let vllm =
            r#"{"object": "error", "message": "too long", "type": "BadRequestError", "code": 400}"#;
        assert_eq!(error_details(vllm), (Some("400".into()), "too long".into()));
        let ollama = r#"{"error": "model not found"}"#;
        assert_eq!(error_details(ollama), (None, "model not found".into()));
        assert_eq!(
            error_details("<html>oops</html>"),
            (None, "<html>oops</html>".into())
        );
        assert_eq!(error_details(""), (None, "(empty body)".into()));
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(OpenAiEmbeddings::classify_status(429), ErrorKind::Throttled);
        assert_eq!(OpenAiEmbeddings::classify_status(503), ErrorKind::Server);
        assert_eq!(OpenAiEmbeddings::classify_status(408), ErrorKind::Timeout);
        assert_eq!(OpenAiEmbeddings::classify_status(400), ErrorKind::Client);
        assert_eq!(OpenAiEmbeddings::classify_status(401), ErrorKind::Client);
    }

    #[test]
    fn the_api_key_is_not_in_debug_output() {
        let p = OpenAiEmbeddings {
            client: reqwest::Client::new(),
            url: "http://x/v1/embeddings".into(),
            api_key: Some("sk-secret".into()),
            dimensions: 3,
        };
        assert!(!format!("{p:?}").contains("sk-secret"));
    }

    #[test]
    fn decode_orders_by_index_and_checks_lengths() {
        let p = OpenAiEmbeddings {
            client: reqwest::Client::new(),
            url: "http://x/v1/embeddings".into(),
            api_key: None,
            dimensions: 2,
        };
        let body =
            br#"{"data": [{"index": 1, "embedding": [3, 4]}, {"index": 0, "embedding": [1, 2]}],
                        "usage": {"prompt_tokens": 7, "total_tokens": 7}}"#;
        let reply = p.decode(body, 2).unwrap();
        assert_eq!(reply.value, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(reply.usage.input_tokens, Some(7));
        let short = br#"{"data": [{"index": 0, "embedding": [1]}]}"#;
        let e = p.decode(short, 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadResponse);
        assert!(e.message.contains("dimensions = 2"), "{}", e.message);
        let repeated =
            br#"{"data": [{"index": 0, "embedding": [1, 2]}, {"index": 0, "embedding": [1, 2]}]}"#;
        assert!(p
            .decode(repeated, 2)
            .unwrap_err()
            .message
            .contains("repeated"));
    }
}
