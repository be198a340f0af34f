//! The input guardrail of a model: `CREATE MODEL ... WITH (redact_input = true
//! [, redact_types = 'EMAIL, PHONE'])` masks PII in every text before it leaves the process
//! (Bedrock Guardrails style `{EMAIL}` placeholders), so neither the provider nor anything
//! keyed by the text downstream ever sees the raw value.
//!
//! It wraps the provider's [`Embedder`] ([`GuardedEmbedder`]) or the whole chat client
//! ([`GuardedChat`], outside the response cache): one place, whatever the provider.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Embedder, ModelOptions};
use crate::error::{OperatorError, Result};
use crate::pii::{redact, EntitySet, PiiConfig, PiiDetector, RedactOperator};

/// What the guardrail did to one text (`guardrail_action` in usage, as Bedrock reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardrailAction {
    /// Nothing found.
    None,
    /// At least one entity was masked.
    Anonymized,
}

impl GuardrailAction {
    /// `NONE` / `ANONYMIZED`.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardrailAction::None => "NONE",
            GuardrailAction::Anonymized => "ANONYMIZED",
        }
    }
}

/// Which entities to mask, from the model's options.
#[derive(Clone, Debug)]
pub struct InputGuardrail {
    detector: PiiDetector,
    types: EntitySet,
}

impl InputGuardrail {
    /// Read `redact_input` and `redact_types`; `None` when the guardrail is off. Types are
    /// Bedrock Guardrails entity names, comma-separated; the default is every type the
    /// regex-and-checksum detectors find.
    pub fn from_options(opts: &mut ModelOptions, pii: &PiiConfig) -> Result<Option<Self>> {
        let on = opts.take_bool("redact_input")?.unwrap_or(false);
        let types = opts.take("redact_types");
        if !on {
            if types.is_some() {
                return Err(opts.error(
                    "redact_types",
                    "only applies with redact_input = true; add it or remove redact_types",
                ));
            }
            return Ok(None);
        }
        let types = match types {
            None => EntitySet::structured(),
            Some(list) => {
                let set = EntitySet::parse(list.split(','))
                    .map_err(|e| opts.error("redact_types", e.to_string()))?;
                if set.is_empty() {
                    return Err(opts.error("redact_types", "names no entity type"));
                }
                if let Some(e) = set.iter().find(|e| e.needs_ner()) {
                    return Err(opts.error(
                        "redact_types",
                        format!(
                            "{} needs the NER model, which this build does not have yet; \
                             list regex-and-checksum types only",
                            e.name()
                        ),
                    ));
                }
                set
            }
        };
        Ok(Some(Self {
            detector: PiiDetector::new(pii),
            types,
        }))
    }

    /// `text` with every entity masked, and what was done.
    pub fn apply(&self, text: &str) -> Result<(String, GuardrailAction)> {
        let found = self.detector.detect(text, self.types)?;
        if found.is_empty() {
            return Ok((text.to_string(), GuardrailAction::None));
        }
        Ok((
            redact(text, &found, RedactOperator::Mask, None)?,
            GuardrailAction::Anonymized,
        ))
    }
}

/// An [`Embedder`] whose texts pass the guardrail first.
#[derive(Debug)]
pub struct GuardedEmbedder {
    inner: Arc<dyn Embedder>,
    guardrail: Arc<InputGuardrail>,
}

impl GuardedEmbedder {
    /// Guard `inner`.
    pub fn new(inner: Arc<dyn Embedder>, guardrail: InputGuardrail) -> Self {
        Self {
            inner,
            guardrail: Arc::new(guardrail),
        }
    }
}

#[async_trait]
impl Embedder for GuardedEmbedder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<f32>> {
        let guardrail = Arc::clone(&self.guardrail);
        let owned = texts.to_vec();
        // Detection is CPU work (regexes and checksums): keep it off the async workers.
        let redacted = tokio::task::spawn_blocking(move || {
            owned
                .iter()
                .map(|t| guardrail.apply(t))
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| OperatorError::Call {
            model: self.inner.model_id().to_string(),
            message: format!("the input guardrail failed: {e}"),
        })??;
        let anonymized = redacted
            .iter()
            .filter(|(_, a)| *a == GuardrailAction::Anonymized)
            .count();
        metrics::counter!("strata_guardrail_texts_total", "model" => self.inner.model_id().to_string(), "action" => "ANONYMIZED")
            .increment(anonymized as u64);
        metrics::counter!("strata_guardrail_texts_total", "model" => self.inner.model_id().to_string(), "action" => "NONE")
            .increment((redacted.len() - anonymized) as u64);
        let texts: Vec<String> = redacted.into_iter().map(|(t, _)| t).collect();
        self.inner.embed(&texts).await
    }
}

/// A chat model whose prompts pass the input guardrail first. It sits outside the response
/// cache, so cache keys (and everything after) only ever see the redacted prompt; the
/// action lands in the usage rows of the call (`guardrail_action`).
#[derive(Debug)]
pub struct GuardedChat {
    inner: Arc<dyn super::chat::ChatModel>,
    guardrail: Arc<InputGuardrail>,
}

impl GuardedChat {
    /// Guard `inner` with `guardrail`.
    pub fn new(inner: Arc<dyn super::chat::ChatModel>, guardrail: InputGuardrail) -> Self {
        Self {
            inner,
            guardrail: Arc::new(guardrail),
        }
    }
}

#[async_trait]
impl super::chat::ChatModel for GuardedChat {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    async fn complete(&self, request: &super::chat::ChatRequest) -> Result<super::chat::ChatReply> {
        let guardrail = Arc::clone(&self.guardrail);
        let prompt = request.prompt.clone();
        let (redacted, action) = tokio::task::spawn_blocking(move || guardrail.apply(&prompt))
            .await
            .map_err(|e| OperatorError::Call {
                model: self.inner.model_id().to_string(),
                message: format!("the input guardrail failed: {e}"),
            })??;
        metrics::counter!(
            "strata_guardrail_texts_total",
            "model" => self.inner.model_id().to_string(),
            "action" => action.as_str(),
        )
        .increment(1);
        let request = super::chat::ChatRequest {
            prompt: redacted,
            ..request.clone()
        };
        let call = super::usage::CallContext {
            guardrail_action: Some(action.as_str()),
            ..super::usage::CallContext::current()
        };
        super::usage::with_call(call, self.inner.complete(&request)).await
    }
}
