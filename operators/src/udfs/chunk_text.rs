//! `chunk_text(text, max_tokens [, overlap_tokens [, mode]])`: split text into token-bounded
//! chunks, as a list of structs that `unnest` turns into rows.
//!
//! Owns the UDF's SQL surface: argument checking (plan time), the Arrow result layout and the
//! per-batch parallelism. The splitting itself is [`crate::chunk`].

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Int32Array, Int64Array, ListArray, StringBuilder, StructArray};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_STRING;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};

use super::{coerce_int, coerce_text, scalar_i64, scalar_str, string_values};
use crate::chunk::{self, Chunk, ChunkMode, ChunkOptions};
use crate::tokenizer::tokenizer_for;

const NAME: &str = "chunk_text";
const ARG_NAMES: [&str; 4] = ["text", "max_tokens", "overlap_tokens", "mode"];

/// The fields of one chunk struct: `chunk_index`, `text`, `start_char`, `end_char`, `tokens`.
pub fn chunk_fields() -> Fields {
    Fields::from(vec![
        Field::new("chunk_index", DataType::Int32, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("start_char", DataType::Int64, false),
        Field::new("end_char", DataType::Int64, false),
        Field::new("tokens", DataType::Int32, false),
    ])
}

/// `chunk_text`'s return type: `List<Struct<chunk_index, text, start_char, end_char, tokens>>`.
pub fn chunk_list_type() -> DataType {
    DataType::List(chunk_item_field())
}

fn chunk_item_field() -> FieldRef {
    Arc::new(Field::new_list_field(
        DataType::Struct(chunk_fields()),
        true,
    ))
}

/// `chunk_text(text, max_tokens [, overlap_tokens [, mode]])`.
///
/// Tokens are counted with the default tokenizer (all-MiniLM-L6-v2 under the models
/// directory), without special tokens. `max_tokens`, `overlap_tokens` (default 0) and `mode`
/// (`'recursive'`, default, or `'markdown'`) must be literals. NULL text gives NULL (which
/// `unnest` turns into no rows); empty or whitespace-only text gives an empty list.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ChunkTextFunc {
    signature: Signature,
    models_dir: PathBuf,
}

impl ChunkTextFunc {
    /// A `chunk_text` whose default tokenizer resolves under `models_dir`.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            models_dir: models_dir.into(),
        }
    }
}

/// Options from the literal arguments after `text` (`None` marks a non-literal argument).
fn options_from_literals(literals: &[Option<&ScalarValue>]) -> Result<ChunkOptions> {
    // `i` is the argument's position in the call; `literals` starts at position 1.
    let literal = |i: usize| -> Result<Option<&ScalarValue>> {
        match literals.get(i - 1) {
            None => Ok(None),
            Some(Some(v)) => Ok(Some(*v)),
            Some(None) => plan_err!(
                "{NAME}: {} must be a literal (a constant such as 256 or 'markdown'), not a column or expression",
                ARG_NAMES[i]
            ),
        }
    };
    let int = |i: usize, default: Option<i64>| -> Result<i64> {
        match literal(i)? {
            None => default.map_or_else(|| plan_err!("{NAME}: {} is required", ARG_NAMES[i]), Ok),
            Some(v) => match scalar_i64(NAME, ARG_NAMES[i], v)? {
                Some(x) => Ok(x),
                None => plan_err!("{NAME}: {} must not be NULL", ARG_NAMES[i]),
            },
        }
    };
    let max_tokens = int(1, None)?;
    let overlap = int(2, Some(0))?;
    let mode = match literal(3)? {
        None => ChunkMode::default(),
        Some(v) => match scalar_str(NAME, ARG_NAMES[3], v)? {
            Some(s) => s.parse()?,
            None => {
                return plan_err!("{NAME}: mode must not be NULL; use 'recursive' or 'markdown'")
            }
        },
    };
    Ok(ChunkOptions::new(max_tokens, overlap, mode)?)
}

impl ScalarUDFImpl for ChunkTextFunc {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(2..=4).contains(&arg_types.len()) {
            return plan_err!(
                "{NAME} takes 2 to 4 arguments: {NAME}(text, max_tokens [, overlap_tokens [, mode]]), got {}",
                arg_types.len()
            );
        }
        arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| match i {
                0 | 3 => coerce_text(NAME, ARG_NAMES[i], t),
                _ => coerce_int(NAME, ARG_NAMES[i], t),
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(chunk_list_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        // Check the literal arguments and the tokenizer now, so mistakes are plan errors.
        options_from_literals(args.scalar_arguments.get(1..).unwrap_or_default())?;
        if let Err(e) = tokenizer_for(&self.models_dir, None) {
            return plan_err!("{NAME}: {e}");
        }
        Ok(Arc::new(Field::new(NAME, chunk_list_type(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some((text, rest)) = args.args.split_first() else {
            return exec_err!("{NAME}: missing the text argument");
        };
        let mut literals = Vec::with_capacity(rest.len());
        for (i, a) in rest.iter().enumerate() {
            match a {
                ColumnarValue::Scalar(v) => literals.push(Some(v)),
                ColumnarValue::Array(_) => {
                    return exec_err!(
                        "{NAME}: {} must be a literal, not a column",
                        ARG_NAMES[i + 1]
                    )
                }
            }
        }
        let opts = options_from_literals(&literals)?;
        let tokenizer = tokenizer_for(&self.models_dir, None)?;
        let (array, scalar_input) = match text {
            ColumnarValue::Array(a) => (Arc::clone(a), false),
            ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
        };
        let texts = string_values(&array)?;

        // Rows are independent: chunk them on rayon's pool (CPU-bound tokenization), so
        // the tokio worker running this plan only waits.
        let chunks = chunk::chunk_texts(&tokenizer, &texts, &opts)?;

        let list = build_list(&texts, &chunks)?;
        if scalar_input {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                &list, 0,
            )?))
        } else {
            Ok(ColumnarValue::Array(list))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_STRING,
                "Splits text into chunks of at most max_tokens tokens (all-MiniLM-L6-v2 tokenizer, \
                 no special tokens), preferring paragraph > line > sentence > word boundaries \
                 (markdown mode: headings first). Offsets are code points, end exclusive: \
                 substr(text, start_char + 1, end_char - start_char) = chunk text.",
                "chunk_text(text, max_tokens [, overlap_tokens [, mode]])",
            )
            .with_sql_example("SELECT c.chunk_index, c.text FROM (SELECT unnest(chunk_text(body, 256, 32)) AS c FROM docs)")
            .with_argument("text", "Text to split. NULL gives NULL, empty text an empty list.")
            .with_argument("max_tokens", "Most tokens per chunk (integer literal > 0).")
            .with_argument("overlap_tokens", "Tokens shared with the previous chunk, < max_tokens (default 0).")
            .with_argument("mode", "'recursive' (default) or 'markdown'.")
            .build()
        });
        Some(&DOC)
    }
}

fn to_i32(what: &str, v: usize) -> Result<i32> {
    match i32::try_from(v) {
        Ok(v) => Ok(v),
        Err(_) => exec_err!("{NAME}: {what} {v} does not fit in INT"),
    }
}

fn to_i64(what: &str, v: usize) -> Result<i64> {
    match i64::try_from(v) {
        Ok(v) => Ok(v),
        Err(_) => exec_err!("{NAME}: {what} {v} does not fit in BIGINT"),
    }
}

/// Assemble the `List<Struct<...>>` column of a batch.
fn build_list(texts: &[Option<&str>], chunks: &[Option<Vec<Chunk>>]) -> Result<ArrayRef> {
    let n_chunks: usize = chunks.iter().flatten().map(Vec::len).sum();
    let n_bytes: usize = chunks
        .iter()
        .flatten()
        .flatten()
        .map(|c| c.byte_end - c.byte_start)
        .sum();
    let mut index = Vec::with_capacity(n_chunks);
    let mut text = StringBuilder::with_capacity(n_chunks, n_bytes);
    let mut start = Vec::with_capacity(n_chunks);
    let mut end = Vec::with_capacity(n_chunks);
    let mut tokens = Vec::with_capacity(n_chunks);
    let mut offsets = Vec::with_capacity(chunks.len() + 1);
    offsets.push(0i32);
    let mut valid = Vec::with_capacity(chunks.len());
    for (doc, row) in texts.iter().zip(chunks) {
        valid.push(row.is_some());
        if let (Some(doc), Some(row)) = (doc, row) {
            for c in row {
                index.push(to_i32("chunk_index", c.index)?);
                text.append_value(c.text(doc));
                start.push(to_i64("start_char", c.start_char)?);
                end.push(to_i64("end_char", c.end_char)?);
                tokens.push(to_i32("tokens", c.tokens)?);
            }
        }
        offsets.push(to_i32("chunk count of the batch", index.len())?);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(index)),
        Arc::new(text.finish()),
        Arc::new(Int64Array::from(start)),
        Arc::new(Int64Array::from(end)),
        Arc::new(Int32Array::from(tokens)),
    ];
    let structs = StructArray::try_new(chunk_fields(), columns, None)?;
    let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
    let list = ListArray::try_new(
        chunk_item_field(),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(structs),
        nulls,
    )?;
    Ok(Arc::new(list))
}
