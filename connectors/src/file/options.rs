//! Options of `connector = 'file'`: every option is documented where it is
//! declared, parsed from the table's `WITH (...)` with an [`OptionReader`] and
//! validated into a [`FileOptions`]. Unknown options are rejected by
//! [`OptionReader::finish`]. This module does no I/O.

use std::collections::BTreeMap;
use std::str::FromStr;

use strata_pipeline::BadDataPolicy;

use crate::options::OptionReader;
use crate::{ConnectorError, Result, TableOptions};

/// Default `max_record_bytes`: 8 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 8 << 20;

/// The encoding of the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// JSON Lines: one JSON object per line.
    Json,
    /// Comma (or `csv.delimiter`) separated values, RFC 4180 quoting.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl FileFormat {
    /// The format a file name's extension implies, if any
    /// (`.jsonl`, `.ndjson`, `.json`, `.csv`, `.parquet`, `.pq`).
    pub fn from_extension(name: &str) -> Option<Self> {
        let file = name.rsplit('/').next().unwrap_or(name);
        let ext = file.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "jsonl" | "ndjson" | "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "parquet" | "pq" => Some(Self::Parquet),
            _ => None,
        }
    }
}

impl FromStr for FileFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" | "jsonl" | "ndjson" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            "parquet" => Ok(Self::Parquet),
            other => Err(format!("unknown format '{other}'")),
        }
    }
}

impl std::fmt::Display for FileFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        })
    }
}

/// Validated options of a `file` source.
#[derive(Clone, Debug)]
pub struct FileOptions {
    /// `path` (required): a local path, `file://` URL, `s3://bucket/prefix` or
    /// `memory://name/prefix`; either one file, a directory/prefix (every file
    /// under it, recursively, sorted; names starting with `.` or `_` are
    /// skipped), or a glob such as `data/*.jsonl` or `s3://b/logs/**/*.csv`
    /// (`*` stays within one folder, `**` crosses folders).
    pub path: String,
    /// `format`: `json` (JSON Lines), `csv` or `parquet`. Default: inferred from
    /// the extension of `path` or, for a directory, of the files listed
    /// (`.jsonl`/`.ndjson`/`.json`, `.csv`, `.parquet`/`.pq`); `None` here means
    /// "infer after listing".
    pub format: Option<FileFormat>,
    /// `bad_data`: `fail` (default), `drop` or `dead_letter`.
    pub bad_data: BadDataPolicy,
    /// `dead_letter`: object-store URL or path of the dead-letter Parquet table.
    /// Required when `bad_data = 'dead_letter'`, rejected otherwise.
    pub dead_letter: Option<String>,
    /// `max_record_bytes`: a JSON/CSV record longer than this (terminator
    /// excluded) is a bad record. Default 8 MiB. Byte sizes like `64KB`, `16MB`.
    pub max_record_bytes: u64,
    /// `csv.delimiter`: one ASCII character, default `,` (`\t` is accepted for tab).
    pub csv_delimiter: u8,
    /// `csv.has_header`: whether each CSV file starts with a header row (default
    /// true). With a header, columns are matched to the declared ones by name
    /// (case-insensitive) and extra CSV columns are ignored; without one, by position.
    pub csv_has_header: bool,
    /// `'storage.*'`: object-store settings for `path` (and the dead letter),
    /// passed to [`strata_pipeline::storage::resolve`].
    pub storage: BTreeMap<String, String>,
}

impl FileOptions {
    /// Read and validate every option of `options`; unknown ones are errors.
    pub fn parse(options: &TableOptions) -> Result<Self> {
        let mut r: OptionReader = options.reader("file");
        let path = r.require(
            "path",
            "set path to a file, directory, glob (data/*.jsonl) or URL (s3://bucket/prefix/)",
        )?;
        if path.trim().is_empty() {
            return Err(invalid("path", &path, "the path is empty"));
        }
        let format = r.take_parsed::<FileFormat>("format", "'json', 'csv' or 'parquet'")?;
        let bad_data = r
            .take_parsed::<BadDataPolicy>("bad_data", "'fail', 'drop' or 'dead_letter'")?
            .unwrap_or_default();
        let dead_letter = r.take("dead_letter");
        let max_record_bytes = r
            .take_bytes("max_record_bytes")?
            .unwrap_or(DEFAULT_MAX_RECORD_BYTES);
        let delimiter = r.take("csv.delimiter");
        let csv_has_header = r.take_bool("csv.has_header")?.unwrap_or(true);
        let storage = r.take_storage();
        r.finish()?;

        match (bad_data, &dead_letter) {
            (BadDataPolicy::DeadLetter, None) => {
                return Err(ConnectorError::MissingOption {
                    connector: "file".into(),
                    option: "dead_letter".into(),
                    hint: "bad_data = 'dead_letter' needs a dead_letter path or URL (e.g. 's3://bucket/dlq/')".into(),
                })
            }
            (BadDataPolicy::DeadLetter, Some(d)) if d.trim().is_empty() => {
                return Err(invalid("dead_letter", d, "the path is empty"))
            }
            (policy, Some(d)) if policy != BadDataPolicy::DeadLetter => {
                return Err(invalid(
                    "dead_letter",
                    d,
                    &format!("dead_letter only applies with bad_data = 'dead_letter' (bad_data is '{policy}')"),
                ))
            }
            _ => {}
        }
        if max_record_bytes == 0 {
            return Err(invalid("max_record_bytes", "0", "must be at least 1 byte"));
        }
        let csv_delimiter = match delimiter {
            None => b',',
            Some(d) => parse_delimiter(&d).ok_or_else(|| {
                invalid(
                    "csv.delimiter",
                    &d,
                    "expected one ASCII character such as ',', ';', '|' or '\\t'",
                )
            })?,
        };
        Ok(Self {
            path,
            format,
            bad_data,
            dead_letter,
            max_record_bytes,
            csv_delimiter,
            csv_has_header,
            storage,
        })
    }
}

fn parse_delimiter(d: &str) -> Option<u8> {
    match d {
        "\\t" | "\t" | "tab" => Some(b'\t'),
        s if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
            Some(s.as_bytes()[0])
        }
        _ => None,
    }
}

fn invalid(option: &str, value: &str, message: &str) -> ConnectorError {
    ConnectorError::InvalidOption {
        option: option.into(),
        value: value.into(),
        message: message.into(),
    }
}
