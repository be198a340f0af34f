//! Bad records and the policy applied to them (`bad_data = 'fail' | 'drop' | 'dead_letter'`).

use std::str::FromStr;

use arrow::array::{
    ArrayRef, BinaryBuilder, StringBuilder, TimestampMicrosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use std::sync::{Arc, LazyLock};

/// What to do with a record that cannot be decoded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BadDataPolicy {
    /// Stop the job, naming the record's position and the reason.
    #[default]
    Fail,
    /// Skip the record and count it.
    Drop,
    /// Write the original bytes, reason and position to the dead letter.
    DeadLetter,
}

impl FromStr for BadDataPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fail" => Ok(Self::Fail),
            "drop" => Ok(Self::Drop),
            "dead_letter" | "dead-letter" => Ok(Self::DeadLetter),
            other => Err(format!(
                "unknown bad_data policy '{other}': expected 'fail', 'drop' or 'dead_letter'"
            )),
        }
    }
}

impl std::fmt::Display for BadDataPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fail => "fail",
            Self::Drop => "drop",
            Self::DeadLetter => "dead_letter",
        })
    }
}

/// A record a source could not decode, with everything needed to find and fix it.
#[derive(Clone, Debug)]
pub struct BadRecord {
    /// The record's original bytes, untouched (may be invalid UTF-8).
    pub raw: Vec<u8>,
    /// Why it was rejected.
    pub reason: String,
    /// The split it came from (file URL, `topic/partition`).
    pub split: String,
    /// Its position in the split (byte offset, Kafka offset).
    pub position: u64,
    /// Human-readable position, e.g. `data/docs.jsonl:17`.
    pub location: String,
}

/// Schema of dead-letter Parquet files.
pub fn dead_letter_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("source", DataType::Utf8, false),
            Field::new("split", DataType::Utf8, false),
            Field::new("position", DataType::UInt64, false),
            Field::new("location", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, false),
            Field::new("raw", DataType::Binary, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]))
    });
    SCHEMA.clone()
}

/// Convert bad records into one dead-letter batch.
pub fn dead_letter_batch(source: &str, records: &[BadRecord], now_micros: i64) -> RecordBatch {
    let mut src = StringBuilder::new();
    let mut split = StringBuilder::new();
    let mut pos = UInt64Builder::new();
    let mut loc = StringBuilder::new();
    let mut reason = StringBuilder::new();
    let mut raw = BinaryBuilder::new();
    let mut ts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for r in records {
        src.append_value(source);
        split.append_value(&r.split);
        pos.append_value(r.position);
        loc.append_value(&r.location);
        reason.append_value(&r.reason);
        raw.append_value(&r.raw);
        ts.append_value(now_micros);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(src.finish()),
        Arc::new(split.finish()),
        Arc::new(pos.finish()),
        Arc::new(loc.finish()),
        Arc::new(reason.finish()),
        Arc::new(raw.finish()),
        Arc::new(ts.finish()),
    ];
    RecordBatch::try_new(dead_letter_schema(), cols)
        .expect("dead letter columns match their schema")
}
