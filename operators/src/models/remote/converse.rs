//! `provider = 'bedrock'`, `task = 'chat'`: the Bedrock Converse API through
//! `aws-sdk-bedrockruntime`.
//!
//! Owns the Converse request (system prompt, optional `cachePoint` after it, one user turn,
//! `maxTokens`/`temperature`) and reading the answer and its usage (`inputTokens`,
//! `outputTokens`, `cacheReadInputTokens`, `cacheWriteInputTokens`). Client construction and
//! error classification are shared with the embedding provider ([`super::bedrock`]); it
//! never retries (the [`ClientStack`] does).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::types::{
    CachePointBlock, CachePointType, ContentBlock, ConversationRole, ConverseOutput,
    InferenceConfiguration, Message, SystemContentBlock,
};

use super::bedrock::{classify_sdk_error, runtime_client};
use super::stack::{
    CallError, ClientStack, ErrorKind, ModelIdentity, Provider, Reply, StackConfig, TokenUsage,
};
use crate::error::Result;
use crate::models::chat::{ChatModel, ChatReply, ChatRequest};
use crate::models::ModelOptions;

/// One Converse attempt.
#[derive(Debug)]
pub struct Converse {
    client: aws_sdk_bedrockruntime::Client,
    model_id: String,
    target: String,
    prompt_cache: bool,
}

/// A Converse request, built once and sent by every attempt.
#[derive(Debug)]
pub struct ConverseRequest {
    system: Vec<SystemContentBlock>,
    messages: Vec<Message>,
    inference: InferenceConfiguration,
}

fn usage_of(out: &aws_sdk_bedrockruntime::operation::converse::ConverseOutput) -> TokenUsage {
    let n = |v: i32| Some(u64::try_from(v).unwrap_or(0));
    match out.usage() {
        None => TokenUsage::default(),
        Some(u) => TokenUsage {
            input_tokens: n(u.input_tokens()),
            output_tokens: n(u.output_tokens()),
            cache_read_tokens: u.cache_read_input_tokens().and_then(n),
            cache_write_tokens: u.cache_write_input_tokens().and_then(n),
        },
    }
}

#[async_trait]
impl Provider for Converse {
    type Request = ConverseRequest;
    type Response = String;

    fn target(&self) -> &str {
        &self.target
    }

    async fn send(&self, request: &ConverseRequest) -> Result<Reply<String>, CallError> {
        let out = self
            .client
            .converse()
            .model_id(&self.model_id)
            .set_system(Some(request.system.clone()).filter(|s| !s.is_empty()))
            .set_messages(Some(request.messages.clone()))
            .inference_config(request.inference.clone())
            .send()
            .await
            .map_err(|e| {
                classify_sdk_error(&e, |e| match e {
                    ConverseError::ThrottlingException(_) => Some(ErrorKind::Throttled),
                    ConverseError::InternalServerException(_)
                    | ConverseError::ServiceUnavailableException(_)
                    | ConverseError::ModelNotReadyException(_) => Some(ErrorKind::Server),
                    ConverseError::ModelTimeoutException(_) => Some(ErrorKind::Timeout),
                    _ => None,
                })
            })?;
        let usage = usage_of(&out);
        let text = match out.output() {
            Some(ConverseOutput::Message(m)) => m
                .content()
                .iter()
                .filter_map(|c| match c {
                    ContentBlock::Text(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
            _ => {
                return Err(CallError::new(
                    ErrorKind::BadResponse,
                    "the Converse response holds no message",
                ))
            }
        };
        Ok(Reply { value: text, usage })
    }
}

/// `ai_complete` / `ai_summarize` through Bedrock Converse.
#[derive(Debug)]
pub struct BedrockChat {
    stack: ClientStack<Converse>,
}

impl BedrockChat {
    /// Options: `model_id` (required); `region`, `endpoint`, `timeout_ms`, `prompt_cache`
    /// (a `cachePoint` after the system prompt, so the shared prefix is billed at the
    /// cache-read price on later calls).
    pub async fn from_options(opts: &mut ModelOptions, config: StackConfig) -> Result<Self> {
        let model_id = opts.require(
            "model_id",
            "a Bedrock model or inference profile id, e.g. 'anthropic.claude-3-haiku-20240307-v1:0'",
        )?;
        let prompt_cache = opts.take_bool("prompt_cache")?.unwrap_or(false);
        let (client, target) = runtime_client(opts, "Converse").await?;
        let identity = ModelIdentity {
            name: opts.model().to_ascii_lowercase(),
            provider: "bedrock",
            model_id: model_id.clone(),
        };
        let provider = Converse {
            client,
            model_id,
            target,
            prompt_cache,
        };
        Ok(Self {
            stack: ClientStack::new(identity, provider, config),
        })
    }

    fn request(&self, request: &ChatRequest) -> Result<ConverseRequest> {
        let provider = self.stack.provider();
        let mut system = Vec::new();
        if let Some(s) = &request.system {
            system.push(SystemContentBlock::Text(s.clone()));
            if provider.prompt_cache {
                let point = CachePointBlock::builder()
                    .r#type(CachePointType::Default)
                    .build()
                    .map_err(|e| self.build_error(e))?;
                system.push(SystemContentBlock::CachePoint(point));
            }
        }
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text(request.prompt.clone()))
            .build()
            .map_err(|e| self.build_error(e))?;
        let inference = InferenceConfiguration::builder()
            .max_tokens(i32::try_from(request.max_tokens).unwrap_or(i32::MAX))
            .set_temperature(request.temperature)
            .build();
        Ok(ConverseRequest {
            system,
            messages: vec![message],
            inference,
        })
    }

    fn build_error(&self, e: impl std::fmt::Display) -> crate::OperatorError {
        crate::OperatorError::Call {
            model: self.stack.identity().name.clone(),
            message: format!("cannot build the Converse request: {e}"),
        }
    }
}

#[async_trait]
impl ChatModel for BedrockChat {
    fn model_id(&self) -> &str {
        &self.stack.identity().model_id
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply> {
        let wire = self.request(request)?;
        super::chat_call(&self.stack, &wire, request).await
    }
}

/// `provider = 'bedrock'`, `task = 'chat'`.
pub(super) async fn build(
    opts: &mut ModelOptions,
    observer: Option<Arc<dyn super::stack::AttemptObserver>>,
) -> Result<Arc<dyn ChatModel>> {
    let config = StackConfig::from_options(opts, observer)?;
    Ok(Arc::new(BedrockChat::from_options(opts, config).await?))
}
