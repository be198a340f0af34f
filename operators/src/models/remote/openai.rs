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
    AttemptObserver, CallError, ClientStack, ErrorKind, ModelIdentity, Provider, Reply,
    StackConfig, TokenUsage,
};
use super::{describe, in_order, limits::estimate_tokens, retry::parse_retry_after, BatchPlan};
use crate::error::Result;
use crate::models::chat::{ChatModel, ChatReply, ChatRequest};
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
pub(super) fn error_details(body: &str) -> (Option<String>, String) {
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
        let body = post_json(
            &self.client,
            &self.url,
            self.api_key.as_deref(),
            &request.body,
        )
        .await?;
        self.decode(&body, request.texts).map_err(|e| CallError {
            status: Some(200),
            ..e
        })
    }
}

/// One `POST` of a JSON body to an OpenAI-compatible route: the body of a 2xx answer, or the
/// failure classified for the retry layer (status, error code, `Retry-After`). Shared by the
/// embeddings and chat providers; it never retries.
pub(super) async fn post_json(
    client: &reqwest::Client,
    url: &str,
    api_key: Option<&str>,
    body: &[u8],
) -> Result<bytes::Bytes, CallError> {
    let mut builder = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_vec());
    if let Some(key) = api_key {
        builder = builder.bearer_auth(key);
    }
    let transport = |e: reqwest::Error, what: &str| {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Connect
        };
        CallError::new(kind, format!("{what}{}", describe(&e.without_url())))
    };
    let response = builder.send().await.map_err(|e| transport(e, ""))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let body = response
        .bytes()
        .await
        .map_err(|e| transport(e, "reading the response: "))?;
    if !(200..300).contains(&status) {
        let (code, message) = error_details(&String::from_utf8_lossy(&body));
        return Err(CallError {
            kind: classify_status(status),
            status: Some(status),
            code,
            message,
            retry_after,
        });
    }
    Ok(body)
}

/// The retry class of an HTTP status.
pub(super) fn classify_status(status: u16) -> ErrorKind {
    match status {
        429 => ErrorKind::Throttled,
        408 => ErrorKind::Timeout,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::Client,
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
        let (client, url, api_key) = connection(opts, "embeddings")?;
        let model = opts.require(
            "model",
            "the served model name, e.g. 'text-embedding-3-small'",
        )?;
        let dimensions = required_dimensions(opts)?;
        let send_dimensions = opts.take_bool("send_dimensions")?.unwrap_or(true);
        let plan = BatchPlan::from_options(opts, DEFAULT_MAX_BATCH, 2048, DEFAULT_MAX_CONCURRENCY)?;
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

/// `endpoint`, `api_key_env` and `timeout_ms`: an HTTP client and the URL of `route` under
/// the endpoint (`{endpoint}/{route}`), plus the API key when one is configured.
pub(super) fn connection(
    opts: &mut ModelOptions,
    route: &str,
) -> Result<(reqwest::Client, String, Option<String>)> {
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
    let url = format!("{}/{route}", endpoint.trim_end_matches('/'));
    let api_key = match opts.take("api_key_env") {
        None => None,
        Some(var) => match std::env::var(&var) {
            Ok(key) if !key.is_empty() => Some(key),
            _ => {
                return Err(opts.error(
                    "api_key_env",
                    format!("environment variable '{var}' is not set; export it with the API key"),
                ))
            }
        },
    };
    let timeout = take_timeout(opts)?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(timeout))
        .build()
        .map_err(|e| opts.error("endpoint", format!("cannot build the HTTP client: {e}")))?;
    Ok((client, url, api_key))
}

/// One `POST /chat/completions` attempt against an OpenAI-compatible endpoint.
pub struct OpenAiChatCompletions {
    client: reqwest::Client,
    url: String,
    api_key: Option<String>,
}

impl fmt::Debug for OpenAiChatCompletions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiChatCompletions")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A serialized `/chat/completions` request body.
#[derive(Debug)]
pub struct CompletionRequest {
    body: Vec<u8>,
}

#[derive(Deserialize)]
struct CompletionResponse {
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<CompletionUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct CompletionUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// Decode a `/chat/completions` answer: the first choice's text and the usage. OpenAI counts
/// cached prompt tokens inside `prompt_tokens`; they are split out so each is priced once.
fn decode_completion(body: &[u8]) -> Result<Reply<String>, CallError> {
    let bad = |m: String| CallError::new(ErrorKind::BadResponse, m);
    let parsed: CompletionResponse = serde_json::from_slice(body)
        .map_err(|e| bad(format!("response is not an OpenAI chat completion: {e}")))?;
    let text = parsed
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| bad("the response holds no choices".into()))?
        .message
        .content
        .unwrap_or_default();
    let usage = parsed.usage.map(|u| {
        let cached = u
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .filter(|c| *c > 0);
        TokenUsage {
            input_tokens: u.prompt_tokens.map(|p| p - cached.unwrap_or(0).min(p)),
            output_tokens: u.completion_tokens,
            cache_read_tokens: cached,
            cache_write_tokens: None,
        }
    });
    Ok(Reply {
        value: text,
        usage: usage.unwrap_or_default(),
    })
}

#[async_trait]
impl Provider for OpenAiChatCompletions {
    type Request = CompletionRequest;
    type Response = String;

    fn target(&self) -> &str {
        &self.url
    }

    async fn send(&self, request: &CompletionRequest) -> Result<Reply<String>, CallError> {
        let body = post_json(
            &self.client,
            &self.url,
            self.api_key.as_deref(),
            &request.body,
        )
        .await?;
        decode_completion(&body).map_err(|e| CallError {
            status: Some(200),
            ..e
        })
    }
}

/// `ai_complete` / `ai_summarize` through an OpenAI-compatible `/chat/completions`.
#[derive(Debug)]
pub struct OpenAiChat {
    stack: ClientStack<OpenAiChatCompletions>,
}

impl OpenAiChat {
    /// Build from the options of `CREATE MODEL ... WITH (provider = 'openai', task = 'chat',
    /// ...)`: `endpoint`, `model` (required); `api_key_env`, `timeout_ms`.
    pub fn from_options(opts: &mut ModelOptions, config: StackConfig) -> Result<Self> {
        let (client, url, api_key) = connection(opts, "chat/completions")?;
        let model = opts.require("model", "the served model name, e.g. 'gpt-4o-mini'")?;
        let identity = ModelIdentity {
            name: opts.model().to_ascii_lowercase(),
            provider: "openai",
            model_id: model,
        };
        let provider = OpenAiChatCompletions {
            client,
            url,
            api_key,
        };
        Ok(Self {
            stack: ClientStack::new(identity, provider, config),
        })
    }

    fn request(&self, request: &ChatRequest) -> CompletionRequest {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &request.system {
            messages.push(serde_json::json!({"role": "system", "content": system}));
        }
        messages.push(serde_json::json!({"role": "user", "content": request.prompt}));
        let mut body = serde_json::json!({
            "model": self.stack.identity().model_id,
            "messages": messages,
            "max_tokens": request.max_tokens,
        });
        if let Some(t) = request.temperature {
            body["temperature"] = t.into();
        }
        CompletionRequest {
            body: serde_json::to_vec(&body).expect("a JSON value serializes"),
        }
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn model_id(&self) -> &str {
        &self.stack.identity().model_id
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply> {
        let wire = self.request(request);
        super::chat_call(&self.stack, &wire, request).await
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
pub(crate) fn take_timeout(opts: &mut ModelOptions) -> Result<Duration> {
    Ok(opts
        .take_positive("timeout_ms")?
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_TIMEOUT))
}

/// `provider = 'openai'`, `task = 'chat'`.
pub(super) fn build_chat(
    opts: &mut ModelOptions,
    observer: Option<Arc<dyn AttemptObserver>>,
) -> Result<Arc<dyn ChatModel>> {
    let config = StackConfig::from_options(opts, observer)?;
    Ok(Arc::new(OpenAiChat::from_options(opts, config)?))
}

/// Convenience for [`super::openai_embedder`].
pub(super) fn build(
    opts: &mut ModelOptions,
    observer: Option<Arc<dyn AttemptObserver>>,
) -> Result<Arc<dyn Embedder>> {
    let config = StackConfig::from_options(opts, observer)?;
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
    fn completions_split_cached_prompt_tokens() {
        let body = br#"{"choices": [{"message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 5,
                      "prompt_tokens_details": {"cached_tokens": 60}}}"#;
        let reply = decode_completion(body).unwrap();
        assert_eq!(reply.value, "hi");
        assert_eq!(reply.usage.input_tokens, Some(40));
        assert_eq!(reply.usage.cache_read_tokens, Some(60));
        assert_eq!(reply.usage.output_tokens, Some(5));
        let err = decode_completion(br#"{"choices": []}"#).unwrap_err();
        assert_eq!(err.kind, ErrorKind::BadResponse);
    }

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(429), ErrorKind::Throttled);
        assert_eq!(classify_status(503), ErrorKind::Server);
        assert_eq!(classify_status(408), ErrorKind::Timeout);
        assert_eq!(classify_status(400), ErrorKind::Client);
        assert_eq!(classify_status(401), ErrorKind::Client);
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
