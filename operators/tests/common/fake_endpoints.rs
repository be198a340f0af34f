//! Fake model endpoints on 127.0.0.1 for the remote-provider tests: an OpenAI-compatible
//! server (`POST /v1/embeddings`) and a Bedrock runtime (`POST /model/{id}/invoke` for Titan
//! Text Embeddings V2 and Cohere Embed v3), with fault injection, recording every request.
//!
//! Faults are a script: each request takes the next scripted [`Fault`] (if any), else the
//! standing one (if set), else it is answered normally. Answers are deterministic
//! ([`fake_vector`], [`fake_answer`]), so tests can check values and order. Chat:
//! `POST /v1/chat/completions` and Bedrock `POST /model/{id}/converse` (with prompt-cache
//! usage for a `cachePoint` after the system prompt). A latency can be set for every answer.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// What to do instead of answering normally.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, an optional `Retry-After`, and an error body in the route's
    /// format (OpenAI `{"error": ...}`, Bedrock `{"message"}` + `x-amzn-ErrorType: code`).
    Status {
        status: u16,
        retry_after: Option<&'static str>,
        code: &'static str,
        message: &'static str,
    },
    /// Answer normally: lets a script leave a request unfaulted.
    Pass,
    /// Answer normally, but with vectors of this length whatever was asked.
    WrongDimensions(usize),
}

impl Fault {
    /// HTTP 429 / `ThrottlingException`, with `Retry-After`.
    pub fn throttled(retry_after: Option<&'static str>) -> Self {
        Fault::Status {
            status: 429,
            retry_after,
            code: "ThrottlingException",
            message: "Too many requests, please wait before trying again.",
        }
    }

    /// HTTP 500 / `InternalServerException`.
    pub fn server_error() -> Self {
        Fault::Status {
            status: 500,
            retry_after: None,
            code: "InternalServerException",
            message: "internal failure",
        }
    }

    /// HTTP 503 / `ServiceUnavailableException`.
    pub fn unavailable() -> Self {
        Fault::Status {
            status: 503,
            retry_after: None,
            code: "ServiceUnavailableException",
            message: "service unavailable",
        }
    }

    /// HTTP 400 / `ValidationException`.
    pub fn validation(message: &'static str) -> Self {
        Fault::Status {
            status: 400,
            retry_after: None,
            code: "ValidationException",
            message,
        }
    }
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// `POST`, ...
    pub method: String,
    /// The path as sent (percent-encoded).
    pub path: String,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    /// The body, as JSON.
    pub body: Value,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Fault>>,
    standing: Mutex<Option<Fault>>,
    received: Mutex<Vec<Received>>,
    latency: Mutex<std::time::Duration>,
    /// System prompts seen before a `cachePoint` (Converse): the first call writes the
    /// prompt cache, later ones read it.
    cached_prefixes: Mutex<std::collections::HashSet<String>>,
    /// Throttle every n-th request (0: never), counted over all requests.
    throttle_every: std::sync::atomic::AtomicU64,
    requests: std::sync::atomic::AtomicU64,
}

/// A fake endpoint serving both the OpenAI and the Bedrock routes. Stops when dropped.
pub struct FakeEndpoint {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeEndpoint {
    /// Start on an ephemeral port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State::default());
        let served = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OpenAI base URL: `http://127.0.0.1:PORT/v1`.
    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// Answer the next requests with these faults, in order.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.script.lock().unwrap().extend(faults);
    }

    /// Answer every unscripted request with `fault` (`None`: answer normally).
    pub fn always(&self, fault: Option<Fault>) {
        *self.state.standing.lock().unwrap() = fault;
    }

    /// Wait this long before answering each request.
    pub fn set_latency(&self, latency: std::time::Duration) {
        *self.state.latency.lock().unwrap() = latency;
    }

    /// Answer every `n`-th request (the 5th, 10th, ...) with HTTP 429 and no `Retry-After`:
    /// `n = 5` throttles 20% of the responses. 0 turns it off.
    pub fn throttle_every(&self, n: u64) {
        self.state
            .throttle_every
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

/// Dummy AWS credentials for SigV4 against the fake Bedrock routes, and no lookups outside
/// the process (profiles, instance metadata).
pub fn aws_test_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "AKIDSTRATATEST");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "strata-test-secret");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/strata-test-aws-config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/strata-test-aws-credentials",
        );
        std::env::remove_var("AWS_PROFILE");
        std::env::remove_var("AWS_SESSION_TOKEN");
    });
}

/// The vector the fake returns for `text`: deterministic, distinct per text and position.
pub fn fake_vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..dimensions)
        .map(|j| ((h >> (j % 48)) & 0xffff) as f32 / 65_536.0 + j as f32)
        .collect()
}

/// A chat prompt containing this is answered with HTTP 400 (not retried).
pub const INVALID_PROMPT: &str = "<<invalid>>";

/// The chat answer the fake gives to `prompt`: deterministic and distinct per prompt.
pub fn fake_answer(prompt: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prompt.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("answer {h:016x} to {} words", fake_tokens(prompt))
}

/// A rough token count the fake reports as usage: words.
pub fn fake_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let seq = state
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    let every = state
        .throttle_every
        .load(std::sync::atomic::Ordering::SeqCst);
    let fault = {
        let next = state.script.lock().unwrap().pop_front();
        next.or_else(|| state.standing.lock().unwrap().clone())
            .or_else(|| (every > 0 && seq.is_multiple_of(every)).then(|| Fault::throttled(None)))
    };
    let latency = *state.latency.lock().unwrap();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let bedrock = path.starts_with("/model/");
    let response = match (&fault, path.as_str()) {
        (
            Some(Fault::Status {
                status,
                retry_after,
                code,
                message,
            }),
            _,
        ) => error_response(bedrock, *status, *retry_after, code, message),
        (_, "/v1/embeddings") => {
            let wrong = match fault {
                Some(Fault::WrongDimensions(d)) => Some(d),
                _ => None,
            };
            openai_embeddings(&body, wrong)
        }
        (_, "/v1/chat/completions") => openai_chat(&body),
        (_, p) if bedrock && p.ends_with("/converse") => bedrock_converse(&state, &body),
        (_, p) if bedrock && p.ends_with("/invoke") => {
            let model = percent_decode(&p["/model/".len()..p.len() - "/invoke".len()]);
            bedrock_invoke(&model, &body)
        }
        _ => error_response(
            bedrock,
            404,
            None,
            "ResourceNotFoundException",
            "no such route",
        ),
    };
    state.received.lock().unwrap().push(Received {
        at,
        method,
        path,
        headers,
        body,
        status: response.status().as_u16(),
    });
    Ok(response)
}

fn json_response(status: u16, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error_response(
    bedrock: bool,
    status: u16,
    retry_after: Option<&str>,
    code: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    let body = if bedrock {
        json!({ "message": message })
    } else {
        json!({ "error": { "message": message, "type": code, "code": null } })
    };
    let mut response = json_response(status, body);
    if bedrock {
        response.headers_mut().insert(
            "x-amzn-errortype",
            format!("{code}:http://internal.amazon.com/coral/com.amazon.bedrock/")
                .parse()
                .unwrap(),
        );
    }
    if let Some(after) = retry_after {
        response
            .headers_mut()
            .insert("retry-after", after.parse().unwrap());
    }
    response
}

fn openai_embeddings(body: &Value, wrong_dimensions: Option<usize>) -> Response<Full<Bytes>> {
    let texts: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap_or("").to_string())
            .collect(),
        _ => {
            return error_response(
                false,
                400,
                None,
                "invalid_request_error",
                "'input' is required",
            )
        }
    };
    let d = wrong_dimensions
        .or_else(|| body["dimensions"].as_u64().map(|d| d as usize))
        .unwrap_or(8);
    // Answer in reverse order: clients must order by `index`.
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({ "object": "embedding", "index": i, "embedding": fake_vector(t, d) }))
        .collect();
    let tokens: u64 = texts.iter().map(|t| fake_tokens(t)).sum();
    json_response(
        200,
        json!({
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
        }),
    )
}

fn openai_chat(body: &Value) -> Response<Full<Bytes>> {
    let Some(messages) = body["messages"].as_array() else {
        return error_response(
            false,
            400,
            None,
            "invalid_request_error",
            "'messages' is required",
        );
    };
    let prompt = messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("");
    let input: u64 = messages
        .iter()
        .filter_map(|m| m["content"].as_str())
        .map(fake_tokens)
        .sum();
    // A prompt asking for it gets a validation error, whatever the order of requests.
    if prompt.contains(INVALID_PROMPT) {
        return error_response(
            false,
            400,
            None,
            "invalid_request_error",
            "the prompt is not allowed",
        );
    }
    let answer = fake_answer(prompt);
    let max_tokens = body["max_tokens"].as_u64().unwrap_or(u64::MAX);
    let output = fake_tokens(&answer).min(max_tokens);
    json_response(
        200,
        json!({
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": input, "completion_tokens": output,
                      "total_tokens": input + output},
        }),
    )
}

fn bedrock_converse(state: &State, body: &Value) -> Response<Full<Bytes>> {
    let text_of = |blocks: &Value| -> String {
        blocks
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|c| c["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("")
            })
            .unwrap_or_default()
    };
    let Some(prompt) = body["messages"]
        .as_array()
        .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
        .map(|m| text_of(&m["content"]))
    else {
        return error_response(
            true,
            400,
            None,
            "ValidationException",
            "messages is required",
        );
    };
    if prompt.contains(INVALID_PROMPT) {
        return error_response(
            true,
            400,
            None,
            "ValidationException",
            "the prompt is not allowed",
        );
    }
    let system = text_of(&body["system"]);
    let cache_point = body["system"]
        .as_array()
        .is_some_and(|b| b.iter().any(|c| c.get("cachePoint").is_some()));
    let system_tokens = fake_tokens(&system);
    let (input, read, write) = if cache_point && system_tokens > 0 {
        let fresh = state.cached_prefixes.lock().unwrap().insert(system.clone());
        if fresh {
            (fake_tokens(&prompt), 0, system_tokens)
        } else {
            (fake_tokens(&prompt), system_tokens, 0)
        }
    } else {
        (fake_tokens(&prompt) + system_tokens, 0, 0)
    };
    let answer = fake_answer(&prompt);
    let max_tokens = body["inferenceConfig"]["maxTokens"]
        .as_u64()
        .unwrap_or(u64::MAX);
    let output = fake_tokens(&answer).min(max_tokens);
    json_response(
        200,
        json!({
            "output": {"message": {"role": "assistant", "content": [{"text": answer}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": input, "outputTokens": output,
                      "totalTokens": input + output + read + write,
                      "cacheReadInputTokens": read, "cacheWriteInputTokens": write},
            "metrics": {"latencyMs": 1},
        }),
    )
}

fn bedrock_invoke(model: &str, body: &Value) -> Response<Full<Bytes>> {
    if model.starts_with("amazon.titan-embed-text-v2") {
        let Some(text) = body["inputText"].as_str() else {
            return error_response(
                true,
                400,
                None,
                "ValidationException",
                "inputText is required",
            );
        };
        let d = body["dimensions"].as_u64().unwrap_or(1024) as usize;
        json_response(
            200,
            json!({ "embedding": fake_vector(text, d), "inputTextTokenCount": fake_tokens(text) }),
        )
    } else if model.starts_with("cohere.embed-") {
        let Some(texts) = body["texts"].as_array() else {
            return error_response(true, 400, None, "ValidationException", "texts is required");
        };
        if texts.len() > 96 {
            return error_response(true, 400, None, "ValidationException", "at most 96 texts");
        }
        let texts: Vec<&str> = texts.iter().map(|t| t.as_str().unwrap_or("")).collect();
        let embeddings: Vec<Vec<f32>> = texts.iter().map(|t| fake_vector(t, 1024)).collect();
        let tokens: u64 = texts.iter().map(|t| fake_tokens(t)).sum();
        let mut response = json_response(
            200,
            json!({ "id": "fake", "response_type": "embeddings_floats", "texts": texts, "embeddings": embeddings }),
        );
        // Bedrock reports InvokeModel usage in headers.
        response.headers_mut().insert(
            "x-amzn-bedrock-input-token-count",
            tokens.to_string().parse().unwrap(),
        );
        response
    } else {
        error_response(true, 400, None, "ValidationException", "unknown model")
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
