//! Options of `connector = 'parquet'`: parsed from `WITH (...)`, every one
//! documented where it is declared, unknown keys rejected, then validated
//! against the sink's input schema into a [`SinkConfig`].
//!
//! This module owns option names, defaults and value syntax; it does no I/O
//! beyond resolving the storage URL.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::datatypes::{DataType, SchemaRef};
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};

use crate::options::OptionReader;
use crate::{ConnectorError, Result};

/// Default `'rollover.rows'`.
pub const DEFAULT_ROLLOVER_ROWS: u64 = 1_000_000;
/// Default `'rollover.bytes'` (512 MiB).
pub const DEFAULT_ROLLOVER_BYTES: u64 = 512 << 20;
/// Default `'parquet.row_group_size'` (rows), as DuckDB and DataFusion use.
pub const DEFAULT_ROW_GROUP_SIZE: usize = 122_880;
/// Default ZSTD level.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The parquet sink's options, as written in `WITH (...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParquetSinkOptions {
    /// `path` (required): where the table lives. A local path, `file://`,
    /// `s3://bucket/prefix` or `memory://name/prefix`.
    pub path: String,
    /// `partition_by`: comma-separated input columns that become Hive
    /// `column=value/` folders (in the order given). They are left out of the
    /// files. Default: none.
    pub partition_by: Vec<String>,
    /// `compression`: `zstd` (default, level 3), `zstd(N)` (1..=22), `snappy`,
    /// `gzip` / `gzip(N)`, `lz4` (LZ4_RAW), `brotli` / `brotli(N)`,
    /// `none` / `uncompressed`.
    pub compression: Compression,
    /// `'rollover.rows'`: a file holding this many rows is closed and the next
    /// one started (within the epoch). Default 1,000,000.
    pub rollover_rows: u64,
    /// `'rollover.bytes'`: a file whose estimated size (written plus buffered)
    /// reaches this is closed (`64MB`, `1GB`, ...). Default 512MB.
    pub rollover_bytes: u64,
    /// `'rollover.interval'`: a file open longer than this (`30s`, `5min`) is
    /// closed on its next write. Files never span epochs regardless. Default: none.
    pub rollover_interval: Option<Duration>,
    /// `'parquet.row_group_size'`: rows per row group. Default 122,880.
    pub row_group_size: usize,
    /// `'storage.*'`: object store settings (`'storage.endpoint'`,
    /// `'storage.region'`, ...), see `strata_pipeline::storage`.
    pub storage: BTreeMap<String, String>,
}

impl ParquetSinkOptions {
    /// Options for `path` with every default.
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            partition_by: Vec::new(),
            compression: Compression::ZSTD(zstd_level(DEFAULT_ZSTD_LEVEL)),
            rollover_rows: DEFAULT_ROLLOVER_ROWS,
            rollover_bytes: DEFAULT_ROLLOVER_BYTES,
            rollover_interval: None,
            row_group_size: DEFAULT_ROW_GROUP_SIZE,
            storage: BTreeMap::new(),
        }
    }

    /// Take every option of the connector from `reader` and reject the rest.
    pub fn from_reader(mut reader: OptionReader) -> Result<Self> {
        let path = reader.require(
            "path",
            "the table's location: a local path, file://, s3://bucket/prefix or memory:// URL",
        )?;
        if path.trim().is_empty() {
            return Err(ConnectorError::InvalidOption {
                option: "path".into(),
                value: path,
                message: "expected a local path, file://, s3://bucket/prefix or memory:// URL"
                    .into(),
            });
        }
        let mut opts = Self::new(path.trim());
        if let Some(v) = reader.take("partition_by") {
            opts.partition_by = parse_partition_by(&v)?;
        }
        if let Some(v) = reader.take("compression") {
            opts.compression = parse_compression(&v)?;
        }
        if let Some(rows) =
            reader.take_parsed::<u64>("rollover.rows", "a positive number of rows")?
        {
            if rows == 0 {
                return Err(invalid("rollover.rows", "0", "must be at least 1"));
            }
            opts.rollover_rows = rows;
        }
        if let Some(bytes) = reader.take_bytes("rollover.bytes")? {
            if bytes == 0 {
                return Err(invalid("rollover.bytes", "0", "must be at least 1 byte"));
            }
            opts.rollover_bytes = bytes;
        }
        if let Some(d) = reader.take_duration("rollover.interval")? {
            if d.is_zero() {
                return Err(invalid(
                    "rollover.interval",
                    "0",
                    "must be longer than zero",
                ));
            }
            opts.rollover_interval = Some(d);
        }
        if let Some(n) =
            reader.take_parsed::<usize>("parquet.row_group_size", "a positive number of rows")?
        {
            if n == 0 {
                return Err(invalid("parquet.row_group_size", "0", "must be at least 1"));
            }
            opts.row_group_size = n;
        }
        opts.storage = reader.take_storage();
        reader.finish()?;
        Ok(opts)
    }

    /// Check the options against the sink's input schema.
    pub fn validate(self, schema: &SchemaRef) -> Result<SinkConfig> {
        let mut partition_indices = Vec::with_capacity(self.partition_by.len());
        for col in &self.partition_by {
            let Some(idx) = schema.fields().iter().position(|f| f.name() == col) else {
                let known: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(ConnectorError::Schema(format!(
                    "partition_by column '{col}' is not a column of the sink's input; its columns are: {}",
                    known.join(", ")
                )));
            };
            let dt = schema.field(idx).data_type();
            if !is_partitionable(dt) {
                return Err(ConnectorError::Schema(format!(
                    "partition_by column '{col}' has type {dt}, which cannot name a folder; partition by a string, integer, boolean, decimal, date or timestamp column"
                )));
            }
            if partition_indices.contains(&idx) {
                return Err(ConnectorError::Schema(format!(
                    "partition_by names column '{col}' twice"
                )));
            }
            partition_indices.push(idx);
        }
        if !partition_indices.is_empty() && partition_indices.len() == schema.fields().len() {
            return Err(ConnectorError::Schema(
                "partition_by names every column of the sink's input; at least one column must remain in the files".into(),
            ));
        }
        let file_indices: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !partition_indices.contains(i))
            .collect();
        let file_schema = std::sync::Arc::new(
            schema
                .project(&file_indices)
                .map_err(|e| ConnectorError::Pipeline(e.into()))?,
        );
        Ok(SinkConfig {
            options: self,
            input_schema: schema.clone(),
            file_schema,
            partition_indices,
            file_indices,
        })
    }
}

/// Options checked against the input schema: what the sink runs with.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// The options.
    pub options: ParquetSinkOptions,
    /// Schema of the rows the sink receives.
    pub input_schema: SchemaRef,
    /// Schema of the files: the input minus the partition columns.
    pub file_schema: SchemaRef,
    /// Indices of the partition columns in the input, in `partition_by` order.
    pub partition_indices: Vec<usize>,
    /// Indices of the file columns in the input.
    pub file_indices: Vec<usize>,
}

fn invalid(option: &str, value: &str, message: &str) -> ConnectorError {
    ConnectorError::InvalidOption {
        option: option.into(),
        value: value.into(),
        message: message.into(),
    }
}

fn parse_partition_by(v: &str) -> Result<Vec<String>> {
    let cols: Vec<String> = v
        .split(',')
        .map(|c| c.trim().trim_matches('"').trim_matches('`').to_string())
        .collect();
    if cols.iter().any(|c| c.is_empty()) {
        return Err(invalid(
            "partition_by",
            v,
            "expected comma-separated column names, e.g. 'tenant, dt'",
        ));
    }
    Ok(cols)
}

fn zstd_level(level: i32) -> ZstdLevel {
    ZstdLevel::try_new(level).unwrap_or_default()
}

/// Parse a `compression` value: a codec name, optionally with a level in
/// parentheses (`zstd(9)`, `gzip(6)`, `brotli(4)`); case-insensitive.
pub fn parse_compression(value: &str) -> Result<Compression> {
    let expected = "expected zstd, zstd(1..22), snappy, gzip, gzip(0..9), lz4, brotli, brotli(0..11), none or uncompressed";
    let v = value.trim().to_ascii_lowercase();
    let (name, level) = match v.split_once('(') {
        Some((name, rest)) => {
            let Some(num) = rest.strip_suffix(')') else {
                return Err(invalid("compression", value, expected));
            };
            let level: i32 = num
                .trim()
                .parse()
                .map_err(|_| invalid("compression", value, expected))?;
            (name.trim().to_string(), Some(level))
        }
        None => (v.clone(), None),
    };
    let bad_level = |e: parquet::errors::ParquetError| {
        invalid("compression", value, &format!("{e}; {expected}"))
    };
    let no_level = |c: Compression| match level {
        None => Ok(c),
        Some(_) => Err(invalid(
            "compression",
            value,
            &format!("'{name}' takes no level; {expected}"),
        )),
    };
    match name.as_str() {
        "zstd" => Ok(Compression::ZSTD(
            ZstdLevel::try_new(level.unwrap_or(DEFAULT_ZSTD_LEVEL)).map_err(bad_level)?,
        )),
        "gzip" => Ok(Compression::GZIP(match level {
            Some(l) => {
                GzipLevel::try_new(u32::try_from(l).unwrap_or(u32::MAX)).map_err(bad_level)?
            }
            None => GzipLevel::default(),
        })),
        "brotli" => Ok(Compression::BROTLI(match level {
            Some(l) => {
                BrotliLevel::try_new(u32::try_from(l).unwrap_or(u32::MAX)).map_err(bad_level)?
            }
            None => BrotliLevel::default(),
        })),
        "snappy" => no_level(Compression::SNAPPY),
        "lz4" | "lz4_raw" => no_level(Compression::LZ4_RAW),
        "none" | "uncompressed" => no_level(Compression::UNCOMPRESSED),
        _ => Err(invalid("compression", value, expected)),
    }
}

fn is_partitionable(dt: &DataType) -> bool {
    use DataType::*;
    match dt {
        Boolean
        | Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Utf8
        | LargeUtf8
        | Utf8View
        | Date32
        | Date64
        | Timestamp(_, _)
        | Decimal32(_, _)
        | Decimal64(_, _)
        | Decimal128(_, _)
        | Decimal256(_, _) => true,
        Dictionary(_, v) => is_partitionable(v),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TableOptions;
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn parse(pairs: &[(&str, &str)]) -> Result<ParquetSinkOptions> {
        let opts =
            TableOptions::from_pairs(pairs.iter().copied().chain([("connector", "parquet")]));
        ParquetSinkOptions::from_reader(opts.reader("parquet"))
    }

    #[test]
    fn defaults() {
        let o = parse(&[("path", "/tmp/x")]).unwrap();
        assert_eq!(
            o.compression,
            Compression::ZSTD(ZstdLevel::try_new(3).unwrap())
        );
        assert_eq!(o.rollover_rows, 1_000_000);
        assert_eq!(o.rollover_bytes, 512 << 20);
        assert_eq!(o.row_group_size, 122_880);
        assert!(o.partition_by.is_empty());
        assert!(o.rollover_interval.is_none());
    }

    #[test]
    fn all_options() {
        let o = parse(&[
            ("path", "s3://b/p"),
            ("partition_by", " tenant , dt"),
            ("compression", "ZSTD(9)"),
            ("rollover.rows", "10"),
            ("rollover.bytes", "64MB"),
            ("rollover.interval", "5min"),
            ("parquet.row_group_size", "1000"),
            ("storage.region", "eu-west-1"),
        ])
        .unwrap();
        assert_eq!(o.partition_by, vec!["tenant", "dt"]);
        assert_eq!(
            o.compression,
            Compression::ZSTD(ZstdLevel::try_new(9).unwrap())
        );
        assert_eq!(o.rollover_rows, 10);
        assert_eq!(o.rollover_bytes, 64 << 20);
        assert_eq!(o.rollover_interval, Some(Duration::from_secs(300)));
        assert_eq!(o.row_group_size, 1000);
        assert_eq!(
            o.storage.get("storage.region").map(String::as_str),
            Some("eu-west-1")
        );
    }

    #[test]
    fn compression_names() {
        assert_eq!(parse_compression("snappy").unwrap(), Compression::SNAPPY);
        assert_eq!(
            parse_compression("none").unwrap(),
            Compression::UNCOMPRESSED
        );
        assert_eq!(
            parse_compression("uncompressed").unwrap(),
            Compression::UNCOMPRESSED
        );
        assert_eq!(parse_compression("lz4").unwrap(), Compression::LZ4_RAW);
        assert!(matches!(
            parse_compression("gzip").unwrap(),
            Compression::GZIP(_)
        ));
        assert!(matches!(
            parse_compression("brotli(4)").unwrap(),
            Compression::BROTLI(_)
        ));
        for bad in ["zip", "zstd(99)", "zstd(x)", "snappy(3)", "zstd(3"] {
            let e = parse_compression(bad).unwrap_err().to_string();
            assert!(e.contains("compression"), "{bad}: {e}");
        }
    }

    #[test]
    fn option_errors() {
        let e = parse(&[("path", "/x"), ("rollover.rowz", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown option 'rollover.rowz'") && e.contains("rollover.rows"),
            "{e}"
        );
        let e = parse(&[("compression", "zstd")]).unwrap_err();
        assert!(
            matches!(e, ConnectorError::MissingOption { ref option, .. } if option == "path"),
            "{e}"
        );
        let e = parse(&[("path", "/x"), ("compression", "lzma")]).unwrap_err();
        assert!(
            matches!(e, ConnectorError::InvalidOption { ref option, .. } if option == "compression"),
            "{e}"
        );
        assert!(parse(&[("path", "/x"), ("rollover.rows", "0")]).is_err());
        assert!(parse(&[("path", "/x"), ("rollover.bytes", "lots")]).is_err());
        assert!(parse(&[("path", "/x"), ("rollover.interval", "soon")]).is_err());
        assert!(parse(&[("path", "/x"), ("parquet.row_group_size", "-1")]).is_err());
        assert!(parse(&[("path", "/x"), ("partition_by", "a,,b")]).is_err());
    }

    #[test]
    fn unknown_partition_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let o = parse(&[("path", "/x"), ("partition_by", "tenant, day")]).unwrap();
        let e = o.validate(&schema).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ConnectorError::Schema(_)), "{msg}");
        assert!(msg.contains("'day'") && msg.contains("tenant, v"), "{msg}");
        let c = parse(&[("path", "/x"), ("partition_by", "tenant")])
            .unwrap()
            .validate(&schema)
            .unwrap();
        assert_eq!(c.partition_indices, vec![0]);
        assert_eq!(c.file_schema.fields().len(), 1);
        assert_eq!(c.file_schema.field(0).name(), "v");
        let all = parse(&[("path", "/x"), ("partition_by", "tenant,v")])
            .unwrap()
            .validate(&schema);
        assert!(all.is_err());
    }
}
