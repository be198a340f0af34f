//! Cost estimates before spending: dry-run stand-ins for the model-calling functions.
//!
//! Owns what `strata explain` reports about a bounded job's model calls. The planner puts
//! an [`EstimateFunc`] in place of every `ai_complete`, `ai_summarize` and `embed` call of
//! a copy of the job's plans; the job's bounded input is then read in full and those plans
//! run, so each stand-in sees exactly the texts the real run would send. It builds the same
//! requests the real function would (prompt template, `max_tokens`), records them in
//! [`Estimates`] and returns NULLs; no model is called.
//!
//! Per model: calls (texts, for embeddings), input tokens counted with the default tokenizer
//! (all-MiniLM-L6-v2 WordPiece; providers count with their own, which is why the input bound
//! is also given: the conservative estimate the budget and rate limiter reserve), the output
//! bound (the calls' `max_tokens`), and the cost range from the model's prices: from input
//! only (the least the run can cost) to the reserved input plus every `max_tokens` (the
//! most).

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use arrow::array::{new_null_array, ArrayRef};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

use super::ai::{requests, AiFunc, AiKind, OnModelError};
use super::embed::vector_type;
use super::{scalar_str, string_values};
use crate::models::chat::Money;
use crate::models::remote::limits::estimate_tokens;
use crate::models::remote::stack::TokenUsage;
use crate::models::{Model, ModelRegistry};
use crate::tokenizer::TextTokenizer;

/// What the calls to one model would be.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelEstimate {
    /// `provider`, `task`.
    pub provider: String,
    /// `chat` or `embedding`.
    pub task: String,
    /// Chat calls, or texts embedded.
    pub calls: u64,
    /// Input tokens by the default tokenizer.
    pub input_tokens: u64,
    /// The conservative input estimate the budget and rate limiter reserve.
    pub input_bound: u64,
    /// Sum of the calls' `max_tokens` (0 for embeddings).
    pub output_bound: u64,
    /// Cost of the input tokens alone.
    pub low: Money,
    /// Cost of the reserved input plus every `max_tokens`.
    pub high: Money,
    /// Whether the model has input and output prices (embeddings: input).
    pub priced: bool,
}

/// The estimates of one dry run, by model alias.
#[derive(Debug)]
pub struct Estimates {
    tokenizer: Arc<TextTokenizer>,
    models: Mutex<BTreeMap<String, ModelEstimate>>,
}

impl Estimates {
    /// Count tokens with `tokenizer`.
    pub fn new(tokenizer: Arc<TextTokenizer>) -> Self {
        Self {
            tokenizer,
            models: Mutex::default(),
        }
    }

    /// The estimates so far.
    pub fn snapshot(&self) -> BTreeMap<String, ModelEstimate> {
        self.models.lock().expect("estimates lock").clone()
    }

    fn count(&self, text: &str) -> Result<u64> {
        Ok(self
            .tokenizer
            .count(text)
            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
            as u64)
    }

    fn record(&self, model: &Model, f: impl FnOnce(&mut ModelEstimate)) {
        let mut models = self.models.lock().expect("estimates lock");
        let e = models
            .entry(model.name.clone())
            .or_insert_with(|| ModelEstimate {
                provider: model.provider.clone(),
                task: model.task.to_string(),
                priced: match model.task {
                    crate::models::Task::Chat => model.prices.is_complete(),
                    crate::models::Task::Embedding => model.prices.input_per_1m.is_some(),
                },
                ..ModelEstimate::default()
            });
        f(e);
    }
}

impl fmt::Display for Estimates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, e) in self.snapshot() {
            let what = if e.task == "chat" { "calls" } else { "texts" };
            write!(
                f,
                "  {name} ({}, {}): {} {what}; input {} tokens (default tokenizer; {} reserved)",
                e.provider, e.task, e.calls, e.input_tokens, e.input_bound
            )?;
            if e.task == "chat" {
                write!(f, "; output at most {} tokens (max_tokens)", e.output_bound)?;
            }
            if e.priced {
                writeln!(f, "; cost {} to {} USD", e.low, e.high)?;
            } else {
                writeln!(
                    f,
                    "; cost unknown: give the model 'price.*' options or list it in a --prices catalog"
                )?;
            }
        }
        Ok(())
    }
}

/// The dry-run stand-in of `ai_complete` / `ai_summarize` (`Some(kind)`) or `embed`
/// (`None`).
#[derive(Debug)]
pub struct EstimateFunc {
    kind: Option<AiKind>,
    /// The real function, for its `max_tokens` / `max_words` argument.
    ai: AiFunc,
    signature: Signature,
    models: Arc<ModelRegistry>,
    estimates: Arc<Estimates>,
}

impl PartialEq for EstimateFunc {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && Arc::ptr_eq(&self.estimates, &other.estimates)
    }
}
impl Eq for EstimateFunc {}
impl Hash for EstimateFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        (Arc::as_ptr(&self.estimates) as usize).hash(state);
    }
}

impl EstimateFunc {
    /// The stand-in of `kind` (`None`: `embed`), recording into `estimates`. It takes every
    /// argument shape of the real function and of its tenant-carrying variant.
    pub fn new(
        kind: Option<AiKind>,
        models: Arc<ModelRegistry>,
        estimates: Arc<Estimates>,
    ) -> Self {
        use DataType::{Int64, Utf8};
        let signature = match kind {
            Some(_) => Signature::one_of(
                vec![
                    TypeSignature::String(2),
                    TypeSignature::Exact(vec![Utf8, Utf8, Int64]),
                    TypeSignature::Exact(vec![Utf8, Utf8, Int64, Utf8]),
                ],
                Volatility::Volatile,
            ),
            None => Signature::one_of(
                vec![TypeSignature::String(2), TypeSignature::String(3)],
                Volatility::Volatile,
            ),
        };
        Self {
            kind,
            ai: AiFunc::new(
                kind.unwrap_or(AiKind::Complete),
                Arc::clone(&models),
                OnModelError::Fail,
            ),
            signature,
            models,
            estimates,
        }
    }

    fn dims(&self, model: &Model) -> Result<usize> {
        Ok(model.embedder(super::embed::NAME)?.dimensions())
    }
}

impl ScalarUDFImpl for EstimateFunc {
    fn name(&self) -> &str {
        self.static_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        match self.kind {
            Some(_) => Ok(DataType::Utf8),
            None => plan_err!("embed: the return type depends on the model"),
        }
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let data_type = match self.kind {
            Some(_) => DataType::Utf8,
            None => {
                let Some(Some(name)) = args
                    .scalar_arguments
                    .first()
                    .map(|v| v.and_then(|v| v.try_as_str().flatten()))
                else {
                    return plan_err!("embed: the model must be a literal");
                };
                vector_type(self.dims(self.models.lookup(super::embed::NAME, name)?)?)
            }
        };
        Ok(Arc::new(Field::new(self.name(), data_type, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = self.name();
        let Some(model_arg) = args.args.first() else {
            return exec_err!("{name}: missing the model argument");
        };
        let model_name = match model_arg {
            ColumnarValue::Scalar(v) => scalar_str(name, "model", v)?,
            ColumnarValue::Array(_) => None,
        };
        let Some(model_name) = model_name else {
            return plan_err!("{name}: the model must be a literal naming a CREATE MODEL");
        };
        let model = self.models.lookup(self.static_name(), model_name)?;
        let texts = match args.args.get(1) {
            Some(ColumnarValue::Array(a)) => Arc::clone(a),
            Some(ColumnarValue::Scalar(s)) => s.to_array_of_size(args.number_rows)?,
            None => return exec_err!("{name}: missing the text argument"),
        };
        let texts = string_values(&texts)?;
        match self.kind {
            Some(kind) => {
                let chat = model.chat(kind.name())?;
                let limit = self.ai.limit(args.args.get(2))?;
                let mut counted = Vec::new();
                for (_, request) in requests(kind, &chat.settings, &texts, limit) {
                    let tokens = self.estimates.count(&request.prompt)?
                        + match &request.system {
                            Some(s) => self.estimates.count(s)?,
                            None => 0,
                        };
                    counted.push((request, tokens));
                }
                self.estimates.record(model, |e| {
                    for (request, tokens) in &counted {
                        e.calls += 1;
                        e.input_tokens += tokens;
                        e.input_bound += request.estimated_input_tokens();
                        e.output_bound += u64::from(request.max_tokens);
                        e.low = Money(e.low.0 + input_cost(model, *tokens).0);
                        e.high = Money(e.high.0 + model.prices.bound(request).0);
                    }
                });
                Ok(ColumnarValue::Array(new_null_array(
                    &DataType::Utf8,
                    args.number_rows,
                )))
            }
            None => {
                let dims = self.dims(model)?;
                let mut counted = Vec::new();
                for t in texts.iter().flatten() {
                    counted.push((self.estimates.count(t)?, estimate_tokens(t)));
                }
                self.estimates.record(model, |e| {
                    for (tokens, bound) in &counted {
                        e.calls += 1;
                        e.input_tokens += tokens;
                        e.input_bound += bound;
                        e.low = Money(e.low.0 + input_cost(model, *tokens).0);
                        e.high = Money(e.high.0 + input_cost(model, *bound).0);
                    }
                });
                let out: ArrayRef = new_null_array(&vector_type(dims), args.number_rows);
                Ok(ColumnarValue::Array(out))
            }
        }
    }
}

impl EstimateFunc {
    /// The SQL name of the function it stands in for.
    fn static_name(&self) -> &'static str {
        match self.kind {
            Some(k) => k.name(),
            None => super::embed::NAME,
        }
    }
}

fn input_cost(model: &Model, tokens: u64) -> Money {
    model.prices.cost(&TokenUsage {
        input_tokens: Some(tokens),
        ..TokenUsage::default()
    })
}
