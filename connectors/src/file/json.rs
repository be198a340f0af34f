//! JSON Lines decoding: the [`TextCodec`] for `format = 'json'`.
//!
//! A whole chunk of lines goes through one `arrow_json` decoder call (the fast
//! path); only a chunk that fails is split by the caller until the bad lines are
//! isolated, and [`JsonCodec::diagnose`] then names what is wrong with a line.
//!
//! Semantics (those of `arrow_json`, with the declared columns as the schema):
//! fields not declared are ignored; a missing or `null` field is NULL, and a bad
//! record when its column is `NOT NULL`; integers are accepted for float columns
//! and RFC 3339 strings (`"2026-03-01T12:34:56Z"`) for timestamp columns; other
//! type mismatches (a string that is not a number for an INT column, a number
//! for a TEXT column, an object for a scalar...), malformed JSON, invalid UTF-8,
//! or a line holding anything but one JSON object are bad records.
//!
//! Known leniencies inherited from `arrow_json` (kept because checking them
//! would mean a second pass over every value): a numeric *string* (`"42"`) is
//! accepted for a numeric column, and a fractional number for an integer column
//! is truncated (`1.5` -> `1`).

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_json::ReaderBuilder;
use serde_json::Value;

use super::text::{ScanState, TextCodec};

/// Decodes JSON Lines into batches of a declared schema.
pub struct JsonCodec {
    schema: SchemaRef,
}

impl JsonCodec {
    /// A codec producing batches of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }
}

impl TextCodec for JsonCodec {
    fn find_terminator(&self, buf: &[u8], state: &mut ScanState) -> Option<usize> {
        match memchr::memchr(b'\n', &buf[state.pos..]) {
            Some(i) => Some(state.pos + i),
            None => {
                state.pos = buf.len();
                None
            }
        }
    }

    fn is_blank(&self, content: &[u8]) -> bool {
        match content.first() {
            None => true,
            Some(b'{') => false,
            Some(_) => content.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')),
        }
    }

    fn decode(&self, data: &[u8], rows: usize) -> Result<RecordBatch, String> {
        let mut decoder = ReaderBuilder::new(self.schema.clone())
            .with_batch_size(rows + 1)
            .build_decoder()
            .map_err(|e| e.to_string())?;
        decoder.decode(data).map_err(|e| e.to_string())?;
        if decoder.has_partial_record() {
            return Err("record truncated at the end of the line".into());
        }
        let batch = match decoder.flush().map_err(|e| e.to_string())? {
            Some(b) => b,
            None => RecordBatch::new_empty(self.schema.clone()),
        };
        if batch.num_rows() != rows {
            return Err(format!(
                "expected one JSON object per line: found {} values in {rows} lines",
                batch.num_rows()
            ));
        }
        Ok(batch)
    }

    fn diagnose(&self, record: &[u8], decode_error: &str) -> String {
        if let Err(e) = simdutf8::compat::from_utf8(record) {
            return format!("invalid UTF-8 at byte {} of the record", e.valid_up_to());
        }
        let value: Value = match serde_json::from_slice(record) {
            Ok(v) => v,
            Err(e) => return format!("malformed JSON: {e}"),
        };
        let Value::Object(obj) = value else {
            return format!("expected a JSON object, found {}", describe(&value));
        };
        for field in self.schema.fields() {
            if field.is_nullable() {
                continue;
            }
            match obj.get(field.name()) {
                None => {
                    return format!(
                        "column '{}' ({}, NOT NULL) is missing",
                        field.name(),
                        field.data_type()
                    )
                }
                Some(Value::Null) => {
                    return format!(
                        "column '{}' ({}, NOT NULL) is null",
                        field.name(),
                        field.data_type()
                    )
                }
                Some(_) => {}
            }
        }
        if let Some(name) = failing_field(decode_error) {
            if let (Some(field), Some(v)) = (
                self.schema.fields().iter().find(|f| f.name() == name),
                obj.get(name),
            ) {
                return format!(
                    "column '{name}': expected {}, found {}",
                    field.data_type(),
                    describe(v)
                );
            }
        }
        format!("cannot decode record: {decode_error}")
    }
}

/// The top-level field an `arrow_json` error names (`whilst decoding field 'x': ...`).
fn failing_field(error: &str) -> Option<&str> {
    let rest = &error[error.find("whilst decoding field '")? + "whilst decoding field '".len()..];
    Some(&rest[..rest.find('\'')?])
}

/// `string "abc"`, `number 1.5`, `object {...}`: a value's type and a short excerpt.
fn describe(v: &Value) -> String {
    let (kind, text) = match v {
        Value::Null => return "null".into(),
        Value::Bool(b) => ("boolean", b.to_string()),
        Value::Number(n) => ("number", n.to_string()),
        Value::String(_) => ("string", v.to_string()),
        Value::Array(_) => ("array", v.to_string()),
        Value::Object(_) => ("object", v.to_string()),
    };
    if text.len() > 80 {
        let mut cut = 77;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{kind} {}...", &text[..cut])
    } else {
        format!("{kind} {text}")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn codec() -> JsonCodec {
        JsonCodec::new(Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("year", DataType::Int64, true),
        ])))
    }

    #[test]
    fn reasons_name_the_column_and_the_value() {
        let c = codec();
        let line = br#"{"id": 1, "year": "abc"}"#;
        let err = c.decode(line, 1).unwrap_err();
        assert_eq!(
            c.diagnose(line, &err),
            "column 'year': expected Int64, found string \"abc\""
        );
        let line = br#"{"year": 2020}"#;
        let err = c.decode(line, 1).unwrap_err();
        assert_eq!(
            c.diagnose(line, &err),
            "column 'id' (Int64, NOT NULL) is missing"
        );
        let line = br#"{"id": 1"#;
        let err = c.decode(line, 1).unwrap_err();
        assert!(
            c.diagnose(line, &err).starts_with("malformed JSON"),
            "{}",
            c.diagnose(line, &err)
        );
        let line = br#"{"id": 1} {"id": 2}"#;
        let err = c.decode(line, 1).unwrap_err();
        assert!(c
            .diagnose(line, &err)
            .starts_with("malformed JSON: trailing characters"));
        let line = b"[1]";
        let err = c.decode(line, 1).unwrap_err();
        assert_eq!(
            c.diagnose(line, &err),
            "expected a JSON object, found array [1]"
        );
    }

    #[test]
    fn blank_lines() {
        let c = codec();
        assert!(c.is_blank(b""));
        assert!(c.is_blank(b" \t\r"));
        assert!(!c.is_blank(b" {}"));
    }
}
