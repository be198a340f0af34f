//! Athena DDL for a job's outputs (`strata athena-ddl`): one
//! `CREATE EXTERNAL TABLE ... STORED AS PARQUET` per Parquet sink and for the
//! usage table (`SET usage.path`), with partition projection so that Athena
//! finds new partitions without `MSCK REPAIR TABLE` or `ALTER TABLE ADD PARTITION`.
//!
//! Input is the planner's [`Explain`]: each sink's options (parsed again with the
//! parquet connector's own [`ParquetSinkOptions`], so `path`, `partition_by`
//! and `compression` mean exactly what the sink does) and its Arrow schema.
//! This module is pure: it reads no files and talks to no service.
//!
//! What it emits, and why:
//! - Columns: the sink's input columns minus the partition columns, which the
//!   sink writes only into the folder names (`col=value/`), never into the files;
//!   they appear once, in `PARTITIONED BY`, in `partition_by` order.
//! - Types: Arrow to Hive/Athena ([`hive_type`]); `FixedSizeList<Float32, D>`
//!   (embeddings) is `array<float>`, `Decimal128(p, s)` is `decimal(p,s)`, every
//!   timestamp is `timestamp`. Types Athena cannot read from the files the sink
//!   writes (unsigned 64-bit, half floats, times, durations, intervals, `Date64`,
//!   unions) are an error naming the table and column, with the cast to use.
//! - Names: the table is the sink's name, the usage table is `usage`; both are
//!   qualified with `--database` (default `default`, the database every Glue Data
//!   Catalog has). Identifiers are lower-cased, as Athena stores them, and put in
//!   backticks when they are DDL reserved words or not plain `[a-z][a-z0-9_]*`.
//! - `LOCATION`: the sink's path with a trailing `/`. Athena reads Amazon S3
//!   only: any other location (local path, `file://`, `memory://`) is still
//!   printed, under a `-- WARNING` comment saying what to change, so the DDL of
//!   a job developed locally can be reviewed before it points at S3.
//! - Projection, per partition column ([`Projection`]): a `date` column, or a
//!   string column named `dt`, is a `date` projection (`yyyy-MM-dd`, one day
//!   apart, range `NOW-3YEARS,NOW` unless [`AthenaOptions::date_range`] says
//!   otherwise); a column named `hour` is an `integer` projection over `0,23`
//!   (two digits when it is a string, as the usage table writes `07`); a column
//!   listed in [`AthenaOptions::enums`] is an `enum` projection over those values;
//!   any other column is `injected`. Trade-off: `injected` needs no list kept up
//!   to date but every query must pin that column with `=` (or `IN`), otherwise
//!   Athena rejects the query; `enum` lets queries scan every value but the list
//!   must name them all (a value missing from it is silently not read).
//!   Timestamp partition columns are an error: their folder names escape `:` as
//!   `%3A`, which no projection produces.
//! - `TBLPROPERTIES`: `parquet.compression` (and `compression_level` for ZSTD) as
//!   the sink writes, so `INSERT INTO` from Athena writes alike (omitted for
//!   LZ4, which Athena reads but cannot write, and for Brotli, with a warning);
//!   `projection.*` and `storage.location.template` (`LOCATION` + `col=${col}/...`)
//!   for partitioned tables.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use arrow::datatypes::{DataType, Field, Fields};
use datafusion::parquet::basic::Compression;
use strata_connectors::parquet::partition::escape;
use strata_connectors::parquet::ParquetSinkOptions;
use strata_connectors::{ConnectorError, TableOptions};

use crate::planner::{Explain, TableInfo};

/// The database table names are qualified with when `--database` is not given.
pub const DEFAULT_DATABASE: &str = "default";
/// Default `projection.<col>.range` of date partition columns.
pub const DEFAULT_DATE_RANGE: &str = "NOW-3YEARS,NOW";

/// Errors of DDL generation: each names the table (and column) and says what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AthenaError {
    /// A column whose Arrow type Athena cannot read from the sink's files.
    #[error(
        "table '{table}', column '{column}': type {data_type} has no Athena equivalent: {fix}"
    )]
    UnsupportedType {
        /// Sink name.
        table: String,
        /// Column path (`col` or `col.field`).
        column: String,
        /// The Arrow type.
        data_type: String,
        /// What to change in the job.
        fix: String,
    },
    /// A name Athena cannot use.
    #[error("{what} '{name}': {message}")]
    InvalidName {
        /// `database`, `table`, `column`.
        what: &'static str,
        /// The name as given.
        name: String,
        /// Why, and what to do.
        message: String,
    },
    /// A partition column that no partition projection can describe.
    #[error("table '{table}', partition column '{column}': {message}")]
    Partition {
        /// Sink name.
        table: String,
        /// Column.
        column: String,
        /// Why, and what to do.
        message: String,
    },
    /// A sink's options, re-read with the parquet connector, are invalid.
    #[error("table '{table}': {source}")]
    SinkOptions {
        /// Sink name.
        table: String,
        /// The connector's error.
        #[source]
        source: ConnectorError,
    },
    /// A DDL option (`--database`, `--date-range`, `--enum`) cannot be used.
    #[error("{option} '{value}': {message}")]
    InvalidOption {
        /// The option as the user wrote it.
        option: &'static str,
        /// Its value.
        value: String,
        /// Why, and what to do.
        message: String,
    },
    /// The job writes nothing Athena could read.
    #[error("job '{job}' has no parquet sink and no usage.path: there is no table for Athena to read{skipped}")]
    NoTables {
        /// Job name.
        job: String,
        /// `; skipped: ...` listing the sinks of other connectors.
        skipped: String,
    },
}

/// Result alias for this module.
pub type Result<T, E = AthenaError> = std::result::Result<T, E>;

/// An `enum` projection asked for one partition column (`--enum TABLE.COLUMN=V1,V2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnumProjection {
    /// Sink name (`usage` for the usage table).
    pub table: String,
    /// Partition column.
    pub column: String,
    /// Every value the column takes, as written in the folder names.
    pub values: Vec<String>,
}

impl std::str::FromStr for EnumProjection {
    type Err = AthenaError;

    /// Parse `TABLE.COLUMN=V1,V2,...`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |message: &str| AthenaError::InvalidOption {
            option: "--enum",
            value: s.to_string(),
            message: format!(
                "{message}; expected TABLE.COLUMN=VALUE1,VALUE2,... e.g. chunks.tenant=acme,globex"
            ),
        };
        let (target, values) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (table, column) = target
            .trim()
            .split_once('.')
            .ok_or_else(|| bad("no '.' between table and column"))?;
        let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
        if table.trim().is_empty() || column.trim().is_empty() {
            return Err(bad("empty table or column name"));
        }
        if values.iter().any(String::is_empty) {
            return Err(bad("empty value in the list"));
        }
        Ok(Self {
            table: table.trim().to_string(),
            column: column.trim().to_string(),
            values,
        })
    }
}

/// What to generate beyond what the job says.
#[derive(Clone, Debug, Default)]
pub struct AthenaOptions {
    /// Database the tables are created in; `None`: [`DEFAULT_DATABASE`].
    pub database: Option<String>,
    /// `projection.<col>.range` of date partition columns; `None`: [`DEFAULT_DATE_RANGE`].
    pub date_range: Option<String>,
    /// Partition columns projected as `enum` instead of `injected`.
    pub enums: Vec<EnumProjection>,
}

/// How Athena projects one partition column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Projection {
    /// `date`: values `yyyy-MM-dd`, one day apart, within `range`.
    Date {
        /// `projection.<col>.range`.
        range: String,
    },
    /// `integer` over `min..=max`, zero-padded to `digits` when set.
    Integer {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
        /// `projection.<col>.digits`.
        digits: Option<u32>,
    },
    /// `enum` over these values.
    Enum(Vec<String>),
    /// `injected`: the value comes from the query's predicate.
    Injected,
}

/// One partition column of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionColumn {
    /// The column name as the sink writes it into folder names.
    pub name: String,
    /// Its Hive type.
    pub hive_type: String,
    /// Its projection.
    pub projection: Projection,
}

/// The DDL of one table, before printing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableDdl {
    /// Database.
    pub database: String,
    /// Table name (lower case).
    pub name: String,
    /// `(name, hive type)` of the columns in the files, in order.
    pub columns: Vec<(String, String)>,
    /// Partition columns in folder order.
    pub partitions: Vec<PartitionColumn>,
    /// `LOCATION`, ending with `/`.
    pub location: String,
    /// `TBLPROPERTIES` in order.
    pub properties: Vec<(String, String)>,
    /// `-- ` comment lines printed above the statement.
    pub notes: Vec<String>,
}

/// The DDL for every Parquet sink of `explain` (the usage table included), as
/// one script: statements separated by blank lines, each ending with `;`.
pub fn job_ddl(explain: &Explain, opts: &AthenaOptions) -> Result<String> {
    let database = match &opts.database {
        Some(db) => checked_name("database", db)?,
        None => DEFAULT_DATABASE.to_string(),
    };
    let date_range = match &opts.date_range {
        Some(r) => checked_date_range(r)?,
        None => DEFAULT_DATE_RANGE.to_string(),
    };
    let mut tables = Vec::new();
    let mut skipped = Vec::new();
    for sink in &explain.sinks {
        if sink.connector == "parquet" {
            tables.push(sink);
        } else {
            skipped.push(format!("'{}' ({})", sink.name, sink.connector));
        }
    }
    if tables.is_empty() {
        return Err(AthenaError::NoTables {
            job: explain.job.clone(),
            skipped: if skipped.is_empty() {
                String::new()
            } else {
                format!("; skipped: {}", skipped.join(", "))
            },
        });
    }
    for e in &opts.enums {
        if !tables.iter().any(|t| t.name.eq_ignore_ascii_case(&e.table)) {
            let known: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
            return Err(AthenaError::InvalidOption {
                option: "--enum",
                value: format!("{}.{}", e.table, e.column),
                message: format!(
                    "no parquet sink named '{}'; the job's parquet tables are: {}",
                    e.table,
                    known.join(", ")
                ),
            });
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "-- Athena tables of strata job '{}' (strata athena-ddl). Run each statement on its own.",
        explain.job
    );
    let _ = writeln!(
        out,
        "-- Partition projection finds new partitions: no MSCK REPAIR TABLE needed."
    );
    if !skipped.is_empty() {
        let _ = writeln!(
            out,
            "-- Not described (Athena reads only the parquet sinks): {}.",
            skipped.join(", ")
        );
    }
    let mut names = BTreeSet::new();
    for t in tables {
        let ddl = table_ddl(t, &database, &date_range, &opts.enums)?;
        if !names.insert(ddl.name.clone()) {
            return Err(AthenaError::InvalidName {
                what: "table",
                name: t.name.clone(),
                message: "two sinks have this name once lower-cased, as Athena stores names: rename one in the job".into(),
            });
        }
        out.push('\n');
        out.push_str(&render(&ddl));
    }
    Ok(out)
}

/// The DDL of one parquet sink.
pub fn table_ddl(
    table: &TableInfo,
    database: &str,
    date_range: &str,
    enums: &[EnumProjection],
) -> Result<TableDdl> {
    let options = TableOptions::from_pairs(
        table
            .options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(std::iter::once(("connector", "parquet"))),
    );
    let sink = ParquetSinkOptions::from_reader(options.reader("parquet")).map_err(|source| {
        AthenaError::SinkOptions {
            table: table.name.clone(),
            source,
        }
    })?;
    let name = checked_name("table", &table.name)?;
    let mut notes = Vec::new();

    let mut columns = Vec::new();
    let mut seen = BTreeMap::new();
    for field in table.schema.fields() {
        if let Some(prev) = seen.insert(field.name().to_ascii_lowercase(), field.name().clone()) {
            return Err(AthenaError::InvalidName {
                what: "column",
                name: field.name().clone(),
                message: format!(
                    "table '{}' also has column '{prev}'; Athena does not tell names apart by case: alias one in the INSERT",
                    table.name
                ),
            });
        }
        if sink.partition_by.iter().any(|p| p == field.name()) {
            continue;
        }
        columns.push((
            field.name().clone(),
            column_type(&table.name, field.name(), field.data_type())?,
        ));
    }

    let mut partitions = Vec::new();
    for col in &sink.partition_by {
        let Some(field) = table.schema.fields().iter().find(|f| f.name() == col) else {
            return Err(AthenaError::Partition {
                table: table.name.clone(),
                column: col.clone(),
                message: "not a column of the sink's input".into(),
            });
        };
        let hive = column_type(&table.name, col, field.data_type())?;
        let asked = enums.iter().find(|e| {
            e.table.eq_ignore_ascii_case(&table.name) && e.column.eq_ignore_ascii_case(col)
        });
        let projection = projection(&table.name, field, date_range, asked)?;
        partitions.push(PartitionColumn {
            name: col.clone(),
            hive_type: hive,
            projection,
        });
    }
    for e in enums {
        if e.table.eq_ignore_ascii_case(&table.name)
            && !sink
                .partition_by
                .iter()
                .any(|p| p.eq_ignore_ascii_case(&e.column))
        {
            return Err(AthenaError::InvalidOption {
                option: "--enum",
                value: format!("{}.{}", e.table, e.column),
                message: format!(
                    "'{}' is not a partition column of '{}'; its partition columns are: {}",
                    e.column,
                    table.name,
                    if sink.partition_by.is_empty() {
                        "(none)".to_string()
                    } else {
                        sink.partition_by.join(", ")
                    }
                ),
            });
        }
    }

    let location = if sink.path.ends_with('/') {
        sink.path.clone()
    } else {
        format!("{}/", sink.path)
    };
    if location.contains('\'') || location.contains('\\') {
        return Err(AthenaError::InvalidOption {
            option: "path",
            value: sink.path.clone(),
            message: format!(
                "table '{}': a location with a quote or backslash cannot be written as an Athena string literal; choose another path",
                table.name
            ),
        });
    }
    if !location.starts_with("s3://") {
        notes.push(format!(
            "WARNING: LOCATION '{location}' is not an s3:// URL, and Athena reads tables from Amazon S3 only. Copy the folder to S3 as it is (keeping its col=value/ folders) and replace the location in LOCATION and storage.location.template, or set the sink's path to s3://... ."
        ));
    }

    let mut properties = Vec::new();
    match sink.compression {
        Compression::ZSTD(level) => {
            properties.push(("parquet.compression".into(), "ZSTD".into()));
            properties.push((
                "compression_level".into(),
                level.compression_level().to_string(),
            ));
        }
        Compression::SNAPPY => properties.push(("parquet.compression".into(), "SNAPPY".into())),
        Compression::GZIP(_) => properties.push(("parquet.compression".into(), "GZIP".into())),
        Compression::UNCOMPRESSED => {
            properties.push(("parquet.compression".into(), "UNCOMPRESSED".into()))
        }
        Compression::LZ4 | Compression::LZ4_RAW => notes.push(
            "The files are LZ4-compressed: Athena reads them, but cannot write LZ4, so no parquet.compression is set (INSERT INTO from Athena writes its default, GZIP).".into(),
        ),
        Compression::BROTLI(_) => notes.push(
            "WARNING: the files are Brotli-compressed, which Athena does not list among the Parquet codecs it reads; set compression = 'zstd' on the sink.".into(),
        ),
        Compression::LZO => notes.push(
            "The files are LZO-compressed: Athena reads them but cannot write LZO, so no parquet.compression is set.".into(),
        ),
    }
    if !partitions.is_empty() {
        properties.push(("projection.enabled".into(), "true".into()));
        let mut template = location.clone();
        for p in &partitions {
            let key = p.name.to_ascii_lowercase();
            let prop = |suffix: &str| format!("projection.{key}.{suffix}");
            match &p.projection {
                Projection::Date { range } => {
                    properties.push((prop("type"), "date".into()));
                    properties.push((prop("format"), "yyyy-MM-dd".into()));
                    properties.push((prop("range"), range.clone()));
                    properties.push((prop("interval"), "1".into()));
                    properties.push((prop("interval.unit"), "DAYS".into()));
                }
                Projection::Integer { min, max, digits } => {
                    properties.push((prop("type"), "integer".into()));
                    properties.push((prop("range"), format!("{min},{max}")));
                    if let Some(d) = digits {
                        properties.push((prop("digits"), d.to_string()));
                    }
                }
                Projection::Enum(values) => {
                    properties.push((prop("type"), "enum".into()));
                    properties.push((prop("values"), values.join(",")));
                }
                Projection::Injected => {
                    properties.push((prop("type"), "injected".into()));
                    notes.push(format!(
                        "Partition column {key} is projected as 'injected': every query must filter it with = or IN (e.g. WHERE {key} = '...'). To scan all its values, list them: strata athena-ddl --enum {}.{key}=V1,V2,...",
                        table.name
                    ));
                }
            }
            // Folder names keep the column's case and Hive escaping; the placeholder
            // is the column as Athena names it (lower case).
            let _ = write!(template, "{}=${{{key}}}/", escape(&p.name));
        }
        properties.push(("storage.location.template".into(), template));
    }
    Ok(TableDdl {
        database: database.to_string(),
        name,
        columns,
        partitions,
        location,
        properties,
        notes,
    })
}

/// Print one table's statement (notes as `--` lines above it).
pub fn render(t: &TableDdl) -> String {
    let mut out = String::new();
    for n in &t.notes {
        let _ = writeln!(out, "-- {n}");
    }
    let _ = writeln!(
        out,
        "CREATE EXTERNAL TABLE {}.{} (",
        ident(&t.database),
        ident(&t.name)
    );
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|(n, ty)| format!("  {} {ty}", ident(n)))
        .collect();
    let _ = writeln!(out, "{}", cols.join(",\n"));
    let _ = writeln!(out, ")");
    if !t.partitions.is_empty() {
        let parts: Vec<String> = t
            .partitions
            .iter()
            .map(|p| format!("{} {}", ident(&p.name), p.hive_type))
            .collect();
        let _ = writeln!(out, "PARTITIONED BY ({})", parts.join(", "));
    }
    let _ = writeln!(out, "STORED AS PARQUET");
    let _ = write!(out, "LOCATION '{}'", t.location);
    if !t.properties.is_empty() {
        let props: Vec<String> = t
            .properties
            .iter()
            .map(|(k, v)| format!("  '{k}' = '{v}'"))
            .collect();
        let _ = write!(out, "\nTBLPROPERTIES (\n{}\n)", props.join(",\n"));
    }
    out.push_str(";\n");
    out
}

/// The projection of partition column `field` (see the module docs for the rules).
fn projection(
    table: &str,
    field: &Field,
    date_range: &str,
    asked: Option<&EnumProjection>,
) -> Result<Projection> {
    let err = |message: String| AthenaError::Partition {
        table: table.to_string(),
        column: field.name().clone(),
        message,
    };
    let dt = match field.data_type() {
        DataType::Dictionary(_, v) => v.as_ref(),
        other => other,
    };
    if let DataType::Timestamp(_, _) = dt {
        return Err(err(
            "timestamp partition values are written with ':' escaped as %3A, which partition projection cannot produce; partition by a day or hour string instead, e.g. date_format(ts, '%Y-%m-%d') AS dt".into(),
        ));
    }
    let is_string = matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    let is_int = dt.is_integer();
    if let Some(e) = asked {
        if !(is_string || is_int) {
            return Err(err(format!(
                "--enum needs a string or integer column, this one is {dt}"
            )));
        }
        if let Some(bad) = e
            .values
            .iter()
            .find(|v| v.contains('\'') || v.contains('\\'))
        {
            return Err(AthenaError::InvalidOption {
                option: "--enum",
                value: bad.clone(),
                message: "a value with a quote or backslash cannot be written in TBLPROPERTIES"
                    .into(),
            });
        }
        return Ok(Projection::Enum(e.values.clone()));
    }
    let name = field.name().to_ascii_lowercase();
    if matches!(dt, DataType::Date32) || (is_string && name == "dt") {
        return Ok(Projection::Date {
            range: date_range.to_string(),
        });
    }
    if name == "hour" && (is_string || is_int) {
        return Ok(Projection::Integer {
            min: 0,
            max: 23,
            digits: is_string.then_some(2),
        });
    }
    Ok(Projection::Injected)
}

/// The Hive type of column `column` of `table`, or an error naming both.
fn column_type(table: &str, column: &str, dt: &DataType) -> Result<String> {
    hive_type(dt).map_err(|(path, data_type, fix)| AthenaError::UnsupportedType {
        table: table.to_string(),
        column: if path.is_empty() {
            column.to_string()
        } else {
            format!("{column}.{path}")
        },
        data_type,
        fix,
    })
}

/// The Hive/Athena type of an Arrow type as the parquet sink writes it.
/// On error: `(path of the nested field, "" at the top; the offending type; what to do)`.
pub fn hive_type(dt: &DataType) -> Result<String, (String, String, String)> {
    use DataType::*;
    let unsupported = |fix: &str| Err((String::new(), dt.to_string(), fix.to_string()));
    Ok(match dt {
        Boolean => "boolean".into(),
        Int8 => "tinyint".into(),
        Int16 => "smallint".into(),
        Int32 => "int".into(),
        Int64 => "bigint".into(),
        // Unsigned integers are read into the next wider signed type.
        UInt8 => "smallint".into(),
        UInt16 => "int".into(),
        UInt32 => "bigint".into(),
        UInt64 => {
            return unsupported(
                "Athena has no unsigned 64-bit integer; CAST it to BIGINT (values below 2^63) or DECIMAL(20, 0) in the INSERT",
            )
        }
        Float16 => return unsupported("Athena cannot read half floats; CAST it to REAL in the INSERT"),
        Float32 => "float".into(),
        Float64 => "double".into(),
        Decimal32(p, s) | Decimal64(p, s) => decimal(*p, *s, dt)?,
        Decimal128(p, s) | Decimal256(p, s) => decimal(*p, *s, dt)?,
        Utf8 | LargeUtf8 | Utf8View => "string".into(),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => "binary".into(),
        Date32 => "date".into(),
        Date64 => {
            return unsupported(
                "the sink writes Date64 as plain 64-bit integers (milliseconds), not as dates; CAST it to DATE in the INSERT",
            )
        }
        Timestamp(_, _) => "timestamp".into(),
        Time32(_) | Time64(_) => {
            return unsupported("Athena tables have no time-of-day type; CAST it to VARCHAR in the INSERT")
        }
        Duration(_) | Interval(_) => {
            return unsupported(
                "Athena cannot read durations or intervals from Parquet; convert it to a number (e.g. seconds as BIGINT) in the INSERT",
            )
        }
        Null => {
            return unsupported(
                "the column is always NULL and has no type (an untyped NULL literal); CAST it to the type it should have, e.g. CAST(NULL AS VARCHAR)",
            )
        }
        List(f) | LargeList(f) | FixedSizeList(f, _) | ListView(f) | LargeListView(f) => {
            format!("array<{}>", nested(f.name(), f.data_type())?)
        }
        Map(entries, _) => match entries.data_type() {
            Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                nested(kv[0].name(), kv[0].data_type())?,
                nested(kv[1].name(), kv[1].data_type())?
            ),
            other => {
                return Err((
                    String::new(),
                    other.to_string(),
                    "a map's entries must be a struct of key and value".into(),
                ))
            }
        },
        Struct(fields) => struct_type(fields)?,
        Dictionary(_, v) => hive_type(v)?,
        RunEndEncoded(_, v) => hive_type(v.data_type())?,
        Union(_, _) => {
            return unsupported(
                "Athena has no union type; split it into one column per variant in the INSERT",
            )
        }
    })
}

/// A nested type; errors get the field's name prefixed to their path.
fn nested(name: &str, dt: &DataType) -> Result<String, (String, String, String)> {
    hive_type(dt).map_err(|(path, t, fix)| {
        let path = if path.is_empty() {
            name.to_string()
        } else {
            format!("{name}.{path}")
        };
        (path, t, fix)
    })
}

fn struct_type(fields: &Fields) -> Result<String, (String, String, String)> {
    if fields.is_empty() {
        return Err((
            String::new(),
            "Struct()".into(),
            "Athena has no empty struct; drop the column".into(),
        ));
    }
    let parts = fields
        .iter()
        .map(|f| {
            Ok(format!(
                "{}:{}",
                ident(f.name()),
                nested(f.name(), f.data_type())?
            ))
        })
        .collect::<Result<Vec<_>, (String, String, String)>>()?;
    Ok(format!("struct<{}>", parts.join(",")))
}

fn decimal(p: u8, s: i8, dt: &DataType) -> Result<String, (String, String, String)> {
    if p > 38 {
        return Err((
            String::new(),
            dt.to_string(),
            "Athena decimals hold at most 38 digits; CAST it to DECIMAL(38, s) in the INSERT"
                .into(),
        ));
    }
    if s < 0 {
        return Err((
            String::new(),
            dt.to_string(),
            "Athena decimals cannot have a negative scale; CAST it to DECIMAL(p, 0) in the INSERT"
                .into(),
        ));
    }
    Ok(format!("decimal({p},{s})"))
}

/// Athena's DDL reserved words (which must be in backticks as identifiers).
const RESERVED: &[&str] = &[
    "all",
    "alter",
    "and",
    "array",
    "as",
    "authorization",
    "between",
    "bigint",
    "binary",
    "boolean",
    "both",
    "by",
    "case",
    "cashe",
    "cast",
    "char",
    "column",
    "conf",
    "constraint",
    "commit",
    "create",
    "cross",
    "cube",
    "current",
    "current_date",
    "current_timestamp",
    "cursor",
    "database",
    "date",
    "dayofweek",
    "decimal",
    "delete",
    "describe",
    "distinct",
    "div",
    "double",
    "drop",
    "else",
    "end",
    "exchange",
    "exists",
    "extended",
    "external",
    "extract",
    "false",
    "fetch",
    "float",
    "floor",
    "following",
    "for",
    "foreign",
    "from",
    "full",
    "function",
    "grant",
    "group",
    "grouping",
    "having",
    "if",
    "import",
    "in",
    "inner",
    "insert",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "join",
    "lateral",
    "left",
    "less",
    "like",
    "local",
    "macro",
    "map",
    "more",
    "none",
    "not",
    "null",
    "numeric",
    "of",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "over",
    "partialscan",
    "partition",
    "percent",
    "preceding",
    "precision",
    "preserve",
    "primary",
    "procedure",
    "range",
    "reads",
    "reduce",
    "regexp",
    "references",
    "revoke",
    "right",
    "rlike",
    "rollback",
    "rollup",
    "row",
    "rows",
    "select",
    "set",
    "smallint",
    "start",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "transform",
    "trigger",
    "true",
    "truncate",
    "unbounded",
    "union",
    "uniquejoin",
    "update",
    "user",
    "using",
    "utc_tmestamp",
    "values",
    "varchar",
    "views",
    "when",
    "where",
    "window",
    "with",
];

/// An identifier for Athena DDL: lower case, in backticks when reserved or not
/// plain `[a-z][a-z0-9_]*` (a backtick inside is doubled).
pub fn ident(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let plain = lower.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && lower
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain && !RESERVED.contains(&lower.as_str()) {
        lower
    } else {
        format!("`{}`", lower.replace('`', "``"))
    }
}

/// A database or table name Athena accepts: letters, digits and `_`, lower-cased.
fn checked_name(what: &'static str, name: &str) -> Result<String> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.is_empty()
        || !lower
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        let fix = if what == "database" {
            "use letters, digits and '_' only (e.g. --database analytics)"
        } else {
            "Athena table names hold letters, digits and '_' only: rename the table in the job"
        };
        return Err(AthenaError::InvalidName {
            what,
            name: name.to_string(),
            message: fix.into(),
        });
    }
    Ok(lower)
}

/// `--date-range`: two comma-separated bounds, each a `yyyy-MM-dd` date or a
/// `NOW[+-]N<UNIT>` expression, as Athena's date projection takes them.
fn checked_date_range(range: &str) -> Result<String> {
    let bad = |message: &str| {
        AthenaError::InvalidOption {
        option: "--date-range",
        value: range.to_string(),
        message: format!(
            "{message}; expected two bounds separated by a comma, each a date (2024-01-01) or NOW with an optional offset (NOW-3YEARS), e.g. NOW-1YEARS,NOW"
        ),
    }
    };
    let parts: Vec<&str> = range.split(',').map(str::trim).collect();
    if parts.len() != 2 {
        return Err(bad("not two bounds"));
    }
    let now =
        regex::Regex::new(r"^NOW([+-][0-9]+(YEARS|MONTHS|WEEKS|DAYS|HOURS|MINUTES|SECONDS))?$")
            .expect("valid regex");
    let date = regex::Regex::new(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$").expect("valid regex");
    for p in &parts {
        let upper = p.to_ascii_uppercase();
        if !(now.is_match(&upper) || date.is_match(p)) {
            return Err(bad(&format!(
                "bound '{p}' is neither a yyyy-MM-dd date nor NOW[+-]N<UNIT>"
            )));
        }
    }
    Ok(format!("{},{}", parts[0], parts[1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Schema, TimeUnit};
    use std::sync::Arc;

    fn sink(name: &str, options: &[(&str, &str)], fields: Vec<Field>) -> TableInfo {
        TableInfo {
            name: name.into(),
            connector: "parquet".into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            schema: Arc::new(Schema::new(fields)),
        }
    }

    fn explain(sinks: Vec<TableInfo>) -> Explain {
        Explain {
            job: "rag".into(),
            checkpoint: "./.strata/rag/".into(),
            sources: vec![],
            sinks,
            models: vec![],
            functions: vec![],
            plans: vec![],
        }
    }

    fn chunks() -> TableInfo {
        sink(
            "chunks",
            &[
                ("connector", "parquet"),
                ("path", "s3://bucket/vectors"),
                ("partition_by", "tenant, dt"),
            ],
            vec![
                Field::new("doc_id", DataType::Utf8, false),
                Field::new("tenant", DataType::Utf8, true),
                Field::new("chunk_index", DataType::Int32, true),
                Field::new(
                    "vector",
                    DataType::FixedSizeList(
                        Arc::new(Field::new("item", DataType::Float32, true)),
                        384,
                    ),
                    true,
                ),
                Field::new("dt", DataType::Utf8, true),
            ],
        )
    }

    fn prop<'a>(t: &'a TableDdl, k: &str) -> Option<&'a str> {
        t.properties
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn arrow_to_hive_types() {
        let item = |dt| Arc::new(Field::new("item", dt, true));
        let cases: Vec<(DataType, &str)> = vec![
            (DataType::Utf8, "string"),
            (DataType::LargeUtf8, "string"),
            (DataType::Int64, "bigint"),
            (DataType::Int32, "int"),
            (DataType::Int16, "smallint"),
            (DataType::Int8, "tinyint"),
            (DataType::UInt32, "bigint"),
            (DataType::Boolean, "boolean"),
            (DataType::Float32, "float"),
            (DataType::Float64, "double"),
            (DataType::Decimal128(38, 10), "decimal(38,10)"),
            (DataType::Decimal64(12, 2), "decimal(12,2)"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "timestamp",
            ),
            (DataType::Timestamp(TimeUnit::Nanosecond, None), "timestamp"),
            (DataType::Date32, "date"),
            (DataType::Binary, "binary"),
            (DataType::FixedSizeBinary(16), "binary"),
            (
                DataType::FixedSizeList(item(DataType::Float32), 384),
                "array<float>",
            ),
            (DataType::List(item(DataType::Utf8)), "array<string>"),
            (
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                "string",
            ),
            (
                DataType::Struct(Fields::from(vec![
                    Field::new("chunk_index", DataType::Int32, true),
                    Field::new("date", DataType::Utf8, true),
                ])),
                "struct<chunk_index:int,`date`:string>",
            ),
            (
                DataType::Map(
                    Arc::new(Field::new(
                        "entries",
                        DataType::Struct(Fields::from(vec![
                            Field::new("key", DataType::Utf8, false),
                            Field::new("value", DataType::Int64, true),
                        ])),
                        false,
                    )),
                    false,
                ),
                "map<string,bigint>",
            ),
        ];
        for (dt, want) in cases {
            assert_eq!(hive_type(&dt).unwrap(), want, "{dt}");
        }
    }

    #[test]
    fn unsupported_types_name_the_column() {
        let t = sink(
            "out",
            &[("connector", "parquet"), ("path", "s3://b/out")],
            vec![
                Field::new("id", DataType::Int64, false),
                Field::new(
                    "spans",
                    DataType::List(Arc::new(Field::new(
                        "item",
                        DataType::Struct(Fields::from(vec![Field::new(
                            "at",
                            DataType::Time64(TimeUnit::Microsecond),
                            true,
                        )])),
                        true,
                    ))),
                    true,
                ),
            ],
        );
        let e = job_ddl(&explain(vec![t]), &AthenaOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("table 'out', column 'spans.item.at'") && e.contains("CAST it to VARCHAR"),
            "{e}"
        );
        for (dt, fix) in [
            (DataType::UInt64, "DECIMAL(20, 0)"),
            (DataType::Date64, "CAST it to DATE"),
            (DataType::Decimal256(60, 2), "38 digits"),
            (DataType::Null, "CAST(NULL AS VARCHAR)"),
            (DataType::Float16, "REAL"),
        ] {
            let (_, _, got) = hive_type(&dt).unwrap_err();
            assert!(got.contains(fix), "{dt}: {got}");
        }
    }

    #[test]
    fn partitions_are_not_repeated_and_projected() {
        let t = table_ddl(&chunks(), "default", DEFAULT_DATE_RANGE, &[]).unwrap();
        let names: Vec<&str> = t.columns.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["doc_id", "chunk_index", "vector"]);
        assert_eq!(t.columns[2].1, "array<float>");
        let parts: Vec<(&str, &Projection)> = t
            .partitions
            .iter()
            .map(|p| (p.name.as_str(), &p.projection))
            .collect();
        assert_eq!(
            parts,
            [
                ("tenant", &Projection::Injected),
                (
                    "dt",
                    &Projection::Date {
                        range: "NOW-3YEARS,NOW".into()
                    }
                )
            ]
        );
        assert_eq!(t.location, "s3://bucket/vectors/");
        assert_eq!(prop(&t, "projection.enabled"), Some("true"));
        assert_eq!(prop(&t, "projection.tenant.type"), Some("injected"));
        assert_eq!(prop(&t, "projection.dt.type"), Some("date"));
        assert_eq!(prop(&t, "projection.dt.format"), Some("yyyy-MM-dd"));
        assert_eq!(prop(&t, "projection.dt.interval.unit"), Some("DAYS"));
        assert_eq!(
            prop(&t, "storage.location.template"),
            Some("s3://bucket/vectors/tenant=${tenant}/dt=${dt}/")
        );
        assert_eq!(prop(&t, "parquet.compression"), Some("ZSTD"));
        assert_eq!(prop(&t, "compression_level"), Some("3"));
        assert!(
            t.notes.iter().any(|n| n.contains("injected")),
            "{:?}",
            t.notes
        );
        assert!(
            !t.notes.iter().any(|n| n.contains("WARNING")),
            "{:?}",
            t.notes
        );
    }

    #[test]
    fn usage_table_hour_is_a_two_digit_integer() {
        let usage = sink(
            "usage",
            &[("path", "/data/usage"), ("partition_by", "dt, hour")],
            strata_operators::models::usage::UsageLog::schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect(),
        );
        let t = table_ddl(&usage, "default", "NOW-1YEARS,NOW", &[]).unwrap();
        assert!(t.columns.iter().all(|(n, _)| n != "dt" && n != "hour"));
        let ty = |c: &str| t.columns.iter().find(|(n, _)| n == c).unwrap().1.as_str();
        assert_eq!(ty("cost_usd"), "decimal(38,10)");
        assert_eq!(ty("ts"), "timestamp");
        assert_eq!(ty("input_tokens"), "bigint");
        assert_eq!(prop(&t, "projection.hour.type"), Some("integer"));
        assert_eq!(prop(&t, "projection.hour.range"), Some("0,23"));
        assert_eq!(prop(&t, "projection.hour.digits"), Some("2"));
        assert_eq!(prop(&t, "projection.dt.range"), Some("NOW-1YEARS,NOW"));
        assert_eq!(
            prop(&t, "storage.location.template"),
            Some("/data/usage/dt=${dt}/hour=${hour}/")
        );
        // A local path is printed, under a warning.
        assert!(
            t.notes
                .iter()
                .any(|n| n.starts_with("WARNING: LOCATION '/data/usage/'")),
            "{:?}",
            t.notes
        );
        let text = render(&t);
        assert!(
            text.contains("PARTITIONED BY (dt string, hour string)"),
            "{text}"
        );
        assert!(text.starts_with("-- WARNING"), "{text}");
    }

    #[test]
    fn enum_projection_and_options() {
        let e: EnumProjection = "chunks.tenant=acme, globex".parse().unwrap();
        assert_eq!(e.values, ["acme", "globex"]);
        let opts = AthenaOptions {
            database: Some("Analytics".into()),
            date_range: Some("2024-01-01, NOW".into()),
            enums: vec![e],
        };
        let text = job_ddl(&explain(vec![chunks()]), &opts).unwrap();
        assert!(
            text.contains("CREATE EXTERNAL TABLE analytics.chunks ("),
            "{text}"
        );
        assert!(text.contains("'projection.tenant.type' = 'enum'"), "{text}");
        assert!(
            text.contains("'projection.tenant.values' = 'acme,globex'"),
            "{text}"
        );
        assert!(
            text.contains("'projection.dt.range' = '2024-01-01,NOW'"),
            "{text}"
        );
        assert!(!text.contains("injected"), "{text}");

        for bad in ["chunks.tenant", "tenant=a", "chunks.tenant=a,,b"] {
            assert!(bad.parse::<EnumProjection>().is_err(), "{bad}");
        }
        let wrong_col = AthenaOptions {
            enums: vec!["chunks.doc_id=a".parse().unwrap()],
            ..Default::default()
        };
        let e = job_ddl(&explain(vec![chunks()]), &wrong_col)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a partition column of 'chunks'") && e.contains("tenant, dt"),
            "{e}"
        );
        let wrong_table = AthenaOptions {
            enums: vec!["docs.tenant=a".parse().unwrap()],
            ..Default::default()
        };
        let e = job_ddl(&explain(vec![chunks()]), &wrong_table)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no parquet sink named 'docs'"), "{e}");
        for range in ["NOW", "NOW-3YEARS,later", "a,b,c"] {
            let o = AthenaOptions {
                date_range: Some(range.into()),
                ..Default::default()
            };
            assert!(job_ddl(&explain(vec![chunks()]), &o).is_err(), "{range}");
        }
        let o = AthenaOptions {
            database: Some("my-db".into()),
            ..Default::default()
        };
        let e = job_ddl(&explain(vec![chunks()]), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("database 'my-db'"), "{e}");
    }

    #[test]
    fn identifiers_and_compression() {
        assert_eq!(ident("doc_id"), "doc_id");
        assert_eq!(ident("Date"), "`date`");
        assert_eq!(ident("_x"), "`_x`");
        assert_eq!(ident("1st"), "`1st`");
        assert_eq!(ident("a`b"), "`a``b`");
        let plain = |compression: &str| {
            sink(
                "t",
                &[("path", "s3://b/t/"), ("compression", compression)],
                vec![Field::new("v", DataType::Int64, true)],
            )
        };
        let t = table_ddl(&plain("snappy"), "default", DEFAULT_DATE_RANGE, &[]).unwrap();
        assert_eq!(t.location, "s3://b/t/");
        assert_eq!(
            t.properties,
            [("parquet.compression".to_string(), "SNAPPY".to_string())]
        );
        let text = render(&t);
        assert!(
            !text.contains("PARTITIONED BY") && !text.contains("projection"),
            "{text}"
        );
        let t = table_ddl(&plain("zstd(9)"), "default", DEFAULT_DATE_RANGE, &[]).unwrap();
        assert_eq!(prop(&t, "compression_level"), Some("9"));
        let t = table_ddl(&plain("lz4"), "default", DEFAULT_DATE_RANGE, &[]).unwrap();
        assert!(
            t.properties.is_empty() && t.notes[0].contains("LZ4"),
            "{t:?}"
        );
        let t = table_ddl(&plain("brotli"), "default", DEFAULT_DATE_RANGE, &[]).unwrap();
        assert!(
            t.notes[0].starts_with("WARNING") && t.notes[0].contains("Brotli"),
            "{t:?}"
        );
    }

    #[test]
    fn timestamp_partitions_and_other_sinks() {
        let t = sink(
            "events",
            &[("path", "s3://b/e"), ("partition_by", "ts")],
            vec![
                Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
                Field::new("v", DataType::Int64, true),
            ],
        );
        let e = job_ddl(&explain(vec![t]), &AthenaOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("partition column 'ts'") && e.contains("%3A"),
            "{e}"
        );

        let kafka = TableInfo {
            name: "alerts".into(),
            connector: "kafka".into(),
            options: vec![],
            schema: Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)])),
        };
        let e = job_ddl(&explain(vec![kafka.clone()]), &AthenaOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no parquet sink") && e.contains("'alerts' (kafka)"),
            "{e}"
        );
        let text = job_ddl(&explain(vec![kafka, chunks()]), &AthenaOptions::default()).unwrap();
        assert!(
            text.contains("Not described (Athena reads only the parquet sinks): 'alerts' (kafka)"),
            "{text}"
        );
        assert_eq!(text.matches("CREATE EXTERNAL TABLE").count(), 1);

        // An integer partition column that is not `hour` is injected; `hour` as int has no digits.
        let t = sink(
            "m",
            &[("path", "s3://b/m"), ("partition_by", "shard, hour")],
            vec![
                Field::new("shard", DataType::Int32, true),
                Field::new("hour", DataType::Int32, true),
                Field::new("day", DataType::Date32, true),
                Field::new("v", DataType::Int64, true),
            ],
        );
        let d = table_ddl(&t, "default", DEFAULT_DATE_RANGE, &[]).unwrap();
        assert_eq!(d.partitions[0].projection, Projection::Injected);
        assert_eq!(
            d.partitions[1].projection,
            Projection::Integer {
                min: 0,
                max: 23,
                digits: None
            }
        );
        assert_eq!(d.partitions[0].hive_type, "int");
    }
}
