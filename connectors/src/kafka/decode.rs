//! Turning one partition's messages into Arrow batches of the declared columns,
//! and bad records. Owns the column layout of a Kafka table: declared columns
//! named like a metadata column (`_topic`, `_partition`, `_offset`, `_key`,
//! `_timestamp`, `_headers`) are filled from the message; the others come from
//! the value (`format = 'json'`: the object's fields; `raw`/`text`: one `value`
//! column). JSON values are decoded a whole run at a time; a run that fails is
//! bisected until each bad message is isolated, so good messages around a bad
//! one survive. Knows nothing about consumers, offsets commits or policies.

use std::sync::Arc;

use arrow::array::{
    new_null_array, ArrayRef, BinaryBuilder, Int32Array, Int64Array, StringArray, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use strata_pipeline::BadRecord;

use super::options::KafkaFormat;
use crate::file::json::JsonCodec;
use crate::file::text::TextCodec;
use crate::{ConnectorError, Result};

/// Names of the metadata columns.
pub const METADATA_COLUMNS: &[&str] = &[
    "_topic",
    "_partition",
    "_offset",
    "_key",
    "_timestamp",
    "_headers",
];

/// One message's metadata (the value lives in [`PartBuf::values`]).
#[derive(Clone, Debug)]
pub struct MsgMeta {
    /// Offset in its partition.
    pub offset: i64,
    /// Span of the value in the buffer, `None` for a null value (tombstone).
    pub value: Option<(usize, usize)>,
    /// Full length of the value (it may be truncated in the buffer when oversize).
    pub value_len: usize,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// Create/append time, ms since 1970.
    pub timestamp: Option<i64>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The messages of one partition read in an epoch, values back to back with a
/// `\n` after each (so a run of JSON values decodes in one call).
#[derive(Debug, Default)]
pub struct PartBuf {
    /// Value bytes.
    pub values: Vec<u8>,
    /// Messages in offset order.
    pub msgs: Vec<MsgMeta>,
}

impl PartBuf {
    /// Append one message; a value over `max` bytes keeps only its first `max`.
    pub fn push(
        &mut self,
        offset: i64,
        value: Option<&[u8]>,
        key: Option<&[u8]>,
        timestamp: Option<i64>,
        headers: Vec<(String, Option<Vec<u8>>)>,
        max: usize,
    ) {
        let span = value.map(|v| {
            let keep = &v[..v.len().min(max)];
            let start = self.values.len();
            self.values.extend_from_slice(keep);
            let end = self.values.len();
            self.values.push(b'\n');
            (start, end)
        });
        self.msgs.push(MsgMeta {
            offset,
            value: span,
            value_len: value.map_or(0, |v| v.len()),
            key: key.map(|k| k.to_vec()),
            timestamp,
            headers,
        });
    }

    /// Bytes held (values, keys).
    pub fn bytes(&self) -> usize {
        self.values.len()
            + self
                .msgs
                .iter()
                .map(|m| m.key.as_ref().map_or(0, |k| k.len()))
                .sum::<usize>()
    }
}

/// Where a declared column's values come from.
#[derive(Clone, Debug)]
enum Col {
    Value(usize),
    Topic,
    Partition,
    Offset,
    Key,
    Timestamp,
    Headers,
}

/// The layout of a Kafka source table and its decoder.
pub struct Decoder {
    schema: SchemaRef,
    format: KafkaFormat,
    cols: Vec<Col>,
    value_schema: SchemaRef,
    json: Option<JsonCodec>,
    max_record_bytes: usize,
}

fn check_type(name: &str, got: &DataType, ok: bool, expected: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(ConnectorError::Schema(format!(
            "metadata column '{name}' is declared {got}; declare it {expected}"
        )))
    }
}

impl Decoder {
    /// Validate the declared columns (or the default `value` column of `raw`
    /// and `text`) against `format`.
    pub fn new(
        table: &str,
        declared: Option<SchemaRef>,
        format: KafkaFormat,
        max_record_bytes: u64,
    ) -> Result<Self> {
        let schema = match (declared, format) {
            (Some(s), _) => s,
            (None, KafkaFormat::Raw) => Arc::new(Schema::new(vec![Field::new("value", DataType::Binary, true)])),
            (None, KafkaFormat::Text) => Arc::new(Schema::new(vec![Field::new("value", DataType::Utf8, true)])),
            (None, KafkaFormat::Json) => {
                return Err(ConnectorError::Schema(format!(
                    "table '{table}': format 'json' needs declared columns: CREATE TABLE {table} (col TYPE, ..., _offset BIGINT) WITH (connector = 'kafka', ...)"
                )))
            }
        };
        let mut cols = Vec::new();
        let mut value_fields = Vec::new();
        for f in schema.fields() {
            let t = f.data_type();
            let col = match f.name().as_str() {
                "_topic" => {
                    check_type("_topic", t, *t == DataType::Utf8, "TEXT")?;
                    Col::Topic
                }
                "_partition" => {
                    check_type(
                        "_partition",
                        t,
                        matches!(t, DataType::Int32 | DataType::Int64),
                        "INT",
                    )?;
                    Col::Partition
                }
                "_offset" => {
                    check_type("_offset", t, *t == DataType::Int64, "BIGINT")?;
                    Col::Offset
                }
                "_key" => {
                    check_type(
                        "_key",
                        t,
                        matches!(t, DataType::Binary | DataType::Utf8),
                        "BYTEA or TEXT",
                    )?;
                    Col::Key
                }
                "_timestamp" => {
                    check_type(
                        "_timestamp",
                        t,
                        matches!(t, DataType::Timestamp(_, _) | DataType::Int64),
                        "TIMESTAMP, TIMESTAMPTZ or BIGINT (ms)",
                    )?;
                    Col::Timestamp
                }
                "_headers" => {
                    check_type(
                        "_headers",
                        t,
                        *t == DataType::Utf8,
                        "TEXT (a JSON object of header name to value)",
                    )?;
                    Col::Headers
                }
                _ => {
                    value_fields.push(f.clone());
                    Col::Value(value_fields.len() - 1)
                }
            };
            cols.push(col);
        }
        if METADATA_COLUMNS
            .iter()
            .any(|m| schema.fields().iter().filter(|f| f.name() == m).count() > 1)
        {
            return Err(ConnectorError::Schema(format!(
                "table '{table}': a metadata column is declared twice"
            )));
        }
        let value_schema = Arc::new(Schema::new(value_fields));
        match format {
            KafkaFormat::Raw | KafkaFormat::Text => {
                let want = if format == KafkaFormat::Raw {
                    DataType::Binary
                } else {
                    DataType::Utf8
                };
                let ok = value_schema.fields().len() == 1
                    && value_schema.field(0).name() == "value"
                    && *value_schema.field(0).data_type() == want;
                if !ok {
                    return Err(ConnectorError::Schema(format!(
                        "table '{table}': format '{format}' reads the message value into one column 'value {}' (plus any of the metadata columns {}); the declared columns are {:?}",
                        if format == KafkaFormat::Raw { "BYTEA" } else { "TEXT" },
                        METADATA_COLUMNS.join(", "),
                        value_schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>()
                    )));
                }
            }
            KafkaFormat::Json => {
                arrow_json::ReaderBuilder::new(value_schema.clone())
                    .build_decoder()
                    .map_err(|e| {
                        ConnectorError::Schema(format!(
                            "table '{table}': the declared columns cannot be read from JSON: {e}"
                        ))
                    })?;
            }
        }
        let json = (format == KafkaFormat::Json).then(|| JsonCodec::new(value_schema.clone()));
        Ok(Self {
            schema,
            format,
            cols,
            value_schema,
            json,
            max_record_bytes: max_record_bytes as usize,
        })
    }

    /// The table's schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Bytes of a value kept in memory at most.
    pub fn max_record_bytes(&self) -> usize {
        self.max_record_bytes
    }

    /// Whether `_key` is declared TEXT (keys must then be UTF-8).
    fn key_is_text(&self) -> bool {
        self.cols
            .iter()
            .zip(self.schema.fields())
            .any(|(c, f)| matches!(c, Col::Key) && *f.data_type() == DataType::Utf8)
    }

    /// Decode one partition's messages.
    pub fn decode(
        &self,
        topic: &str,
        partition: i32,
        buf: &PartBuf,
    ) -> Result<(Vec<RecordBatch>, Vec<BadRecord>), String> {
        let split = format!("{topic}/{partition}");
        let mut batches = Vec::new();
        let mut bad = Vec::new();
        let mut run: Vec<usize> = Vec::new();
        let key_text = self.key_is_text();
        let bad_rec = |m: &MsgMeta, reason: String| BadRecord {
            raw: m
                .value
                .map(|(s, e)| buf.values[s..e].to_vec())
                .unwrap_or_default(),
            reason,
            split: split.clone(),
            position: m.offset as u64,
            location: format!("topic '{topic}' partition {partition} offset {}", m.offset),
        };
        for (i, m) in buf.msgs.iter().enumerate() {
            let problem = if m.value_len > self.max_record_bytes {
                Some(format!(
                    "value of {} bytes is over max_record_bytes ({})",
                    m.value_len, self.max_record_bytes
                ))
            } else if m.value.is_none() && self.format != KafkaFormat::Raw {
                Some("null value (tombstone): nothing to decode".to_string())
            } else if self.format == KafkaFormat::Text {
                let (s, e) = m.value.expect("checked above");
                simdutf8::compat::from_utf8(&buf.values[s..e])
                    .err()
                    .map(|err| format!("invalid UTF-8 at byte {} of the value", err.valid_up_to()))
            } else {
                None
            };
            let problem = problem.or_else(|| match (&m.key, key_text) {
                (Some(k), true) => simdutf8::compat::from_utf8(k).err().map(|err| {
                    format!(
                        "_key is TEXT but the key is invalid UTF-8 at byte {}",
                        err.valid_up_to()
                    )
                }),
                _ => None,
            });
            match problem {
                Some(reason) => {
                    self.flush_run(
                        topic,
                        partition,
                        buf,
                        &mut run,
                        &mut batches,
                        &mut bad,
                        &bad_rec,
                    )?;
                    bad.push(bad_rec(m, reason));
                }
                None => run.push(i),
            }
        }
        self.flush_run(
            topic,
            partition,
            buf,
            &mut run,
            &mut batches,
            &mut bad,
            &bad_rec,
        )?;
        Ok((batches, bad))
    }

    #[allow(clippy::too_many_arguments)]
    fn flush_run(
        &self,
        topic: &str,
        partition: i32,
        buf: &PartBuf,
        run: &mut Vec<usize>,
        batches: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadRecord>,
        bad_rec: &dyn Fn(&MsgMeta, String) -> BadRecord,
    ) -> Result<(), String> {
        if run.is_empty() {
            return Ok(());
        }
        let idx = std::mem::take(run);
        match &self.json {
            None => batches.push(self.assemble(topic, partition, buf, &idx, None)?),
            Some(codec) => {
                self.decode_json(codec, topic, partition, buf, &idx, batches, bad, bad_rec)?
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_json(
        &self,
        codec: &JsonCodec,
        topic: &str,
        partition: i32,
        buf: &PartBuf,
        idx: &[usize],
        batches: &mut Vec<RecordBatch>,
        bad: &mut Vec<BadRecord>,
        bad_rec: &dyn Fn(&MsgMeta, String) -> BadRecord,
    ) -> Result<(), String> {
        // Messages of a run are contiguous in the buffer only when no message
        // between them was set aside; runs are built that way (a bad message
        // ends a run), so the run's bytes are one slice.
        let first = buf.msgs[idx[0]].value.expect("json runs hold values").0;
        let last = buf.msgs[idx[idx.len() - 1]]
            .value
            .expect("json runs hold values")
            .1;
        let data = &buf.values[first..last + 1];
        match codec.decode(data, idx.len()) {
            Ok(values) => batches.push(self.assemble(topic, partition, buf, idx, Some(values))?),
            Err(e) if idx.len() == 1 => {
                let m = &buf.msgs[idx[0]];
                let (s, end) = m.value.expect("json runs hold values");
                bad.push(bad_rec(m, codec.diagnose(&buf.values[s..end], &e)));
            }
            Err(_) => {
                let mid = idx.len() / 2;
                self.decode_json(
                    codec,
                    topic,
                    partition,
                    buf,
                    &idx[..mid],
                    batches,
                    bad,
                    bad_rec,
                )?;
                self.decode_json(
                    codec,
                    topic,
                    partition,
                    buf,
                    &idx[mid..],
                    batches,
                    bad,
                    bad_rec,
                )?;
            }
        }
        Ok(())
    }

    /// Build the table's batch for messages `idx`, with decoded JSON `values`.
    fn assemble(
        &self,
        topic: &str,
        partition: i32,
        buf: &PartBuf,
        idx: &[usize],
        values: Option<RecordBatch>,
    ) -> Result<RecordBatch, String> {
        let n = idx.len();
        let msgs = || idx.iter().map(|&i| &buf.msgs[i]);
        let mut out: Vec<ArrayRef> = Vec::with_capacity(self.cols.len());
        for (col, field) in self.cols.iter().zip(self.schema.fields()) {
            let arr: ArrayRef = match col {
                Col::Value(i) => match &values {
                    Some(v) => v.column(*i).clone(),
                    None => {
                        let mut b = BinaryBuilder::with_capacity(n, buf.values.len());
                        for m in msgs() {
                            match m.value {
                                Some((s, e)) => b.append_value(&buf.values[s..e]),
                                None => b.append_null(),
                            }
                        }
                        let a: ArrayRef = Arc::new(b.finish());
                        if self.format == KafkaFormat::Text {
                            // Checked to be UTF-8 before.
                            cast(&a, &DataType::Utf8).map_err(|e| e.to_string())?
                        } else {
                            a
                        }
                    }
                },
                Col::Topic => Arc::new(StringArray::from(vec![topic; n])),
                Col::Partition => {
                    let a: ArrayRef = Arc::new(Int32Array::from(vec![partition; n]));
                    cast(&a, field.data_type()).map_err(|e| e.to_string())?
                }
                Col::Offset => Arc::new(Int64Array::from_iter_values(msgs().map(|m| m.offset))),
                Col::Key => {
                    let mut b = BinaryBuilder::new();
                    for m in msgs() {
                        match &m.key {
                            Some(k) => b.append_value(k),
                            None => b.append_null(),
                        }
                    }
                    let a: ArrayRef = Arc::new(b.finish());
                    cast(&a, field.data_type()).map_err(|e| e.to_string())?
                }
                Col::Timestamp => {
                    let mut b = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
                    for m in msgs() {
                        b.append_option(m.timestamp);
                    }
                    let a: ArrayRef = Arc::new(b.finish());
                    match field.data_type() {
                        DataType::Int64 => {
                            cast(&a, &DataType::Timestamp(TimeUnit::Millisecond, None))
                                .and_then(|a| cast(&a, &DataType::Int64))
                                .map_err(|e| e.to_string())?
                        }
                        t => cast(&a, t).map_err(|e| e.to_string())?,
                    }
                }
                Col::Headers => {
                    let mut b = StringBuilder::new();
                    for m in msgs() {
                        if m.headers.is_empty() {
                            b.append_null();
                            continue;
                        }
                        let obj: serde_json::Map<String, serde_json::Value> = m
                            .headers
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v.as_ref().map_or(serde_json::Value::Null, |v| {
                                        serde_json::Value::String(
                                            String::from_utf8_lossy(v).into_owned(),
                                        )
                                    }),
                                )
                            })
                            .collect();
                        b.append_value(serde_json::Value::Object(obj).to_string());
                    }
                    Arc::new(b.finish())
                }
            };
            let arr = if arr.len() == n {
                arr
            } else {
                new_null_array(field.data_type(), n)
            };
            out.push(arr);
        }
        let _ = &self.value_schema;
        RecordBatch::try_new(self.schema.clone(), out).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("_offset", DataType::Int64, true),
            Field::new("_key", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn bad_messages_are_isolated() {
        let d = Decoder::new("t", Some(schema()), KafkaFormat::Json, 64).unwrap();
        let mut buf = PartBuf::default();
        buf.push(10, Some(br#"{"id": 1}"#), Some(b"a"), Some(5), vec![], 64);
        buf.push(11, Some(br#"{"id": "x"}"#), None, None, vec![], 64);
        buf.push(12, None, None, None, vec![], 64);
        buf.push(13, Some(br#"{"id": 3}"#), None, None, vec![], 64);
        buf.push(14, Some(&[b'{'; 100]), None, None, vec![], 64);
        buf.push(15, Some(br#"{"id": 5}"#), Some(&[0xff]), None, vec![], 64);
        let (batches, bad) = d.decode("top", 2, &buf).unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2);
        let offs: Vec<u64> = bad.iter().map(|b| b.position).collect();
        assert_eq!(offs, vec![11, 12, 14, 15]);
        assert!(bad[0].reason.contains("column 'id'"), "{}", bad[0].reason);
        assert!(bad[1].reason.contains("tombstone"));
        assert!(bad[2].reason.contains("max_record_bytes"));
        assert!(bad[3].reason.contains("UTF-8"));
        assert_eq!(bad[0].location, "topic 'top' partition 2 offset 11");
    }

    #[test]
    fn raw_needs_a_value_column() {
        assert!(Decoder::new("t", None, KafkaFormat::Raw, 64).is_ok());
        let e = Decoder::new("t", Some(schema()), KafkaFormat::Raw, 64)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("'value BYTEA'"), "{e}");
        let bad = Arc::new(Schema::new(vec![Field::new(
            "_offset",
            DataType::Utf8,
            true,
        )]));
        let e = Decoder::new("t", Some(bad), KafkaFormat::Json, 64)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("declare it BIGINT"), "{e}");
    }
}
