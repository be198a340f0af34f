//! CSV decoding: the [`TextCodec`] for `format = 'csv'`.
//!
//! Records follow RFC 4180: fields may be quoted with `"`, a quote inside a
//! quoted field is doubled, and a quoted field may hold newlines (so a record
//! may span lines). An empty field is NULL. With `csv.has_header = true` the
//! first record of every file names its columns and declared columns are
//! matched by name (case-insensitive; extra CSV columns are ignored); without a
//! header the file's columns are the declared ones, in order. Chunks decode
//! with one `arrow_csv` decoder; bad records (wrong field count, a value that
//! does not parse as its column's type, an empty `NOT NULL` field, invalid
//! UTF-8) are isolated and explained by [`CsvCodec::diagnose`].

use std::sync::Arc;

use arrow::array::{Array, StringArray};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use object_store::{ObjectStore, ObjectStoreExt};
use strata_pipeline::PipelineError;

use super::listing::FileEntry;
use super::text::{ScanState, TextCodec};

/// A CSV file's header row.
#[derive(Clone, Debug)]
pub struct Header {
    /// Column names.
    pub names: Vec<String>,
    /// Byte offset after the header's terminator: where records start.
    pub end: u64,
    /// Line number of the line after the header.
    pub next_line: u64,
}

/// Read the header (the first non-blank record) of `file`; `None` when the
/// file holds no record at all.
pub async fn read_header(
    store: &Arc<dyn ObjectStore>,
    file: &FileEntry,
    delimiter: u8,
    max_record: u64,
) -> Result<Option<Header>, PipelineError> {
    if file.size == 0 {
        return Ok(None);
    }
    let mut want = (64u64 << 10).min(file.size);
    loop {
        let buf =
            store
                .get_range(&file.path, 0..want)
                .await
                .map_err(|e| PipelineError::Storage {
                    location: file.url.clone(),
                    message: format!("read failed: {e}"),
                })?;
        let eof = want >= file.size;
        let mut pos = 0usize;
        let mut line = 1u64;
        loop {
            let mut state = ScanState {
                pos,
                ..Default::default()
            };
            let (end, next) = match find_csv_terminator(&buf, &mut state) {
                Some(t) => (t, t + 1),
                None if eof => (buf.len(), buf.len()),
                None => break,
            };
            let content = &buf[pos..end];
            if content.is_empty() || content == b"\r" {
                if next >= buf.len() {
                    if eof {
                        return Ok(None);
                    }
                    break;
                }
                pos = next;
                line += 1;
                continue;
            }
            if let Err(e) = simdutf8::compat::from_utf8(content) {
                return Err(PipelineError::source(
                    &file.url,
                    format!(
                        "the CSV header has invalid UTF-8 at byte {}",
                        e.valid_up_to()
                    ),
                ));
            }
            let names = split_record(content, delimiter);
            return Ok(Some(Header {
                names,
                end: next as u64,
                next_line: line + 1 + state.newlines,
            }));
        }
        if eof {
            return Ok(None);
        }
        if want > max_record {
            return Err(PipelineError::source(
                &file.url,
                format!("the CSV header is longer than max_record_bytes ({max_record})"),
            ));
        }
        want = (want * 4).min(file.size);
    }
}

fn find_csv_terminator(buf: &[u8], state: &mut ScanState) -> Option<usize> {
    let mut i = state.pos;
    while let Some(off) = memchr::memchr2(b'"', b'\n', &buf[i..]) {
        let at = i + off;
        if buf[at] == b'"' {
            state.in_quotes = !state.in_quotes;
        } else if state.in_quotes {
            state.newlines += 1;
        } else {
            return Some(at);
        }
        i = at + 1;
    }
    state.pos = buf.len();
    None
}

/// Decodes CSV records of one file into batches of the declared schema.
pub struct CsvCodec {
    /// The declared schema (output).
    schema: SchemaRef,
    /// One field per CSV column: declared ones typed, others Utf8.
    file_schema: SchemaRef,
    /// For each declared column, its CSV column index.
    projection: Vec<usize>,
    delimiter: u8,
}

impl CsvCodec {
    /// A codec for files whose header (if any) is `header`. Errors name a
    /// declared column the header lacks.
    pub fn new(
        schema: SchemaRef,
        header: Option<&[String]>,
        delimiter: u8,
    ) -> Result<Self, String> {
        let (file_schema, projection) = match header {
            None => (schema.clone(), (0..schema.fields().len()).collect()),
            Some(names) => {
                let mut fields: Vec<Field> = names
                    .iter()
                    .map(|n| Field::new(n, DataType::Utf8, true))
                    .collect();
                let mut projection = Vec::with_capacity(schema.fields().len());
                for f in schema.fields() {
                    let idx = names
                        .iter()
                        .position(|n| n.trim().eq_ignore_ascii_case(f.name()))
                        .ok_or_else(|| {
                            format!(
                                "declared column '{}' is not in the CSV header ({})",
                                f.name(),
                                names.join(", ")
                            )
                        })?;
                    if projection.contains(&idx) {
                        return Err(format!(
                            "CSV header column '{}' matches more than one declared column",
                            names[idx]
                        ));
                    }
                    fields[idx] = f.as_ref().clone();
                    projection.push(idx);
                }
                (Arc::new(Schema::new(fields)), projection)
            }
        };
        Ok(Self {
            schema,
            file_schema,
            projection,
            delimiter,
        })
    }
}

/// Split one record (terminator excluded) into its fields, unquoting them.
pub fn split_record(record: &[u8], delimiter: u8) -> Vec<String> {
    let record = record.strip_suffix(b"\r").unwrap_or(record);
    let mut fields = Vec::new();
    let mut cur = Vec::new();
    let mut in_quotes = false;
    let mut i = 0;
    while i < record.len() {
        let b = record[i];
        if in_quotes {
            if b == b'"' {
                if record.get(i + 1) == Some(&b'"') {
                    cur.push(b'"');
                    i += 1;
                } else {
                    in_quotes = false;
                }
            } else {
                cur.push(b);
            }
        } else if b == b'"' {
            in_quotes = true;
        } else if b == delimiter {
            fields.push(String::from_utf8_lossy(&cur).into_owned());
            cur.clear();
        } else {
            cur.push(b);
        }
        i += 1;
    }
    fields.push(String::from_utf8_lossy(&cur).into_owned());
    fields
}

impl TextCodec for CsvCodec {
    fn find_terminator(&self, buf: &[u8], state: &mut ScanState) -> Option<usize> {
        find_csv_terminator(buf, state)
    }

    fn is_blank(&self, content: &[u8]) -> bool {
        content.is_empty() || content == b"\r"
    }

    fn decode(&self, data: &[u8], rows: usize) -> Result<RecordBatch, String> {
        let mut decoder = arrow_csv::ReaderBuilder::new(self.file_schema.clone())
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_projection(self.projection.clone())
            .with_batch_size(rows + 1)
            .build_decoder();
        let mut off = 0;
        while off < data.len() {
            let n = decoder.decode(&data[off..]).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            off += n;
        }
        decoder.decode(&[]).map_err(|e| e.to_string())?;
        let batch = match decoder.flush().map_err(|e| e.to_string())? {
            Some(b) => b,
            None => RecordBatch::new_empty(self.schema.clone()),
        };
        if batch.num_rows() != rows {
            return Err(format!(
                "found {} CSV records where {rows} were expected",
                batch.num_rows()
            ));
        }
        RecordBatch::try_new(self.schema.clone(), batch.columns().to_vec())
            .map_err(|e| e.to_string())
    }

    fn diagnose(&self, record: &[u8], decode_error: &str) -> String {
        if let Err(e) = simdutf8::compat::from_utf8(record) {
            return format!("invalid UTF-8 at byte {} of the record", e.valid_up_to());
        }
        let fields = split_record(record, self.delimiter);
        let expected = self.file_schema.fields().len();
        if fields.len() != expected {
            return format!("expected {expected} fields, found {}", fields.len());
        }
        for (declared, &idx) in self.schema.fields().iter().zip(&self.projection) {
            let value = &fields[idx];
            if value.is_empty() {
                if !declared.is_nullable() {
                    return format!(
                        "column '{}' ({}, NOT NULL) is empty",
                        declared.name(),
                        declared.data_type()
                    );
                }
                continue;
            }
            let arr = StringArray::from(vec![value.as_str()]);
            let ok = cast_with_options(
                &arr,
                declared.data_type(),
                &CastOptions {
                    safe: false,
                    ..Default::default()
                },
            )
            .is_ok_and(|a| a.null_count() == 0);
            if !ok {
                let shown: String = value.chars().take(80).collect();
                return format!(
                    "column '{}': expected {}, found {shown:?}",
                    declared.name(),
                    declared.data_type()
                );
            }
        }
        format!("cannot decode record: {decode_error}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_handles_quotes() {
        assert_eq!(
            split_record(b"a,\"b,c\",\"d\"\"e\"\r", b','),
            vec!["a", "b,c", "d\"e"]
        );
        assert_eq!(split_record(b"", b','), vec![""]);
    }

    #[test]
    fn terminator_skips_quoted_newlines() {
        let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Utf8, true)]));
        let c = CsvCodec::new(schema, None, b',').unwrap();
        let buf = b"\"x\ny\"\nz\n";
        let mut st = ScanState::default();
        assert_eq!(c.find_terminator(buf, &mut st), Some(5));
        assert_eq!(st.newlines, 1);
    }
}
