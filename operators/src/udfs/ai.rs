//! `ai_complete(model, prompt [, max_tokens])` and `ai_summarize(model, text [, max_words])`:
//! text generation by a chat model declared with `CREATE MODEL ... WITH (task = 'chat')`.
//!
//! Owns the SQL surface of chat inference. Both are async UDFs: DataFusion hands over a whole
//! batch, the rows go to the model's client (cache -> budget -> rate limit -> retry ->
//! provider) with at most the model's `max_concurrency` in flight, and the answers come back
//! in input order. The window of finished rows waiting on a slow one is bounded by
//! `max_concurrency` (`buffered`), so a row stuck in retries holds back at most that many.
//!
//! A row whose call fails after the retries follows `SET job.on_model_error`: `fail` stops
//! the job (the epoch is not committed, so nothing is lost), `null` gives NULL and counts it.
//! Running past `job.max_cost_usd` always stops the job.

use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::DataType;
use async_trait::async_trait;
use datafusion::common::{exec_err, plan_err, DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};
use futures::StreamExt;

use super::{scalar_i64, scalar_str, string_values};
use crate::error::OperatorError;
use crate::models::usage::{with_call, CallContext};
use crate::models::ModelRegistry;

/// Version of the `ai_summarize` prompt template. Changing the template means a new version
/// (and, through the cache key, new answers); it is the `prompt_version` label of
/// `strata_ai_rows_total` and of usage.
pub const SUMMARIZE_PROMPT_VERSION: &str = "summarize-v1";
/// `ai_summarize`'s default `max_words`.
pub const DEFAULT_MAX_WORDS: i64 = 100;

/// The `ai_summarize` prompt for `text` (template [`SUMMARIZE_PROMPT_VERSION`]).
pub fn summarize_prompt(text: &str, max_words: i64) -> String {
    format!(
        "Summarize the following text in at most {max_words} words. Answer with the summary \
         only, without a preamble.\n\n<text>\n{text}\n</text>"
    )
}

/// The output bound of a summary of `max_words` words: about 1.5 tokens per English word
/// plus room for punctuation, never above the model's own `max_tokens`.
fn summary_tokens(max_words: i64, model_max: u32) -> u32 {
    let words = u32::try_from(max_words).unwrap_or(u32::MAX);
    words
        .saturating_mul(3)
        .div_ceil(2)
        .saturating_add(16)
        .min(model_max)
}

/// `SET job.on_model_error`: what a row gets when its model call fails for good.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnModelError {
    /// Stop the job with the error (default). The epoch is not committed.
    #[default]
    Fail,
    /// NULL result, counted in `strata_ai_rows_total{result="error"}`.
    Null,
    /// NULL result, and the row's text with the error to the job's dead letter
    /// ([`FailedCalls`]).
    DeadLetter,
}

impl FromStr for OnModelError {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fail" => Ok(OnModelError::Fail),
            "null" => Ok(OnModelError::Null),
            "dead_letter" | "dead-letter" => Ok(OnModelError::DeadLetter),
            other => Err(format!(
                "unknown policy '{other}': use 'fail', 'null' or 'dead_letter'"
            )),
        }
    }
}

/// Rows whose model call failed for good under `job.on_model_error = 'dead_letter'`,
/// collected while an epoch's queries run and written to the dead letter of the job's
/// source with that epoch (a [`strata_pipeline::SideOutput`]), so a failed row is recorded
/// exactly once. A record holds the function's text argument as `raw` and the error as
/// `reason`; the row itself is written with a NULL result.
#[derive(Debug, Default)]
pub struct FailedCalls {
    source: std::sync::OnceLock<String>,
    records: std::sync::Mutex<Vec<strata_pipeline::BadRecord>>,
}

impl FailedCalls {
    /// Records go to the dead letter of source `name` (set once, by the planner).
    pub fn set_source(&self, name: &str) {
        let _ = self.source.set(name.to_string());
    }

    /// One failed row: `text` given to `function` on `model`, which failed with `error`.
    pub fn record(&self, function: &str, model: &str, text: &str, error: &str) {
        self.records
            .lock()
            .expect("failed calls lock")
            .push(strata_pipeline::BadRecord {
                raw: text.as_bytes().to_vec(),
                reason: format!("{function}('{model}') failed after its retries: {error}"),
                split: format!("model:{model}"),
                position: 0,
                location: format!("{function}('{model}', ...)"),
            });
    }
}

impl strata_pipeline::SideOutput for FailedCalls {
    fn drain(&self) -> Option<arrow::record_batch::RecordBatch> {
        let records = std::mem::take(&mut *self.records.lock().expect("failed calls lock"));
        if records.is_empty() {
            return None;
        }
        let source = self.source.get().map(String::as_str).unwrap_or("model");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        Some(strata_pipeline::bad_data::dead_letter_batch(
            source, &records, now,
        ))
    }
}

/// Which of the two functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AiKind {
    /// `ai_complete(model, prompt [, max_tokens])`.
    Complete,
    /// `ai_summarize(model, text [, max_words])`.
    Summarize,
}

impl AiKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AiKind::Complete => "ai_complete",
            AiKind::Summarize => "ai_summarize",
        }
    }

    fn limit_arg(self) -> &'static str {
        match self {
            AiKind::Complete => "max_tokens",
            AiKind::Summarize => "max_words",
        }
    }

    fn prompt_version(self) -> &'static str {
        match self {
            AiKind::Complete => "none",
            AiKind::Summarize => SUMMARIZE_PROMPT_VERSION,
        }
    }
}

/// `ai_complete` / `ai_summarize` -> `Utf8`.
#[derive(Debug)]
pub struct AiFunc {
    kind: AiKind,
    signature: Signature,
    models: Arc<ModelRegistry>,
    on_error: OnModelError,
    /// Where failed rows go under [`OnModelError::DeadLetter`].
    failed: Option<Arc<FailedCalls>>,
    /// The variant the planner puts in place of the user's call when the job sets
    /// `job.tenant_column`: `(model, text, limit or NULL, tenant)`, the last argument being
    /// the row's tenant, which goes into the usage rows of the row's calls.
    tenant: bool,
}

impl PartialEq for AiFunc {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.on_error == other.on_error
            && self.tenant == other.tenant
            && Arc::ptr_eq(&self.models, &other.models)
    }
}
impl Eq for AiFunc {}
impl Hash for AiFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.on_error.hash(state);
        self.tenant.hash(state);
        (Arc::as_ptr(&self.models) as usize).hash(state);
    }
}

impl AiFunc {
    /// `kind` over the models of one job.
    pub fn new(kind: AiKind, models: Arc<ModelRegistry>, on_error: OnModelError) -> Self {
        Self {
            kind,
            // Not user_defined: DataFusion's AsyncScalarUDF wrapper does not forward
            // coerce_types, so the signature itself must coerce.
            signature: Signature::one_of(
                vec![
                    TypeSignature::String(2),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Utf8, DataType::Int64]),
                ],
                Volatility::Volatile,
            ),
            models,
            on_error,
            failed: None,
            tenant: false,
        }
    }

    /// Failed rows go to `failed` (with [`OnModelError::DeadLetter`]).
    pub fn with_failed_calls(self, failed: Option<Arc<FailedCalls>>) -> Self {
        Self { failed, ..self }
    }

    /// As a registrable (async) UDF.
    pub fn udf(
        kind: AiKind,
        models: Arc<ModelRegistry>,
        on_error: OnModelError,
        failed: Option<Arc<FailedCalls>>,
    ) -> ScalarUDF {
        let f = Self::new(kind, models, on_error).with_failed_calls(failed);
        AsyncScalarUDF::new(Arc::new(f)).into_scalar_udf()
    }

    /// The tenant-carrying variant (never registered by name: the planner builds calls to it,
    /// see [`crate::registry::tenant_variant`]).
    pub fn tenant_udf(
        kind: AiKind,
        models: Arc<ModelRegistry>,
        on_error: OnModelError,
        failed: Option<Arc<FailedCalls>>,
    ) -> ScalarUDF {
        let f = Self {
            signature: Signature::exact(
                vec![
                    DataType::Utf8,
                    DataType::Utf8,
                    DataType::Int64,
                    DataType::Utf8,
                ],
                Volatility::Volatile,
            ),
            tenant: true,
            ..Self::new(kind, models, on_error).with_failed_calls(failed)
        };
        AsyncScalarUDF::new(Arc::new(f)).into_scalar_udf()
    }

    fn model_name<'a>(&self, v: &'a ColumnarValue) -> Result<&'a str> {
        let name = self.kind.name();
        match v {
            ColumnarValue::Scalar(v) => match scalar_str(name, "model", v)? {
                Some(m) => Ok(m),
                None => plan_err!("{name}: the model must not be NULL"),
            },
            ColumnarValue::Array(_) => plan_err!(
                "{name}: the model must be a literal naming a CREATE MODEL, e.g. \
                 {name}('llm', text)"
            ),
        }
    }

    /// The third argument: a positive integer literal, or the default.
    pub(crate) fn limit(&self, v: Option<&ColumnarValue>) -> Result<Option<i64>> {
        let name = self.kind.name();
        let arg = self.kind.limit_arg();
        match v {
            None => Ok(None),
            Some(ColumnarValue::Scalar(s)) => match scalar_i64(name, arg, s)? {
                None => Ok(None),
                Some(n) if n > 0 && n <= 1_000_000 => Ok(Some(n)),
                Some(n) => plan_err!("{name}: {arg} must be from 1 to 1000000, got {n}"),
            },
            Some(ColumnarValue::Array(_)) => {
                plan_err!("{name}: {arg} must be an integer literal, not a column")
            }
        }
    }
}

impl ScalarUDFImpl for AiFunc {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!(
            "{} is asynchronous and runs through DataFusion's async function path",
            self.kind.name()
        )
    }

    fn documentation(&self) -> Option<&Documentation> {
        static COMPLETE: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_OTHER,
                "Completion of a prompt by a chat model declared with CREATE MODEL.",
                "ai_complete(model, prompt [, max_tokens])",
            )
            .with_sql_example(
                "SELECT id, ai_complete('llm', question, 200) AS answer FROM requests",
            )
            .with_argument(
                "model",
                "Name of a CREATE MODEL with task 'chat' (a literal).",
            )
            .with_argument("prompt", "The user turn. NULL gives NULL.")
            .with_argument(
                "max_tokens",
                "Bound on generated tokens (default: the model's).",
            )
            .build()
        });
        static SUMMARIZE: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_OTHER,
                "Summary of a text by a chat model declared with CREATE MODEL.",
                "ai_summarize(model, text [, max_words])",
            )
            .with_sql_example("SELECT doc_id, ai_summarize('llm', body, 50) AS summary FROM docs")
            .with_argument(
                "model",
                "Name of a CREATE MODEL with task 'chat' (a literal).",
            )
            .with_argument("text", "Text to summarize. NULL gives NULL.")
            .with_argument("max_words", "Longest summary in words (default 100).")
            .build()
        });
        Some(match self.kind {
            AiKind::Complete => &COMPLETE,
            AiKind::Summarize => &SUMMARIZE,
        })
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for AiFunc {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.kind.name();
        let Some(model_arg) = args.args.first() else {
            return exec_err!("{name}: missing the model argument");
        };
        let model = self.models.lookup(name, self.model_name(model_arg)?)?;
        let chat = model.chat(name)?.clone();
        let limit = self.limit(args.args.get(2))?;
        let (array, scalar_input): (ArrayRef, bool) = match args.args.get(1) {
            Some(ColumnarValue::Array(a)) => (Arc::clone(a), false),
            Some(ColumnarValue::Scalar(s)) => (s.to_array_of_size(1)?, true),
            None => return exec_err!("{name}: missing the text argument"),
        };
        let texts = string_values(&array)?;
        let tenants = match (self.tenant, args.args.get(3)) {
            (false, _) => None,
            (true, Some(v)) => Some(tenant_values(v, texts.len())?),
            (true, None) => return exec_err!("{name}: missing the tenant argument"),
        };
        let requests = requests(self.kind, &chat.settings, &texts, limit);

        let model_name = model.name.clone();
        let count = |result: &'static str| {
            metrics::counter!(
                "strata_ai_rows_total",
                "function" => name,
                "model" => model_name.clone(),
                "prompt_version" => self.kind.prompt_version(),
                "result" => result,
            )
            .increment(1);
        };
        let mut out: Vec<Option<String>> = vec![None; texts.len()];
        let client = &chat.client;
        let mut answers = futures::stream::iter(requests)
            .map(|(row, request)| {
                let tenant = tenants.as_ref().and_then(|t| t[row].clone());
                (row, request, tenant)
            })
            .map(|(row, request, tenant)| async move {
                let call = CallContext::new(self.kind.prompt_version()).with_tenant(tenant);
                (row, with_call(call, client.complete(&request)).await)
            })
            .buffered(chat.settings.max_concurrency.max(1));
        while let Some((row, answer)) = answers.next().await {
            match answer {
                Ok(reply) => {
                    count(if reply.cached { "cached" } else { "ok" });
                    out[row] = Some(reply.text);
                }
                Err(e @ OperatorError::BudgetExceeded { .. }) => {
                    count("error");
                    return Err(DataFusionError::External(Box::new(e)));
                }
                Err(e) => {
                    count("error");
                    match self.on_error {
                        OnModelError::Fail => {
                            return Err(DataFusionError::Execution(format!(
                                "{name}: row {row} of the batch: {e}; SET job.on_model_error = \
                                 'null' to give such rows NULL and go on"
                            )))
                        }
                        OnModelError::Null => {
                            tracing::warn!(function = name, model = %model.name, row, error = %e, "model call failed; NULL result (job.on_model_error = 'null')");
                        }
                        OnModelError::DeadLetter => {
                            let Some(failed) = &self.failed else {
                                return exec_err!("{name}: job.on_model_error = 'dead_letter' but the job has no dead letter");
                            };
                            tracing::warn!(function = name, model = %model.name, row, error = %e, "model call failed; NULL result, row to the dead letter (job.on_model_error = 'dead_letter')");
                            failed.record(
                                name,
                                &model.name,
                                texts[row].unwrap_or_default(),
                                &e.to_string(),
                            );
                        }
                    }
                }
            }
        }
        let out: ArrayRef = Arc::new(StringArray::from(out));
        if scalar_input {
            // DataFusion 55's async path expects an array as long as the batch (see embed).
            let v = ScalarValue::try_from_array(&out, 0)?;
            Ok(ColumnarValue::Array(v.to_array_of_size(args.number_rows)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}

/// The requests `kind` makes for `texts` (NULL rows make none), with their row numbers.
pub(crate) fn requests(
    kind: AiKind,
    settings: &crate::models::chat::ChatSettings,
    texts: &[Option<&str>],
    limit: Option<i64>,
) -> Vec<(usize, crate::models::chat::ChatRequest)> {
    texts
        .iter()
        .enumerate()
        .filter_map(|(row, t)| t.map(|t| (row, t)))
        .map(|(row, text)| {
            let request = match kind {
                AiKind::Complete => settings.request(text.to_string(), limit.map(|n| n as u32)),
                AiKind::Summarize => {
                    let words = limit.unwrap_or(DEFAULT_MAX_WORDS);
                    settings.request(
                        summarize_prompt(text, words),
                        Some(summary_tokens(words, settings.max_tokens)),
                    )
                }
            };
            (row, request)
        })
        .collect()
}

/// The per-row tenants of a tenant argument (a column, or one value for every row).
pub(crate) fn tenant_values(v: &ColumnarValue, rows: usize) -> Result<Vec<Option<String>>> {
    let array = match v {
        ColumnarValue::Array(a) => Arc::clone(a),
        ColumnarValue::Scalar(s) => s.to_array_of_size(rows)?,
    };
    Ok(string_values(&array)?
        .into_iter()
        .map(|t| t.map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_bound_follows_words_and_model() {
        assert_eq!(summary_tokens(100, 512), 166);
        assert_eq!(summary_tokens(1000, 512), 512);
        assert_eq!(summary_tokens(i64::MAX, 64), 64);
    }

    #[test]
    fn policies_parse() {
        assert_eq!("fail".parse::<OnModelError>(), Ok(OnModelError::Fail));
        assert_eq!(" NULL ".parse::<OnModelError>(), Ok(OnModelError::Null));
        assert_eq!(
            "dead_letter".parse::<OnModelError>(),
            Ok(OnModelError::DeadLetter)
        );
        assert!("skip".parse::<OnModelError>().is_err());
    }
}
