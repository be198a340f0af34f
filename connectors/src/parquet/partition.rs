//! Hive partitioning: turns the partition columns of each row into a folder
//! path (`tenant=a/dt=2026-01-01`) and splits a batch into one batch per
//! folder, holding only the file columns.
//!
//! Folder names follow Hive: `column=value`, with the characters Hive escapes
//! (`/`, `=`, `%`, `:`, `#`, `?`, `*`, `"`, `'`, `\`, `[`, `]`, `{`, `^`,
//! control characters) written as `%XX`; NULL and empty strings become
//! `__HIVE_DEFAULT_PARTITION__`. Dates are `YYYY-MM-DD`, timestamps
//! `YYYY-MM-DD HH:MM:SS[.fff]` in the column's time zone (as Hive and Athena
//! write them, so `:` appears as `%3A`). This module does no I/O.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use strata_pipeline::PipelineError;

/// The folder Hive uses for NULL (and empty) partition values.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";
const DATE_FORMAT: &str = "%Y-%m-%d";

/// Whether Hive escapes `c` in a partition path (Hive's `FileUtils.charToEscape`).
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{01}'
            ..='\u{1f}'
                | '"'
                | '#'
                | '%'
                | '\''
                | '*'
                | '/'
                | ':'
                | '='
                | '?'
                | '\\'
                | '\u{7f}'
                | '{'
                | '['
                | ']'
                | '^'
    )
}

/// Append `s` to `out`, escaped as Hive escapes partition names and values.
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        if needs_escape(c) {
            // `needs_escape` only matches ASCII, so one byte.
            let _ = write!(out, "%{:02X}", c as u32);
        } else if c == '\0' {
            out.push_str("%00");
        } else {
            out.push(c);
        }
    }
}

/// Hive-escape `s`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// Splits batches by the values of their partition columns.
#[derive(Clone, Debug)]
pub struct Partitioner {
    /// `(escaped column name, input index)` in `partition_by` order.
    columns: Vec<(String, usize)>,
    /// Input indices of the file columns.
    file_indices: Vec<usize>,
    /// Schema of the output batches.
    file_schema: SchemaRef,
    /// Number of input columns.
    input_len: usize,
}

impl Partitioner {
    /// A partitioner over `input` columns `partition_indices`; output batches
    /// carry `file_indices` in `file_schema`.
    pub fn new(
        input: &SchemaRef,
        partition_indices: &[usize],
        file_indices: &[usize],
        file_schema: SchemaRef,
    ) -> Self {
        let columns = partition_indices
            .iter()
            .map(|&i| (escape(input.field(i).name()), i))
            .collect();
        Self {
            columns,
            file_indices: file_indices.to_vec(),
            file_schema,
            input_len: input.fields().len(),
        }
    }

    /// Whether there are partition columns at all.
    pub fn is_partitioned(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Keep only the file columns, re-stamped with the file schema (checks the
    /// batch's types against the sink's schema without copying data).
    pub fn project(&self, batch: &RecordBatch) -> Result<RecordBatch, PipelineError> {
        if batch.num_columns() != self.input_len {
            return Err(PipelineError::Arrow(arrow::error::ArrowError::SchemaError(
                format!(
                    "batch has {} columns, the sink's schema {}",
                    batch.num_columns(),
                    self.input_len
                ),
            )));
        }
        let columns: Vec<ArrayRef> = self
            .file_indices
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.file_schema.clone(),
            columns,
            &options,
        )?)
    }

    /// Split `batch` (in the input schema) into `(folder, rows)` pairs, folders
    /// in order of first appearance, rows holding only the file columns. An
    /// unpartitioned sink gets one pair with an empty folder and no copy.
    pub fn split(&self, batch: &RecordBatch) -> Result<Vec<(String, RecordBatch)>, PipelineError> {
        let projected = self.project(batch)?;
        if self.columns.is_empty() || batch.num_rows() == 0 {
            return Ok(vec![(String::new(), projected)]);
        }
        let options = FormatOptions::new()
            .with_null("")
            .with_date_format(Some(DATE_FORMAT))
            .with_datetime_format(Some(DATE_FORMAT))
            .with_timestamp_format(Some(TIMESTAMP_FORMAT))
            .with_timestamp_tz_format(Some(TIMESTAMP_FORMAT));
        let formatters = self
            .columns
            .iter()
            .map(|(_, i)| ArrayFormatter::try_new(batch.column(*i).as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let arrays: Vec<&ArrayRef> = self.columns.iter().map(|(_, i)| batch.column(*i)).collect();

        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut key = String::new();
        let mut value = String::new();
        let mut last: Option<usize> = None;
        for row in 0..batch.num_rows() {
            key.clear();
            for (c, ((name, _), fmt)) in self.columns.iter().zip(&formatters).enumerate() {
                if c > 0 {
                    key.push('/');
                }
                key.push_str(name);
                key.push('=');
                value.clear();
                if arrays[c].is_valid(row) {
                    write!(value, "{}", fmt.value(row)).map_err(|e| {
                        PipelineError::Arrow(arrow::error::ArrowError::ComputeError(format!(
                            "partition value: {e}"
                        )))
                    })?;
                }
                if value.is_empty() {
                    key.push_str(HIVE_DEFAULT_PARTITION);
                } else {
                    escape_into(&mut key, &value);
                }
            }
            // Rows usually arrive in runs of one partition: skip the hash then.
            let g = match last {
                Some(g) if groups[g].0 == key => g,
                _ => match index.get(key.as_str()) {
                    Some(&g) => g,
                    None => {
                        index.insert(key.clone(), groups.len());
                        groups.push((key.clone(), Vec::new()));
                        groups.len() - 1
                    }
                },
            };
            groups[g].1.push(row as u32);
            last = Some(g);
        }
        if groups.len() == 1 {
            let (folder, _) = groups.remove(0);
            return Ok(vec![(folder, projected)]);
        }
        groups
            .into_iter()
            .map(|(folder, rows)| {
                let indices = UInt32Array::from(rows);
                Ok((folder, take_record_batch(&projected, &indices)?))
            })
            .collect()
    }
}

/// Convenience for tests and callers holding a schema: a partitioner for
/// `partition_by` column names (which must exist).
pub fn partitioner_for(input: &SchemaRef, partition_by: &[&str]) -> Option<Partitioner> {
    let pidx: Vec<usize> = partition_by
        .iter()
        .map(|n| input.index_of(n).ok())
        .collect::<Option<_>>()?;
    let fidx: Vec<usize> = (0..input.fields().len())
        .filter(|i| !pidx.contains(i))
        .collect();
    let file_schema = Arc::new(input.project(&fidx).ok()?);
    Some(Partitioner::new(input, &pidx, &fidx, file_schema))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    #[test]
    fn hive_escaping() {
        assert_eq!(escape("a/b=c%d"), "a%2Fb%3Dc%25d");
        assert_eq!(escape("10:00:00"), "10%3A00%3A00");
        assert_eq!(escape("plain-value_1.x y"), "plain-value_1.x y");
        assert_eq!(escape("é#?"), "é%23%3F");
        assert_eq!(escape("a\nb"), "a%0Ab");
    }

    #[test]
    fn split_by_values() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    None,
                    Some("a/b"),
                    Some(""),
                    Some("a"),
                ])),
                Arc::new(Date32Array::from(vec![
                    Some(20454),
                    Some(20454),
                    None,
                    Some(0),
                    Some(20454),
                ])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(0),
                        Some(1_500_000),
                        Some(0),
                        Some(0),
                        Some(0),
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])),
            ],
        )
        .unwrap();
        let p = partitioner_for(&schema, &["tenant", "d"]).unwrap();
        let parts = p.split(&batch).unwrap();
        let folders: Vec<&str> = parts.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            folders,
            vec![
                "tenant=a/d=2026-01-01",
                "tenant=__HIVE_DEFAULT_PARTITION__/d=2026-01-01",
                "tenant=a%2Fb/d=__HIVE_DEFAULT_PARTITION__",
                "tenant=__HIVE_DEFAULT_PARTITION__/d=1970-01-01"
            ]
        );
        assert_eq!(parts[0].1.num_rows(), 2);
        assert_eq!(parts[0].1.num_columns(), 2);
        let v = parts[0]
            .1
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(v.values(), &[1, 5]);

        let p = partitioner_for(&schema, &["ts"]).unwrap();
        let folders: Vec<String> = p
            .split(&batch)
            .unwrap()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(
            folders,
            vec![
                "ts=1970-01-01 00%3A00%3A00",
                "ts=1970-01-01 00%3A00%3A01.500"
            ]
        );
    }
}
