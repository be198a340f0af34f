//! `embed(model, text)`: a vector per text, from a model declared with `CREATE MODEL`.
//!
//! Owns the SQL surface of embedding: the model argument is a literal resolved at plan time
//! (so the vector type `FixedSizeList<Float32, D>` is known then), the call is an async UDF
//! (DataFusion hands it a whole Arrow array; it awaits the model without blocking tokio's
//! workers), NULL text gives a NULL vector, and only the non-null texts reach the model.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, FieldRef};
use async_trait::async_trait;
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::async_udf::{AsyncScalarUDF, AsyncScalarUDFImpl};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_OTHER;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};

use super::{scalar_str, string_values};
use crate::models::usage::{with_call, CallContext};
use crate::models::ModelRegistry;

/// The SQL name of the function.
pub const NAME: &str = "embed";

/// The vector type of a `dims`-dimensional embedding.
pub fn vector_type(dims: usize) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new("item", DataType::Float32, false)),
        dims as i32,
    )
}

/// `embed(model, text)` -> `FixedSizeList<Float32, D>`.
#[derive(Debug)]
pub struct EmbedFunc {
    signature: Signature,
    models: Arc<ModelRegistry>,
    /// The variant the planner puts in place of the user's call when the job sets
    /// `job.tenant_column`: `(model, text, tenant)`. Texts are embedded per tenant, so each
    /// call's usage rows name one tenant.
    tenant: bool,
}

impl PartialEq for EmbedFunc {
    fn eq(&self, other: &Self) -> bool {
        self.tenant == other.tenant && Arc::ptr_eq(&self.models, &other.models)
    }
}
impl Eq for EmbedFunc {}
impl Hash for EmbedFunc {
    fn hash<H: Hasher>(&self, state: &mut H) {
        NAME.hash(state);
        self.tenant.hash(state);
        (Arc::as_ptr(&self.models) as usize).hash(state);
    }
}

impl EmbedFunc {
    /// `embed` over the models of one job.
    pub fn new(models: Arc<ModelRegistry>) -> Self {
        Self {
            // Not user_defined: DataFusion's AsyncScalarUDF wrapper does not forward
            // coerce_types, so the signature itself must coerce (any string layout, NULL).
            signature: Signature::string(2, Volatility::Volatile),
            models,
            tenant: false,
        }
    }

    /// As a registrable (async) UDF.
    pub fn udf(models: Arc<ModelRegistry>) -> ScalarUDF {
        AsyncScalarUDF::new(Arc::new(Self::new(models))).into_scalar_udf()
    }

    /// The tenant-carrying variant (never registered by name: the planner builds calls to it,
    /// see [`crate::registry::tenant_variant`]).
    pub fn tenant_udf(models: Arc<ModelRegistry>) -> ScalarUDF {
        let f = Self {
            signature: Signature::string(3, Volatility::Volatile),
            models,
            tenant: true,
        };
        AsyncScalarUDF::new(Arc::new(f)).into_scalar_udf()
    }

    fn model_name<'a>(&self, v: Option<&'a ScalarValue>) -> Result<&'a str> {
        match v {
            None => plan_err!(
                "{NAME}: the model must be a literal naming a CREATE MODEL, e.g. embed('minilm', text)"
            ),
            Some(v) => match scalar_str(NAME, "model", v)? {
                Some(m) => Ok(m),
                None => plan_err!("{NAME}: the model must not be NULL"),
            },
        }
    }
}

impl ScalarUDFImpl for EmbedFunc {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        plan_err!("{NAME}: the return type depends on the model; use return_field_from_args")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = self.model_name(args.scalar_arguments.first().copied().flatten())?;
        let model = self.models.lookup(NAME, name)?;
        let dims = model.embedder(NAME)?.dimensions();
        Ok(Arc::new(Field::new(NAME, vector_type(dims), true)))
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        exec_err!("{NAME} is asynchronous and runs through DataFusion's async function path")
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_OTHER,
                "Embedding vector of text from a model declared with CREATE MODEL.",
                "embed(model, text)",
            )
            .with_sql_example("SELECT doc_id, embed('minilm', body) AS vector FROM docs")
            .with_argument(
                "model",
                "Name of a CREATE MODEL with task 'embedding' (a literal).",
            )
            .with_argument("text", "Text to embed. NULL gives NULL.")
            .build()
        });
        Some(&DOC)
    }
}

#[async_trait]
impl AsyncScalarUDFImpl for EmbedFunc {
    async fn invoke_async_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = match args.args.first() {
            Some(ColumnarValue::Scalar(v)) => self.model_name(Some(v))?,
            _ => return exec_err!("{NAME}: the model must be a literal, not a column"),
        };
        let model = self.models.lookup(NAME, name)?;
        let embedder = Arc::clone(model.embedder(NAME)?);
        let dims = embedder.dimensions();
        let (array, scalar_input): (ArrayRef, bool) = match args.args.get(1) {
            Some(ColumnarValue::Array(a)) => (Arc::clone(a), false),
            Some(ColumnarValue::Scalar(s)) => (s.to_array_of_size(1)?, true),
            None => return exec_err!("{NAME}: missing the text argument"),
        };
        let texts = string_values(&array)?;
        let tenants = match (self.tenant, args.args.get(2)) {
            (false, _) => None,
            (true, Some(v)) => Some(super::ai::tenant_values(v, texts.len())?),
            (true, None) => return exec_err!("{NAME}: missing the tenant argument"),
        };
        // The non-null rows, one group per tenant (one group when the job has no tenant
        // column): each group is one call, so its usage rows name its tenant.
        let mut groups: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
        for (row, t) in texts.iter().enumerate() {
            if t.is_some() {
                let tenant = tenants.as_ref().and_then(|ts| ts[row].as_deref());
                groups.entry(tenant).or_default().push(row);
            }
        }
        let calls = groups.into_iter().map(|(tenant, rows)| {
            let embedder = Arc::clone(&embedder);
            let batch: Vec<String> = rows
                .iter()
                .map(|&r| texts[r].unwrap_or_default().to_string())
                .collect();
            let call = CallContext::new("none").with_tenant(tenant.map(str::to_string));
            async move {
                let vectors = with_call(call, embedder.embed(&batch)).await?;
                if vectors.len() != batch.len() * dims {
                    return exec_err!(
                        "{NAME}: model '{name}' returned {} values for {} texts of {dims} \
                         dimensions",
                        vectors.len(),
                        batch.len()
                    );
                }
                Ok((rows, vectors))
            }
        });
        // Scatter the vectors of the non-null texts back to their rows; NULL rows get zeros
        // under a null bit.
        let mut values = vec![0f32; texts.len() * dims];
        for (rows, vectors) in futures::future::try_join_all(calls).await? {
            for (row, v) in rows.into_iter().zip(vectors.chunks(dims)) {
                values[row * dims..(row + 1) * dims].copy_from_slice(v);
            }
        }
        let nulls = NullBuffer::from_iter(texts.iter().map(Option::is_some));
        let list = FixedSizeListArray::try_new(
            Arc::new(Field::new("item", DataType::Float32, false)),
            dims as i32,
            Arc::new(Float32Array::from(values)),
            (nulls.null_count() > 0).then_some(nulls),
        )?;
        let out: ArrayRef = Arc::new(list);
        if scalar_input {
            // A constant text (`embed('m', 'question')`) is embedded once. DataFusion 55's
            // async path turns a Scalar result into a one-row array and then fails on the
            // length mismatch, so return it repeated to the batch's length.
            let v = ScalarValue::try_from_array(&out, 0)?;
            Ok(ColumnarValue::Array(v.to_array_of_size(args.number_rows)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }
}
