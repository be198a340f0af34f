//! Operator errors: one `thiserror` enum for the crate.
//!
//! Owns [`OperatorError`] and its conversion into [`DataFusionError`] for the UDFs. Every
//! variant says what went wrong, where (a path, a function argument) and what to do.

use std::path::PathBuf;

use datafusion::error::DataFusionError;

/// Result alias for operators.
pub type Result<T, E = OperatorError> = std::result::Result<T, E>;

/// Errors raised by operators: loading assets, tokenizing, validating arguments.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// A price catalog file (`--prices`) is unreadable or invalid.
    #[error("price catalog '{file}': {message}")]
    Prices { file: String, message: String },

    /// A model or tokenizer could not be found or loaded.
    #[error("cannot load {what} from '{path}': {message}")]
    Asset {
        what: String,
        path: String,
        message: String,
    },

    /// A tokenizer file is missing: the model directory has not been fetched.
    #[error(
        "tokenizer not found at '{}': run scripts/fetch_models.sh to fetch the default models \
         into ./models (or set STRATA_MODELS to the directory that holds them)",
        path.display()
    )]
    TokenizerNotFound { path: PathBuf },

    /// The tokenizer failed on an input text.
    #[error("tokenizer '{}' failed: {message}", path.display())]
    Tokenize { path: PathBuf, message: String },

    /// A `CREATE MODEL` is wrong: a bad or unknown option, an asset that cannot load.
    /// `key` names the option when there is one, so the planner can point at it.
    #[error("model '{model}': {}{message}", key.as_ref().map(|k| format!("option '{k}' ")).unwrap_or_default())]
    Model {
        model: String,
        key: Option<String>,
        message: String,
    },

    /// A model call failed (after the retries the client stack allows).
    #[error("model '{model}': {message}")]
    Call { model: String, message: String },

    /// `SET job.max_cost_usd` would be passed by the next call: no more calls are made.
    #[error(
        "model '{model}': stopping before the job's spend could pass job.max_cost_usd = {limit} \
         USD (spent {spent} USD, {in_flight} USD in flight, the next call may cost up to \
         {next} USD); raise SET job.max_cost_usd to go on (with cache.path set, answers \
         already paid for are not paid again)"
    )]
    BudgetExceeded {
        model: String,
        limit: String,
        spent: String,
        in_flight: String,
        next: String,
    },

    /// A function argument has an invalid value.
    #[error("{function}: {message}")]
    InvalidArgument {
        function: &'static str,
        message: String,
    },

    /// A PII entity name that Bedrock Guardrails (and strata) do not know.
    #[error("unknown PII entity type '{name}'; known types: {known}")]
    UnknownPiiEntity { name: String, known: String },

    /// A `redact_pii` operator other than mask, hash and remove.
    #[error("unknown redaction operator '{name}'; use 'mask' (default), 'hash' or 'remove'")]
    UnknownRedactOperator { name: String },

    /// A `SET pii.*` setting has a bad value; `key` names it.
    #[error("{key} {message}")]
    PiiSetting { key: &'static str, message: String },

    /// The key of `redact_pii(..., 'hash')` is missing or unusable.
    #[error("redact_pii: {message}")]
    PiiHashKey { message: String },
}

impl From<OperatorError> for DataFusionError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::InvalidArgument { .. }
            | OperatorError::UnknownPiiEntity { .. }
            | OperatorError::UnknownRedactOperator { .. }
            | OperatorError::PiiSetting { .. }
            | OperatorError::PiiHashKey { .. } => DataFusionError::Plan(e.to_string()),
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
