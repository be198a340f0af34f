//! `detect_pii(text [, types])` and `redact_pii(text [, types [, operator]])`.
//!
//! Owns the SQL surface of PII detection: literal `types` and `operator` arguments checked
//! when the call is planned (an unknown entity name or operator, a missing hash key and a
//! NER-only type are plan errors), the Arrow result layouts, and per-batch parallelism on
//! rayon's pool. The detection itself is [`crate::pii`].

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Array, GenericStringBuilder, Int64Array, ListArray, StringArray,
    StringViewBuilder, StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_STRING;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl,
    Signature, Volatility,
};
use rayon::prelude::*;

use super::{coerce_text, is_text_type, scalar_str, string_values};
use crate::pii::{redact, Detection, EntitySet, PiiConfig, PiiDetector, RedactOperator};

const DETECT: &str = "detect_pii";
const REDACT: &str = "redact_pii";

/// The fields of one detection: `entity_type`, `start_char`, `end_char`, `score`.
pub fn pii_fields() -> Fields {
    Fields::from(vec![
        Field::new("entity_type", DataType::Utf8, false),
        Field::new("start_char", DataType::Int64, false),
        Field::new("end_char", DataType::Int64, false),
        Field::new("score", DataType::Float64, false),
    ])
}

fn pii_item_field() -> FieldRef {
    Arc::new(Field::new_list_field(DataType::Struct(pii_fields()), true))
}

/// `detect_pii`'s return type: `List<Struct<entity_type, start_char, end_char, score>>`.
pub fn pii_list_type() -> DataType {
    DataType::List(pii_item_field())
}

/// Coerce the `types` argument: an array of strings, or one comma-separated string.
fn coerce_types_arg(function: &str, t: &DataType) -> Result<DataType> {
    match t {
        DataType::Null => Ok(DataType::Utf8),
        t if is_text_type(t) => Ok(t.clone()),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)
            if is_text_type(f.data_type()) || f.data_type() == &DataType::Null =>
        {
            Ok(DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))))
        }
        other => plan_err!(
            "{function}: types must be an array of entity names such as ['EMAIL', 'PHONE'], got {other}"
        ),
    }
}

/// The entity set of a literal `types` argument.
fn types_from_scalar(function: &str, v: &ScalarValue) -> Result<EntitySet> {
    let names: Vec<String> = match v {
        ScalarValue::List(a) => list_strings(function, a.values())?,
        ScalarValue::LargeList(a) => list_strings(function, a.values())?,
        ScalarValue::FixedSizeList(a) => list_strings(function, a.values())?,
        other => match scalar_str(function, "types", other)? {
            Some(s) => s.split(',').map(str::to_string).collect(),
            None => {
                return plan_err!("{function}: types must not be NULL; leave it out for every type")
            }
        },
    };
    let set = EntitySet::parse(names.iter().map(String::as_str))?;
    if set.is_empty() {
        return plan_err!(
            "{function}: types is empty; name at least one entity type, or leave it out"
        );
    }
    if let Some(e) = set.iter().find(|e| e.needs_ner()) {
        return plan_err!(
            "{function}: {e} needs the NER model (pii.ner), which this build does not have yet; \
             leave {e} out of types"
        );
    }
    Ok(set)
}

fn list_strings(function: &str, values: &ArrayRef) -> Result<Vec<String>> {
    let strings = match values.data_type() {
        DataType::Null => return plan_err!("{function}: types must not contain NULL"),
        _ => string_values(values)?,
    };
    strings
        .into_iter()
        .map(|s| match s {
            Some(s) => Ok(s.to_string()),
            None => plan_err!("{function}: types must not contain NULL"),
        })
        .collect()
}

fn operator_from_scalar(v: &ScalarValue) -> Result<RedactOperator> {
    match scalar_str(REDACT, "operator", v)? {
        Some(s) => Ok(s.parse()?),
        None => plan_err!("{REDACT}: operator must not be NULL; use 'mask', 'hash' or 'remove'"),
    }
}

/// The literal `types` (position 1) or every structured type when it is left out.
fn literal_types(function: &str, v: Option<&ScalarValue>) -> Result<EntitySet> {
    match v {
        None => Ok(EntitySet::structured()),
        Some(v) => types_from_scalar(function, v),
    }
}

/// A literal argument from the planner: `None` when the call leaves it out,
/// `Some(None)` when it is given but not (yet) a constant, which the simplifier checks.
fn planned_literal<'a>(args: &ReturnFieldArgs<'a>, i: usize) -> Option<Option<&'a ScalarValue>> {
    (args.arg_fields.len() > i).then(|| args.scalar_arguments.get(i).copied().flatten())
}

/// Check, when the call is simplified (after constant folding turns `['EMAIL']` into a
/// literal), that `types` and `operator` are constants with valid values.
fn check_simplified(function: &str, args: &[Expr], cfg: &PiiConfig) -> Result<()> {
    for (i, a) in args.iter().enumerate().skip(1) {
        let what = if i == 1 { "types" } else { "operator" };
        let Expr::Literal(v, _) = a else {
            return plan_err!(
                "{function}: {what} must be a constant (e.g. ['EMAIL', 'PHONE'] or 'mask'), not a column or expression"
            );
        };
        if i == 1 {
            types_from_scalar(function, v)?;
        } else {
            check_operator(operator_from_scalar(v)?, cfg)?;
        }
    }
    Ok(())
}

fn check_operator(op: RedactOperator, cfg: &PiiConfig) -> Result<()> {
    if op == RedactOperator::Hash {
        cfg.hash_key()?;
    }
    Ok(())
}

/// A constant argument at run time (DataFusion passes literals as scalars).
fn runtime_scalar<'a>(function: &str, what: &str, v: &'a ColumnarValue) -> Result<&'a ScalarValue> {
    match v {
        ColumnarValue::Scalar(s) => Ok(s),
        ColumnarValue::Array(_) => {
            exec_err!("{function}: {what} must be a constant, not a column or expression")
        }
    }
}

/// The text argument as an array (a scalar becomes a one-row array).
fn text_array(v: &ColumnarValue) -> Result<(ArrayRef, bool)> {
    Ok(match v {
        ColumnarValue::Array(a) => (Arc::clone(a), false),
        ColumnarValue::Scalar(s) => (s.to_array_of_size(1)?, true),
    })
}

fn detect_rows(
    detector: &PiiDetector,
    texts: &[Option<&str>],
    types: EntitySet,
) -> Result<Vec<Option<Vec<Detection>>>> {
    let rows: std::result::Result<Vec<_>, _> = texts
        .par_iter()
        .map(|t| t.map(|t| detector.detect(t, types)).transpose())
        .collect();
    Ok(rows?)
}

fn finish(array: ArrayRef, scalar: bool) -> Result<ColumnarValue> {
    if scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &array, 0,
        )?))
    } else {
        Ok(ColumnarValue::Array(array))
    }
}

fn config_eq(a: &PiiConfig, b: &PiiConfig) -> bool {
    a.hash_key_env == b.hash_key_env
        && a.min_score.to_bits() == b.min_score.to_bits()
        && a.ner == b.ner
}

fn config_hash<H: Hasher>(c: &PiiConfig, state: &mut H) {
    c.hash_key_env.hash(state);
    c.min_score.to_bits().hash(state);
    c.ner.hash(state);
}

// ---------------------------------------------------------------------------------------

/// `detect_pii(text [, types])` -> `List<Struct<entity_type, start_char, end_char, score>>`.
///
/// Offsets are code points, end exclusive. `types` (an array of Bedrock Guardrails entity
/// names, or one comma-separated string) must be a constant; it defaults to every
/// structured type. NULL text gives NULL; empty text an empty list.
#[derive(Debug)]
pub struct DetectPiiFunc {
    signature: Signature,
    cfg: PiiConfig,
    detector: PiiDetector,
}

impl DetectPiiFunc {
    /// `detect_pii` with the job's PII settings.
    pub fn new(cfg: &PiiConfig) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            cfg: cfg.clone(),
            detector: PiiDetector::new(cfg),
        }
    }
}

impl PartialEq for DetectPiiFunc {
    fn eq(&self, other: &Self) -> bool {
        config_eq(&self.cfg, &other.cfg)
    }
}
impl Eq for DetectPiiFunc {}
impl Hash for DetectPiiFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        DETECT.hash(state);
        config_hash(&self.cfg, state);
    }
}

impl ScalarUDFImpl for DetectPiiFunc {
    fn name(&self) -> &str {
        DETECT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] => Ok(vec![coerce_text(DETECT, "text", t)?]),
            [t, types] => Ok(vec![
                coerce_text(DETECT, "text", t)?,
                coerce_types_arg(DETECT, types)?,
            ]),
            _ => plan_err!(
                "{DETECT} takes 1 or 2 arguments: {DETECT}(text [, types]), got {}",
                arg_types.len()
            ),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(pii_list_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if let Some(Some(v)) = planned_literal(&args, 1) {
            types_from_scalar(DETECT, v)?;
        }
        Ok(Arc::new(Field::new(DETECT, pii_list_type(), true)))
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        check_simplified(DETECT, &args, &self.cfg)?;
        Ok(ExprSimplifyResult::Original(args))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(text) = args.args.first() else {
            return exec_err!("{DETECT}: missing the text argument");
        };
        let types = match args.args.get(1) {
            None => literal_types(DETECT, None)?,
            Some(v) => literal_types(DETECT, Some(runtime_scalar(DETECT, "types", v)?))?,
        };
        let (array, scalar) = text_array(text)?;
        let texts = string_values(&array)?;
        let rows = detect_rows(&self.detector, &texts, types)?;
        finish(build_list(&rows)?, scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_STRING,
                "Finds PII (Bedrock Guardrails entity names) with validated detectors: \
                 checksums (Luhn, ABA, IBAN mod-97, NHS mod-11, VIN), number plans (SSN, \
                 phone numbers) and context words. Offsets are code points, end exclusive.",
                "detect_pii(text [, types])",
            )
            .with_sql_example("SELECT d.entity_type, d.start_char FROM (SELECT unnest(detect_pii(body)) AS d FROM docs)")
            .with_argument("text", "Text to scan. NULL gives NULL, empty text an empty list.")
            .with_argument("types", "Constant array of entity names, e.g. ['EMAIL', 'PHONE'] (default: all).")
            .build()
        });
        Some(&DOC)
    }
}

fn to_i64(v: usize) -> Result<i64> {
    i64::try_from(v).or_else(|_| exec_err!("{DETECT}: offset {v} does not fit in BIGINT"))
}

fn build_list(rows: &[Option<Vec<Detection>>]) -> Result<ArrayRef> {
    let n: usize = rows.iter().flatten().map(Vec::len).sum();
    let mut names = Vec::with_capacity(n);
    let mut start = Vec::with_capacity(n);
    let mut end = Vec::with_capacity(n);
    let mut score = Vec::with_capacity(n);
    let mut offsets = Vec::with_capacity(rows.len() + 1);
    offsets.push(0i32);
    let mut valid = Vec::with_capacity(rows.len());
    for row in rows {
        valid.push(row.is_some());
        for d in row.iter().flatten() {
            names.push(d.entity_type.name());
            start.push(to_i64(d.start_char)?);
            end.push(to_i64(d.end_char)?);
            score.push(d.score);
        }
        let Ok(o) = i32::try_from(names.len()) else {
            return exec_err!("{DETECT}: more than 2^31 detections in one batch");
        };
        offsets.push(o);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(Int64Array::from(start)),
        Arc::new(Int64Array::from(end)),
        Arc::new(Float64Array::from(score)),
    ];
    let structs = StructArray::try_new(pii_fields(), columns, None)?;
    let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
    Ok(Arc::new(ListArray::try_new(
        pii_item_field(),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(structs),
        nulls,
    )?))
}

// ---------------------------------------------------------------------------------------

/// `redact_pii(text [, types [, operator]])` -> text of the same string type.
///
/// `operator` is `'mask'` (default: `{EMAIL}`), `'hash'` (`{EMAIL:<16 hex>}`, HMAC-SHA256
/// keyed by the variable `SET pii.hash_key_env` names) or `'remove'`. `types` and
/// `operator` must be constants. NULL text gives NULL.
#[derive(Debug)]
pub struct RedactPiiFunc {
    signature: Signature,
    cfg: PiiConfig,
    detector: PiiDetector,
}

impl RedactPiiFunc {
    /// `redact_pii` with the job's PII settings.
    pub fn new(cfg: &PiiConfig) -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
            cfg: cfg.clone(),
            detector: PiiDetector::new(cfg),
        }
    }
}

impl PartialEq for RedactPiiFunc {
    fn eq(&self, other: &Self) -> bool {
        config_eq(&self.cfg, &other.cfg)
    }
}
impl Eq for RedactPiiFunc {}
impl Hash for RedactPiiFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        REDACT.hash(state);
        config_hash(&self.cfg, state);
    }
}

impl ScalarUDFImpl for RedactPiiFunc {
    fn name(&self) -> &str {
        REDACT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(1..=3).contains(&arg_types.len()) {
            return plan_err!(
                "{REDACT} takes 1 to 3 arguments: {REDACT}(text [, types [, operator]]), got {}",
                arg_types.len()
            );
        }
        arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| match i {
                0 => coerce_text(REDACT, "text", t),
                1 => coerce_types_arg(REDACT, t),
                _ => coerce_text(REDACT, "operator", t),
            })
            .collect()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(match arg_types.first() {
            Some(t @ (DataType::LargeUtf8 | DataType::Utf8View)) => t.clone(),
            _ => DataType::Utf8,
        })
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if let Some(Some(v)) = planned_literal(&args, 1) {
            types_from_scalar(REDACT, v)?;
        }
        if let Some(Some(v)) = planned_literal(&args, 2) {
            check_operator(operator_from_scalar(v)?, &self.cfg)?;
        }
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        Ok(Arc::new(Field::new(
            REDACT,
            self.return_type(&types)?,
            true,
        )))
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        check_simplified(REDACT, &args, &self.cfg)?;
        Ok(ExprSimplifyResult::Original(args))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let Some(text) = args.args.first() else {
            return exec_err!("{REDACT}: missing the text argument");
        };
        let types = match args.args.get(1) {
            None => literal_types(REDACT, None)?,
            Some(v) => literal_types(REDACT, Some(runtime_scalar(REDACT, "types", v)?))?,
        };
        let op = match args.args.get(2) {
            None => RedactOperator::default(),
            Some(v) => operator_from_scalar(runtime_scalar(REDACT, "operator", v)?)?,
        };
        let key = match op {
            RedactOperator::Hash => Some(self.cfg.hash_key()?),
            _ => None,
        };
        let (array, scalar) = text_array(text)?;
        let texts = string_values(&array)?;
        let detector = &self.detector;
        let rows: std::result::Result<Vec<Option<String>>, _> = texts
            .par_iter()
            .map(|t| {
                t.map(|t| {
                    let found = detector.detect(t, types)?;
                    redact(t, &found, op, key.as_deref())
                })
                .transpose()
            })
            .collect();
        let rows = rows?;
        let out: ArrayRef = match array.data_type() {
            DataType::LargeUtf8 => {
                let mut b = GenericStringBuilder::<i64>::new();
                rows.iter().for_each(|r| b.append_option(r.as_deref()));
                Arc::new(b.finish())
            }
            DataType::Utf8View => {
                let mut b = StringViewBuilder::new();
                rows.iter().for_each(|r| b.append_option(r.as_deref()));
                Arc::new(b.finish())
            }
            _ => {
                let total: usize = rows.iter().flatten().map(String::len).sum();
                if i32::try_from(total).is_err() {
                    return exec_err!(
                        "{REDACT}: {total} bytes of text in one batch do not fit a Utf8 column; \
                         cast the text to LargeUtf8 or use smaller batches (epoch.max_rows)"
                    );
                }
                let mut b = GenericStringBuilder::<i32>::with_capacity(rows.len(), total);
                rows.iter().for_each(|r| b.append_option(r.as_deref()));
                Arc::new(b.finish())
            }
        };
        finish(out, scalar)
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_STRING,
                "Replaces the PII that detect_pii finds: 'mask' writes {EMAIL}, {PHONE}, ... \
                 as Bedrock Guardrails does; 'hash' a keyed HMAC-SHA256 token (the same value \
                 gives the same token); 'remove' deletes it.",
                "redact_pii(text [, types [, operator]])",
            )
            .with_sql_example("SELECT redact_pii(body, ['EMAIL', 'PHONE'], 'hash') FROM docs")
            .with_argument("text", "Text to redact. NULL gives NULL.")
            .with_argument("types", "Constant array of entity names (default: all).")
            .with_argument("operator", "'mask' (default), 'hash' or 'remove'.")
            .build()
        });
        Some(&DOC)
    }
}
