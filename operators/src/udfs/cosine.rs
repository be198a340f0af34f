//! `cosine_similarity(a, b)`: how close two vectors are, for checking an ingest by retrieval.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type};
use datafusion::common::{exec_err, plan_err, Result, ScalarValue};
use datafusion::logical_expr::scalar_doc_sections::DOC_SECTION_MATH;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

const NAME: &str = "cosine_similarity";

/// `cosine_similarity(a, b)` -> DOUBLE, over two float vectors (`embed` output, or float
/// arrays) of equal length. NULL when either is NULL or has zero length; an error when the
/// lengths differ.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CosineSimilarityFunc {
    signature: Signature,
}

impl Default for CosineSimilarityFunc {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn list_f64() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
}

fn is_float_vector(t: &DataType) -> bool {
    match t {
        DataType::FixedSizeList(f, _) | DataType::List(f) | DataType::LargeList(f) => {
            f.data_type().is_floating()
        }
        DataType::Null => true,
        _ => false,
    }
}

impl ScalarUDFImpl for CosineSimilarityFunc {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return plan_err!(
                "{NAME} takes 2 arguments: {NAME}(a, b), got {}",
                arg_types.len()
            );
        }
        for (t, arg) in arg_types.iter().zip(["a", "b"]) {
            if !is_float_vector(t) {
                return plan_err!(
                    "{NAME}: {arg} must be a vector of floats (embed(...) or a float array), got {t}"
                );
            }
        }
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let all_scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let mut lists = Vec::with_capacity(2);
        for a in &args.args {
            let arr: ArrayRef = match a {
                ColumnarValue::Array(a) => Arc::clone(a),
                ColumnarValue::Scalar(s) => s.to_array_of_size(if all_scalar { 1 } else { n })?,
            };
            let arr = if arr.data_type() == &DataType::Null {
                arrow::array::new_null_array(&list_f64(), arr.len())
            } else {
                cast(&arr, &list_f64())?
            };
            lists.push(arr);
        }
        let (a, b) = (lists[0].as_list::<i32>(), lists[1].as_list::<i32>());
        let mut out = Vec::with_capacity(a.len());
        for row in 0..a.len() {
            if a.is_null(row) || b.is_null(row) {
                out.push(None);
                continue;
            }
            let (x, y) = (a.value(row), b.value(row));
            let (x, y) = (
                x.as_primitive::<Float64Type>(),
                y.as_primitive::<Float64Type>(),
            );
            if x.len() != y.len() {
                return exec_err!(
                    "{NAME}: vectors of different lengths ({} and {}) in row {row}; compare \
                     vectors of the same model",
                    x.len(),
                    y.len()
                );
            }
            let (mut dot, mut nx, mut ny) = (0f64, 0f64, 0f64);
            for (p, q) in x.values().iter().zip(y.values().iter()) {
                dot += p * q;
                nx += p * p;
                ny += q * q;
            }
            out.push((nx > 0.0 && ny > 0.0).then(|| dot / (nx.sqrt() * ny.sqrt())));
        }
        let out: ArrayRef = Arc::new(Float64Array::from(out));
        if all_scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        } else {
            Ok(ColumnarValue::Array(out))
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        static DOC: LazyLock<Documentation> = LazyLock::new(|| {
            Documentation::builder(
                DOC_SECTION_MATH,
                "Cosine similarity of two float vectors of the same length (1 = same direction).",
                "cosine_similarity(a, b)",
            )
            .with_sql_example(
                "SELECT text, cosine_similarity(vector, embed('minilm', 'refund policy')) AS score \
                 FROM chunks ORDER BY score DESC LIMIT 5",
            )
            .with_argument("a", "A vector (embed output, or an array of floats).")
            .with_argument("b", "A vector of the same length.")
            .build()
        });
        Some(&DOC)
    }
}
