//! Reading Parquet files for `format = 'parquet'`: parquet's async reader over
//! object_store ([`ParquetObjectReader`]), only the needed row groups and
//! columns, each batch assembled into the source schema.
//!
//! Positions are row indices (0-based) within the file. Declared columns are
//! taken from the file by name (exact, else case-insensitive) and cast to the
//! declared type; a column the file lacks may come from a Hive partition folder
//! (`k=v/`), otherwise it is a schema error naming the column and the file.
//! With no declared columns the schema is the first file's, plus one nullable
//! Utf8 column per Hive partition key (in order of appearance), filled per file.
//! Input bytes are estimated as the file's size spread evenly over its rows.
//! Parquet files hold typed values, so there are no per-record bad records
//! here: a file that cannot be read fails the source.

// `ParquetObjectReader` is deprecated in parquet 59 in favour of hand-written
// `AsyncFileReader`s; it is still the supported object_store bridge in this
// version and exactly what we need.
#![allow(deprecated)]

use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, StringArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use futures::StreamExt;
use object_store::ObjectStore;
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStream};
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};
use strata_pipeline::PipelineError;

use super::listing::FileEntry;
use super::text::Step;

/// Rows per decoded batch.
const BATCH_ROWS: usize = 8192;

/// Hive's name for a NULL partition value.
const HIVE_NULL: &str = "__HIVE_DEFAULT_PARTITION__";

fn err(file: &FileEntry, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::Storage {
        location: file.url.clone(),
        message: format!("cannot read Parquet: {e}"),
    }
}

async fn builder(
    store: &Arc<dyn ObjectStore>,
    file: &FileEntry,
) -> Result<ParquetRecordBatchStreamBuilder<ParquetObjectReader>, PipelineError> {
    let reader =
        ParquetObjectReader::new(store.clone(), file.path.clone()).with_file_size(file.size);
    ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| err(file, e))
}

/// The schema of a table whose columns were not declared: the first file's
/// columns plus the Hive partition keys of all files as Utf8.
pub async fn infer_schema(
    store: &Arc<dyn ObjectStore>,
    files: &[Arc<FileEntry>],
) -> Result<SchemaRef, PipelineError> {
    let Some(first) = files.first() else {
        return Ok(Arc::new(Schema::empty()));
    };
    let b = builder(store, first).await?;
    let mut fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_metadata(Default::default()))
        .collect();
    for file in files {
        for (k, _) in &file.partitions {
            if !fields.iter().any(|f| f.name() == k) {
                fields.push(Field::new(k, DataType::Utf8, true));
            }
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Where an output column comes from in one file.
enum ColumnSource {
    File(String),
    Partition(Option<String>),
}

fn plan_columns(
    schema: &SchemaRef,
    file_schema: &Schema,
    file: &FileEntry,
    partition_keys: &[String],
) -> Result<(Vec<ColumnSource>, Vec<usize>), String> {
    let mut sources = Vec::new();
    let mut roots = Vec::new();
    for f in schema.fields() {
        let found = file_schema
            .fields()
            .iter()
            .position(|c| c.name() == f.name())
            .or_else(|| {
                file_schema
                    .fields()
                    .iter()
                    .position(|c| c.name().eq_ignore_ascii_case(f.name()))
            });
        if let Some(idx) = found {
            roots.push(idx);
            sources.push(ColumnSource::File(file_schema.field(idx).name().clone()));
            continue;
        }
        let part = file
            .partitions
            .iter()
            .find(|(k, _)| k == f.name() || k.eq_ignore_ascii_case(f.name()));
        match part {
            Some((_, v)) => {
                sources.push(ColumnSource::Partition((v != HIVE_NULL).then(|| v.clone())))
            }
            // A partition key other files have but this one's folders lack.
            None if partition_keys
                .iter()
                .any(|k| k.eq_ignore_ascii_case(f.name())) =>
            {
                sources.push(ColumnSource::Partition(None))
            }
            None => {
                let names: Vec<&str> = file_schema
                    .fields()
                    .iter()
                    .map(|c| c.name().as_str())
                    .collect();
                return Err(format!(
                    "column '{}' is not in Parquet file {} (its columns: {}); declare only columns the files have",
                    f.name(),
                    file.url,
                    names.join(", ")
                ));
            }
        }
    }
    roots.sort_unstable();
    roots.dedup();
    Ok((sources, roots))
}

/// Check at create time that the first file can provide every declared column.
pub async fn check_declared(
    store: &Arc<dyn ObjectStore>,
    file: &FileEntry,
    schema: &SchemaRef,
    partition_keys: &[String],
) -> Result<(), crate::ConnectorError> {
    let b = builder(store, file).await?;
    plan_columns(schema, b.schema(), file, partition_keys)
        .map(|_| ())
        .map_err(crate::ConnectorError::Schema)
}

/// Reads rows `[start, end)` of one Parquet file.
pub struct ParquetCursor {
    file: Arc<FileEntry>,
    schema: SchemaRef,
    stream: ParquetRecordBatchStream<ParquetObjectReader>,
    sources: Vec<ColumnSource>,
    pending: Option<RecordBatch>,
    row: u64,
    end: u64,
    total: u64,
    bytes_per_row: u64,
}

impl ParquetCursor {
    /// Open `file` at row `start`, reading up to row `end` (`None`: the last row).
    pub async fn open(
        store: &Arc<dyn ObjectStore>,
        file: Arc<FileEntry>,
        schema: SchemaRef,
        partition_keys: &[String],
        start: u64,
        end: Option<u64>,
    ) -> Result<Self, PipelineError> {
        let b = builder(store, &file).await?;
        let (sources, roots) = plan_columns(&schema, b.schema(), &file, partition_keys)
            .map_err(|m| PipelineError::source(&file.url, m))?;
        let total: u64 = b
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows().max(0) as u64)
            .sum();
        let end = end.unwrap_or(total).min(total);
        let start = start.min(end);
        let mut groups = Vec::new();
        let mut first_group_start = None;
        let mut at = 0u64;
        for (i, rg) in b.metadata().row_groups().iter().enumerate() {
            let n = rg.num_rows().max(0) as u64;
            if at + n > start && at < end {
                groups.push(i);
                first_group_start.get_or_insert(at);
            }
            at += n;
        }
        let skip = start - first_group_start.unwrap_or(start);
        let mask = ProjectionMask::roots(b.parquet_schema(), roots);
        let stream = b
            .with_projection(mask)
            .with_row_groups(groups)
            .with_offset(skip as usize)
            .with_limit((end - start) as usize)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| err(&file, e))?;
        let bytes_per_row = (file.size / total.max(1)).max(1);
        Ok(Self {
            file,
            schema,
            stream,
            sources,
            pending: None,
            row: start,
            end,
            total,
            bytes_per_row,
        })
    }

    /// Whether the position is at the file's last row.
    pub fn file_done(&self) -> bool {
        self.row >= self.total
    }

    /// Current position: (row index, row index).
    pub fn position(&self) -> (u64, u64) {
        (self.row, self.row)
    }

    fn assemble(&self, batch: &RecordBatch) -> Result<RecordBatch, PipelineError> {
        let opts = CastOptions {
            safe: false,
            ..Default::default()
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (f, src) in self.schema.fields().iter().zip(&self.sources) {
            let col = match src {
                ColumnSource::File(name) => {
                    batch.column_by_name(name).cloned().ok_or_else(|| {
                        PipelineError::source(
                            &self.file.url,
                            format!("column '{name}' missing from a batch"),
                        )
                    })?
                }
                ColumnSource::Partition(Some(v)) => {
                    Arc::new(StringArray::from(vec![v.as_str(); batch.num_rows()])) as ArrayRef
                }
                ColumnSource::Partition(None) => new_null_array(&DataType::Utf8, batch.num_rows()),
            };
            let col = if col.data_type() == f.data_type() {
                col
            } else {
                cast_with_options(&col, f.data_type(), &opts).map_err(|e| {
                    PipelineError::source(
                        &self.file.url,
                        format!(
                            "column '{}' ({}) cannot be read as declared type {}: {e}",
                            f.name(),
                            col.data_type(),
                            f.data_type()
                        ),
                    )
                })?
            };
            cols.push(col);
        }
        RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| PipelineError::source(&self.file.url, e))
    }

    /// Read up to `max_records` rows and about `max_bytes` bytes (at least one
    /// row when `force_one`).
    pub async fn step(
        &mut self,
        max_records: u64,
        max_bytes: u64,
        force_one: bool,
    ) -> Result<Step, PipelineError> {
        let mut step = Step::default();
        if self.row >= self.end {
            step.done = true;
            return Ok(step);
        }
        let by_bytes = max_bytes / self.bytes_per_row;
        let mut want = max_records.min(by_bytes);
        if want == 0 {
            if !force_one {
                return Ok(step);
            }
            want = 1;
        }
        let batch = match self.pending.take() {
            Some(b) => b,
            None => match self.stream.next().await {
                Some(b) => b.map_err(|e| err(&self.file, e))?,
                None => {
                    return Err(PipelineError::source(
                        &self.file.url,
                        format!("file ended at row {} before row {}", self.row, self.end),
                    ))
                }
            },
        };
        let n = (batch.num_rows() as u64).min(want) as usize;
        if n < batch.num_rows() {
            self.pending = Some(batch.slice(n, batch.num_rows() - n));
        }
        step.batches.push(self.assemble(&batch.slice(0, n))?);
        step.records = n as u64;
        step.bytes = n as u64 * self.bytes_per_row;
        self.row += n as u64;
        step.done = self.row >= self.end;
        Ok(step)
    }
}
