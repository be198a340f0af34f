//! `token_count(text [, model])`: the number of tokens in a text.
//!
//! Owns the UDF's SQL surface. Counts exclude special tokens (see [`crate::tokenizer`]).

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int32Array};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_STRING;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use rayon::prelude::*;

use super::{coerce_text, scalar_str, string_values};
use crate::tokenizer::tokenizer_for;

const NAME: &str = "token_count";

/// `token_count(text [, model])` -> INT.
///
/// `model` (a literal) is a directory name under the models directory, or a path to a model
/// directory or a `tokenizer.json`; without it, the default tokenizer (all-MiniLM-L6-v2).
/// NULL text gives NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TokenCountFunc {
    signature: Signature,
    models_dir: PathBuf,
}

impl TokenCountFunc {
    /// A `token_count` whose model names resolve under `models_dir`.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            models_dir: models_dir.into(),
        }
    }
}

fn model_from_literal(v: Option<Option<&ScalarValue>>) -> Result<Option<&str>> {
    match v {
        None => Ok(None),
        Some(None) => {
            plan_err!("{NAME}: model must be a literal, e.g. token_count(body, 'all-MiniLM-L6-v2')")
        }
        Some(Some(v)) => match scalar_str(NAME, "model", v)? {
            Some(m) => Ok(Some(m)),
            None => {
                plan_err!("{NAME}: model must not be NULL; leave it out for the default tokenizer")
            }
        },
    }
}

impl ScalarUDFImpl for TokenCountFunc {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(1..=2).contains(&arg_types.len()) {
            return plan_err!(
                "{NAME} takes 1 or 2 arguments: {NAME}(text [, model]), got {}",
                arg_types.len()
            );
        }
        arg_types
            .iter()
            .zip(["text", "model"])
            .map(|(t, arg)| coerce_text(NAME, arg, t))
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let model = model_from_literal(args.scalar_arguments.get(1).copied())?;
        if let Err(e) = tokenizer_for(&self.models_dir, model) {
            return plan_err!("{NAME}: {e}");
        }
        Ok(Arc::new(Field::new(NAME, DataType::Int32, true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let model = match args.args.get(1) {
            None => None,
            Some(ColumnarValue::Scalar(v)) => model_from_literal(Some(Some(v)))?,
            Some(ColumnarValue::Array(_)) => {
                return exec_err!("{NAME}: model must be a literal, not a column")
            }
        };
        let tokenizer = tokenizer_for(&self.models_dir, model)?;
        let (array, scalar_input) = match args.args.first() {
            Some(ColumnarValue::Array(a)) => (Arc::clone(a), false),
            Some(ColumnarValue::Scalar(s)) => (s.to_array_of_size(1)?, true),
            None => return exec_err!("{NAME}: missing the text argument"),
        };
        let texts = string_values(&array)?;
        // Rows are independent: tokenize them on rayon's pool (CPU-bound).
        let counts = texts
            .par_iter()
            .map(|t| match t {
                None => Ok(None),
                Some(t) => {
                    let n = tokenizer.count(t)?;
                    match i32::try_from(n) {
                        Ok(n) => Ok(Some(n)),
                        Err(_) => exec_err!("{NAME}: {n} tokens do not fit in INT"),
                    }
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let out: ArrayRef = Arc::new(Int32Array::from(counts));
        if scalar_input {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_STRING,
                "Number of tokens in text (no special tokens), with the tokenizer of model \
                 (default: the local embedding model all-MiniLM-L6-v2).",
                "token_count(text [, model])",
            )
            .with_sql_example("SELECT doc_id, token_count(body) FROM docs")
            .with_argument("text", "Text to count. NULL gives NULL.")
            .with_argument("model", "Model directory name under the models directory, or a path to a model directory or tokenizer.json.")
            .build()
        });
        Some(&DOC)
    }
}
