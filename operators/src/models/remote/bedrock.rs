//! `provider = 'bedrock'`, `task = 'embedding'`: InvokeModel through `aws-sdk-bedrockruntime`
//! for Titan Text Embeddings V2 and Cohere Embed v3.
//!
//! Owns the SDK client (region, endpoint override, credentials from the standard AWS chain,
//! rustls with ring, the SDK's own retries turned off), the request and response bodies of
//! each model family, and the classification of SDK errors into [`CallError`]s. It must not
//! retry or rate-limit (the [`ClientStack`] does) and never logs credentials.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_bedrockruntime::config::{ConfigBag, Intercept, ProvideCredentials, RuntimeComponents};
use aws_sdk_bedrockruntime::error::{
    BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError,
};
use aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError;
use aws_sdk_bedrockruntime::primitives::Blob;
use serde::Deserialize;

use super::openai::{required_dimensions, take_timeout};
use super::retry::parse_retry_after;
use super::stack::{
    CallError, ClientStack, ErrorKind, ModelIdentity, Provider, Reply, StackConfig, TokenUsage,
};
use super::{describe, in_order, limits::estimate_tokens, BatchPlan};
use crate::error::{OperatorError, Result};
use crate::models::{Embedder, ModelOptions};

/// Texts per InvokeModel call that Cohere Embed v3 accepts.
pub const COHERE_MAX_BATCH: usize = 96;
/// Default calls in flight per `embed` call (`max_concurrency`): Titan takes one text a call.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The model families this provider embeds with, chosen by `model_id` prefix.
const FAMILIES: &str = "'amazon.titan-embed-text-v2:0' (Titan Text Embeddings V2), \
                        'cohere.embed-english-v3' and 'cohere.embed-multilingual-v3' (Cohere Embed v3)";

/// Request and response format of a model family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Family {
    /// Titan Text Embeddings V2: one text per call; `dimensions` 256, 512 or 1024.
    Titan {
        /// `normalize` (default true).
        normalize: bool,
    },
    /// Cohere Embed v3: up to 96 texts per call, 1024 values each.
    Cohere {
        /// `input_type`: `search_document` (default), `search_query`, `classification`,
        /// `clustering`.
        input_type: String,
    },
}

/// One InvokeModel attempt.
#[derive(Debug)]
pub struct BedrockEmbeddings {
    client: aws_sdk_bedrockruntime::Client,
    model_id: String,
    target: String,
    family: Family,
    dimensions: usize,
}

/// A serialized InvokeModel body and how many texts it holds.
#[derive(Debug)]
pub struct InvokeRequest {
    body: Vec<u8>,
    texts: usize,
}

#[derive(Deserialize)]
struct TitanResponse {
    embedding: Vec<f32>,
    #[serde(rename = "inputTextTokenCount", default)]
    input_text_token_count: Option<u64>,
}

#[derive(Deserialize)]
struct CohereResponse {
    embeddings: CohereEmbeddings,
}

/// `embeddings` is a list of vectors, or `{"float": [...]}` when embedding types were asked for.
#[derive(Deserialize)]
#[serde(untagged)]
enum CohereEmbeddings {
    Floats(Vec<Vec<f32>>),
    ByType { float: Vec<Vec<f32>> },
}

/// Header in which Bedrock reports an InvokeModel's input tokens (the SDK's output type does
/// not carry it).
const INPUT_TOKENS_HEADER: &str = "x-amzn-bedrock-input-token-count";

/// Reads [`INPUT_TOKENS_HEADER`] off one call's response. `u64::MAX`: not seen.
#[derive(Debug)]
struct ReadInputTokens(Arc<AtomicU64>);

impl Intercept for ReadInputTokens {
    fn name(&self) -> &'static str {
        "strata::ReadInputTokens"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(n) = context
            .response()
            .headers()
            .get(INPUT_TOKENS_HEADER)
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            self.0.store(n, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl BedrockEmbeddings {
    fn classify(
        error: &SdkError<InvokeModelError, aws_sdk_bedrockruntime::config::http::HttpResponse>,
    ) -> CallError {
        classify_sdk_error(error, |e| match e {
            InvokeModelError::ThrottlingException(_)
            | InvokeModelError::ServiceQuotaExceededException(_) => Some(ErrorKind::Throttled),
            InvokeModelError::InternalServerException(_)
            | InvokeModelError::ServiceUnavailableException(_)
            | InvokeModelError::ModelNotReadyException(_) => Some(ErrorKind::Server),
            InvokeModelError::ModelTimeoutException(_) => Some(ErrorKind::Timeout),
            _ => None,
        })
    }

    fn decode(&self, body: &[u8], texts: usize) -> Result<Reply<Vec<f32>>, CallError> {
        let bad = |m: String| CallError::new(ErrorKind::BadResponse, m);
        let (vectors, input_tokens) = match &self.family {
            Family::Titan { .. } => {
                let r: TitanResponse = serde_json::from_slice(body)
                    .map_err(|e| bad(format!("response is not a Titan embedding response: {e}")))?;
                (vec![r.embedding], r.input_text_token_count)
            }
            Family::Cohere { .. } => {
                let r: CohereResponse = serde_json::from_slice(body)
                    .map_err(|e| bad(format!("response is not a Cohere embed response: {e}")))?;
                let v = match r.embeddings {
                    CohereEmbeddings::Floats(v) | CohereEmbeddings::ByType { float: v } => v,
                };
                (v, None)
            }
        };
        if vectors.len() != texts {
            return Err(bad(format!(
                "sent {texts} texts but the response holds {} embeddings",
                vectors.len()
            )));
        }
        let mut out = Vec::with_capacity(texts * self.dimensions);
        for (i, v) in vectors.into_iter().enumerate() {
            if v.len() != self.dimensions {
                return Err(bad(format!(
                    "embedding {i} has {} values but the model declares dimensions = {}; set \
                     dimensions to the model's output size",
                    v.len(),
                    self.dimensions
                )));
            }
            out.extend_from_slice(&v);
        }
        Ok(Reply {
            value: out,
            usage: TokenUsage {
                input_tokens,
                ..TokenUsage::default()
            },
        })
    }
}

#[async_trait]
impl Provider for BedrockEmbeddings {
    type Request = InvokeRequest;
    type Response = Vec<f32>;

    fn target(&self) -> &str {
        &self.target
    }

    async fn send(&self, request: &InvokeRequest) -> Result<Reply<Vec<f32>>, CallError> {
        let header_tokens = Arc::new(AtomicU64::new(u64::MAX));
        let output = self
            .client
            .invoke_model()
            .model_id(&self.model_id)
            .content_type("application/json")
            .accept("application/json")
            .body(Blob::new(request.body.clone()))
            .customize()
            .interceptor(ReadInputTokens(header_tokens.clone()))
            .send()
            .await
            .map_err(|e| Self::classify(&e))?;
        let mut reply = self.decode(output.body().as_ref(), request.texts)?;
        let from_header = header_tokens.load(Ordering::Relaxed);
        if from_header != u64::MAX {
            reply.usage.input_tokens = Some(from_header);
        }
        Ok(reply)
    }
}

/// `embed` through Bedrock InvokeModel.
#[derive(Debug)]
pub struct BedrockEmbedder {
    stack: ClientStack<BedrockEmbeddings>,
    plan: BatchPlan,
}

impl BedrockEmbedder {
    /// Build from the options of `CREATE MODEL ... WITH (provider = 'bedrock', ...)`; `config`
    /// carries the stack settings (see [`StackConfig::from_options`]).
    ///
    /// Options: `model_id`, `dimensions` (required); `region`, `endpoint`, `normalize` (Titan),
    /// `input_type` and `max_batch` (Cohere), `max_concurrency`, `timeout_ms`. Credentials
    /// come from the standard AWS chain and are resolved here, so a missing one is a plan error.
    pub async fn from_options(opts: &mut ModelOptions, config: StackConfig) -> Result<Self> {
        let model_id = opts.require("model_id", FAMILIES)?;
        let dimensions = required_dimensions(opts)?;
        let family = if model_id.starts_with("amazon.titan-embed-text-v2") {
            if !matches!(dimensions, 256 | 512 | 1024) {
                return Err(opts.error(
                    "dimensions",
                    format!("Titan Text Embeddings V2 returns 256, 512 or 1024 values, got {dimensions}"),
                ));
            }
            if opts.take("input_type").is_some() {
                return Err(opts.error("input_type", "applies to Cohere models only"));
            }
            Family::Titan {
                normalize: opts.take_bool("normalize")?.unwrap_or(true),
            }
        } else if model_id.starts_with("cohere.embed-english-v3")
            || model_id.starts_with("cohere.embed-multilingual-v3")
        {
            if dimensions != 1024 {
                return Err(opts.error(
                    "dimensions",
                    format!("Cohere Embed v3 returns 1024 values, got {dimensions}"),
                ));
            }
            if opts.take("normalize").is_some() {
                return Err(opts.error("normalize", "applies to Titan models only"));
            }
            let input_type = opts
                .take("input_type")
                .unwrap_or_else(|| "search_document".into());
            if !matches!(
                input_type.as_str(),
                "search_document" | "search_query" | "classification" | "clustering"
            ) {
                return Err(opts.error(
                    "input_type",
                    format!(
                        "unknown input_type '{input_type}': use search_document, search_query, \
                         classification or clustering"
                    ),
                ));
            }
            Family::Cohere { input_type }
        } else {
            return Err(opts.error(
                "model_id",
                format!("'{model_id}' is not a supported embedding model; supported: {FAMILIES}"),
            ));
        };
        let plan = match family {
            Family::Titan { .. } => {
                if opts.take("max_batch").is_some() {
                    return Err(opts.error(
                        "max_batch",
                        "Titan embeds one text per call; remove max_batch",
                    ));
                }
                BatchPlan::from_options(opts, 1, 1, DEFAULT_MAX_CONCURRENCY)?
            }
            Family::Cohere { .. } => BatchPlan::from_options(
                opts,
                COHERE_MAX_BATCH,
                COHERE_MAX_BATCH,
                DEFAULT_MAX_CONCURRENCY,
            )?,
        };
        let (client, target) = runtime_client(opts, "InvokeModel").await?;
        let identity = ModelIdentity {
            name: opts.model().to_ascii_lowercase(),
            provider: "bedrock",
            model_id: model_id.clone(),
        };
        let provider = BedrockEmbeddings {
            client,
            model_id,
            target,
            family,
            dimensions,
        };
        Ok(Self {
            stack: ClientStack::new(identity, provider, config),
            plan,
        })
    }

    /// One request's worth of texts through the client stack.
    async fn embed_batch(&self, batch: &[String]) -> Result<Vec<f32>> {
        let request = self.request(batch);
        let tokens = batch.iter().map(|t| estimate_tokens(t)).sum();
        Ok(self.stack.call(&request, tokens).await?.value)
    }

    fn request(&self, texts: &[String]) -> InvokeRequest {
        let provider = self.stack.provider();
        let body = match &provider.family {
            Family::Titan { normalize } => serde_json::json!({
                "inputText": texts[0],
                "dimensions": provider.dimensions,
                "normalize": normalize,
            }),
            Family::Cohere { input_type } => serde_json::json!({
                "texts": texts,
                "input_type": input_type,
            }),
        };
        InvokeRequest {
            body: serde_json::to_vec(&body).expect("a JSON value serializes"),
            texts: texts.len(),
        }
    }
}

#[async_trait]
impl Embedder for BedrockEmbedder {
    fn model_id(&self) -> &str {
        &self.stack.identity().model_id
    }

    fn dimensions(&self) -> usize {
        self.stack.provider().dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<f32>> {
        let calls: Vec<_> = texts
            .chunks(self.plan.max_batch)
            .map(|batch| self.embed_batch(batch))
            .collect();
        in_order(calls, self.plan.max_concurrency).await
    }
}

/// Classify a Bedrock runtime SDK error for the retry layer. `service_kind` maps the
/// operation's modelled errors; anything it leaves out is classified by HTTP status
/// (429 throttled, 5xx server, other client).
pub(super) fn classify_sdk_error<E>(
    error: &SdkError<E, aws_sdk_bedrockruntime::config::http::HttpResponse>,
    service_kind: impl Fn(&E) -> Option<ErrorKind>,
) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let retry_after = error
        .raw_response()
        .and_then(|r| r.headers().get("retry-after"))
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let (kind, code, message) = match error {
        SdkError::ServiceError(ctx) => {
            let e = ctx.err();
            let kind = service_kind(e).unwrap_or(match status {
                Some(429) => ErrorKind::Throttled,
                Some(s) if s >= 500 => ErrorKind::Server,
                _ => ErrorKind::Client,
            });
            let message = e
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| DisplayErrorContext(error).to_string());
            (kind, e.code().map(str::to_string), message)
        }
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, None, describe(error)),
        SdkError::DispatchFailure(d) => {
            let kind = if d.is_timeout() {
                ErrorKind::Timeout
            } else if d.is_io() {
                ErrorKind::Connect
            } else {
                ErrorKind::Client
            };
            (kind, None, describe(error))
        }
        SdkError::ResponseError(_) => (ErrorKind::Server, None, describe(error)),
        _ => (ErrorKind::Client, None, describe(error)),
    };
    CallError {
        kind,
        status,
        code,
        message,
        retry_after,
    }
}

/// `region`, `endpoint` and `timeout_ms`: a Bedrock runtime client with the SDK's retries
/// off (the client stack retries), credentials and region resolved now (a missing one is a
/// plan error), and the target named in errors (`bedrock {operation} in us-east-1`).
pub(super) async fn runtime_client(
    opts: &mut ModelOptions,
    operation: &str,
) -> Result<(aws_sdk_bedrockruntime::Client, String)> {
    let timeout = take_timeout(opts)?;
    let region = opts.take("region");
    let endpoint = opts.take("endpoint");
    if let Some(ep) = &endpoint {
        let ok = reqwest::Url::parse(ep)
            .map(|u| matches!(u.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !ok {
            return Err(opts.error(
                "endpoint",
                format!("'{ep}' must be an http:// or https:// URL"),
            ));
        }
    }

    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        // The client stack is the only place that retries.
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT.min(timeout))
                .operation_attempt_timeout(timeout)
                .build(),
        );
    if let Some(region) = &region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &endpoint {
        loader = loader.endpoint_url(endpoint.clone());
    }
    let sdk = loader.load().await;
    let Some(region) = sdk.region().map(|r| r.to_string()) else {
        return Err(opts.error(
            "region",
            "no AWS region: set region = 'us-east-1' (or the AWS_REGION environment variable)",
        ));
    };
    let no_credentials = |detail: String| OperatorError::Model {
        model: opts.model().to_string(),
        key: None,
        message: detail,
    };
    let credentials = sdk
        .credentials_provider()
        .ok_or_else(|| no_credentials("no AWS credentials provider is configured".into()))?;
    if let Err(e) = credentials.provide_credentials().await {
        return Err(no_credentials(format!(
            "no AWS credentials found in the standard chain (AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws, web identity, container or \
                 instance role): {}",
            DisplayErrorContext(&e)
        )));
    }
    let target = match &endpoint {
        Some(ep) => format!("bedrock {operation} at {ep}"),
        None => format!("bedrock {operation} in {region}"),
    };
    Ok((aws_sdk_bedrockruntime::Client::new(&sdk), target))
}

/// Convenience for [`super::bedrock_embedder`].
pub(super) async fn build(
    opts: &mut ModelOptions,
    observer: Option<Arc<dyn super::stack::AttemptObserver>>,
) -> Result<Arc<dyn Embedder>> {
    let config = StackConfig::from_options(opts, observer)?;
    Ok(Arc::new(BedrockEmbedder::from_options(opts, config).await?))
}
