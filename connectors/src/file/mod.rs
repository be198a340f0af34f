//! `connector = 'file'`: a bounded source over JSON Lines, CSV or Parquet files
//! on a local disk or any object store (`file://`, `s3://`, `memory://`).
//!
//! ```sql
//! CREATE TABLE docs (doc_id TEXT NOT NULL, body TEXT, ts TIMESTAMP)
//! WITH (connector = 'file', path = 's3://bucket/docs/**/*.jsonl',
//!       bad_data = 'dead_letter', dead_letter = 's3://bucket/dlq/docs/');
//! ```
//!
//! Options are declared and documented in [`options::FileOptions`]. The
//! declared columns are the schema; JSON and CSV need them, Parquet infers them
//! from the first file (plus Hive partition columns) when they are omitted.
//! Bad records are reported to the runtime, which applies `bad_data`; this
//! module builds the dead-letter sink but never writes to it.
//!
//! Layout: [`options`] (option parsing), [`listing`] (path -> sorted files),
//! [`source`] ([`FileSource`]: positions, epochs, state, replay), [`text`]
//! (chunked reading and bad-record isolation for line formats), [`json`] and
//! [`csv`] (codecs), [`parquet_reader`].

pub mod csv;
pub mod json;
pub mod listing;
pub mod options;
pub mod parquet_reader;
pub mod source;
pub mod text;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use strata_pipeline::{BadDataPolicy, Sink};

use crate::{Connector, ConnectorContext, ConnectorError, Result, SourceParts, TableDecl};

pub use options::{FileFormat, FileOptions};
pub use source::{FileSource, FileState};

/// The `file` connector (source only).
pub struct FileConnector;

/// The format `path` or, failing that, the listed files imply.
fn infer_format(path: &str, files: &[Arc<listing::FileEntry>]) -> Result<FileFormat> {
    if let Some(f) = FileFormat::from_extension(path) {
        return Ok(f);
    }
    let mut found: Option<FileFormat> = None;
    for file in files {
        let f = FileFormat::from_extension(&file.url);
        match (found, f) {
            (_, None) => {
                return Err(cannot_infer(
                    path,
                    &format!("'{}' has no known extension", file.display),
                ))
            }
            (Some(a), Some(b)) if a != b => {
                return Err(cannot_infer(
                    path,
                    &format!("files mix {a} and {b} (e.g. '{}')", file.display),
                ))
            }
            (_, f) => found = f,
        }
    }
    found.ok_or_else(|| cannot_infer(path, "no files"))
}

fn cannot_infer(path: &str, why: &str) -> ConnectorError {
    ConnectorError::InvalidOption {
        option: "format".into(),
        value: String::new(),
        message: format!(
            "cannot infer the format of '{path}' ({why}); set format = 'json', 'csv' or 'parquet' (.jsonl/.ndjson/.json, .csv and .parquet/.pq are recognised)"
        ),
    }
}

#[async_trait]
impl Connector for FileConnector {
    fn name(&self) -> &'static str {
        "file"
    }

    fn is_source(&self) -> bool {
        true
    }

    fn is_sink(&self) -> bool {
        false
    }

    async fn create_source(&self, decl: &TableDecl, ctx: &ConnectorContext) -> Result<SourceParts> {
        let (source, bad_data, dead_letter) = build_source(decl, ctx).await?;
        Ok(SourceParts {
            source: Box::new(source),
            bad_data,
            dead_letter,
        })
    }

    async fn create_sink(
        &self,
        decl: &TableDecl,
        _schema: SchemaRef,
        _ctx: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>> {
        Err(ConnectorError::Unsupported(format!(
            "table '{}': connector 'file' can only be read from; write with connector = 'parquet'",
            decl.name
        )))
    }
}

/// Validate `decl` and build its [`FileSource`], bad-data policy and dead-letter sink.
pub async fn build_source(
    decl: &TableDecl,
    ctx: &ConnectorContext,
) -> Result<(FileSource, BadDataPolicy, Option<Arc<dyn Sink>>)> {
    {
        let options = FileOptions::parse(&decl.options)?;
        let listing = listing::list(&options.path, &options.storage).await?;
        let format = match options.format {
            Some(f) => f,
            None => infer_format(&options.path, &listing.files)?,
        };
        if format != FileFormat::Csv
            && decl
                .options
                .get("csv.delimiter")
                .or(decl.options.get("csv.has_header"))
                .is_some()
        {
            return Err(ConnectorError::InvalidOption {
                option: "csv.*".into(),
                value: String::new(),
                message: format!(
                    "csv.* options only apply to format = 'csv' (the format is '{format}')"
                ),
            });
        }
        let store = listing.root.store.clone();
        let files = listing.files;
        let schema: SchemaRef = match (&decl.schema, format) {
            (None, FileFormat::Parquet) => parquet_reader::infer_schema(&store, &files).await?,
            (None, _) => {
                return Err(ConnectorError::Schema(format!(
                    "table '{}': format '{format}' needs declared columns: CREATE TABLE {} (col TYPE, ...) WITH (connector = 'file', ...)",
                    decl.name, decl.name
                )))
            }
            (Some(s), _) => s.clone(),
        };
        let first = files.first().cloned();
        match (format, first) {
            (FileFormat::Json, _) => {
                arrow_json::ReaderBuilder::new(schema.clone())
                    .build_decoder()
                    .map_err(|e| {
                        ConnectorError::Schema(format!(
                            "table '{}': the declared columns cannot be read from JSON: {e}",
                            decl.name
                        ))
                    })?;
            }
            (FileFormat::Csv, Some(first)) if options.csv_has_header => {
                let header = csv::read_header(
                    &store,
                    &first,
                    options.csv_delimiter,
                    options.max_record_bytes,
                )
                .await?;
                if let Some(h) = header {
                    csv::CsvCodec::new(schema.clone(), Some(&h.names), options.csv_delimiter)
                        .map_err(|m| {
                            ConnectorError::Schema(format!(
                                "table '{}': {}: {m}",
                                decl.name, first.display
                            ))
                        })?;
                }
            }
            (FileFormat::Parquet, Some(first)) if decl.schema.is_some() => {
                let keys: Vec<String> = files
                    .iter()
                    .flat_map(|f| f.partitions.iter().map(|(k, _)| k.clone()))
                    .collect();
                parquet_reader::check_declared(&store, &first, &schema, &keys).await?;
            }
            _ => {}
        }
        let dead_letter = match (&options.bad_data, &options.dead_letter) {
            (BadDataPolicy::DeadLetter, Some(location)) => {
                Some(dead_letter_sink(ctx, &decl.name, location, &options)?)
            }
            _ => None,
        };
        let bad_data = options.bad_data;
        let source = FileSource::new(&decl.name, schema, format, options, store, files);
        Ok((source, bad_data, dead_letter))
    }
}

/// The Parquet dead-letter table of source `name` (sink name `<name>.dead_letter`).
fn dead_letter_sink(
    ctx: &ConnectorContext,
    name: &str,
    location: &str,
    options: &FileOptions,
) -> Result<Arc<dyn Sink>> {
    crate::parquet::ParquetSink::for_dead_letters(
        ctx,
        &format!("{name}.dead_letter"),
        location,
        options.storage.clone(),
    )
}
