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

    /// A function argument has an invalid value.
    #[error("{function}: {message}")]
    InvalidArgument {
        function: &'static str,
        message: String,
    },
}

impl From<OperatorError> for DataFusionError {
    fn from(e: OperatorError) -> Self {
        match e {
            OperatorError::InvalidArgument { .. } => DataFusionError::Plan(e.to_string()),
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
