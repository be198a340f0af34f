//! The SQL functions of the text operators, as DataFusion `ScalarUDFImpl`s.
//!
//! Owns argument handling shared by the text UDFs: accepted string types, literal arguments
//! read at plan time and again at run time. CPU-heavy per-row work runs on rayon's pool
//! (`par_iter` over the rows of a batch), not on tokio's workers, which only wait for it.

pub mod ai;
pub mod chunk_text;
pub mod cosine;
pub mod embed;
pub mod estimate;
pub mod pii;
pub mod token_count;
pub mod window;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};

pub use ai::{AiFunc, AiKind, OnModelError};
pub use chunk_text::ChunkTextFunc;
pub use cosine::CosineSimilarityFunc;
pub use embed::EmbedFunc;
pub use pii::{DetectPiiFunc, RedactPiiFunc};
pub use token_count::TokenCountFunc;
pub use window::TumbleFunc;

/// Is `t` a type the text argument accepts as it is (no cast needed)?
fn is_text_type(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Coerce a text argument: string types as they are, NULL to Utf8.
fn coerce_text(function: &str, arg: &str, t: &DataType) -> Result<DataType> {
    match t {
        t if is_text_type(t) => Ok(t.clone()),
        DataType::Null => Ok(DataType::Utf8),
        other => plan_err!(
            "{function}: {arg} must be a string, got {other}; cast it with CAST({arg} AS VARCHAR)"
        ),
    }
}

/// Coerce an integer argument: integer types as they are (so literals stay literals).
fn coerce_int(function: &str, arg: &str, t: &DataType) -> Result<DataType> {
    if t.is_integer() {
        Ok(t.clone())
    } else {
        plan_err!("{function}: {arg} must be an integer literal, got a value of type {t}")
    }
}

/// The `&str` values of a string array (any of the string layouts).
fn string_values(array: &ArrayRef) -> Result<Vec<Option<&str>>> {
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        DataType::Null => vec![None; array.len()],
        other => return exec_err!("expected a string array, got {other}"),
    })
}

/// An integer literal's value; `Ok(None)` for a NULL literal.
fn scalar_i64(function: &str, arg: &str, v: &ScalarValue) -> Result<Option<i64>> {
    let out = match v {
        ScalarValue::Int8(x) => x.map(i64::from),
        ScalarValue::Int16(x) => x.map(i64::from),
        ScalarValue::Int32(x) => x.map(i64::from),
        ScalarValue::Int64(x) => *x,
        ScalarValue::UInt8(x) => x.map(i64::from),
        ScalarValue::UInt16(x) => x.map(i64::from),
        ScalarValue::UInt32(x) => x.map(i64::from),
        ScalarValue::UInt64(x) => match x {
            Some(x) => Some(
                i64::try_from(*x).or_else(|_| plan_err!("{function}: {arg} {x} is too large"))?,
            ),
            None => None,
        },
        other => return plan_err!("{function}: {arg} must be an integer literal, got {other:?}"),
    };
    Ok(out)
}

/// A string literal's value; `Ok(None)` for a NULL literal.
fn scalar_str<'a>(function: &str, arg: &str, v: &'a ScalarValue) -> Result<Option<&'a str>> {
    match v {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
            Ok(s.as_deref())
        }
        ScalarValue::Null => Ok(None),
        other => plan_err!("{function}: {arg} must be a string literal, got {other:?}"),
    }
}
