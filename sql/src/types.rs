//! SQL column types -> Arrow types, and which query types fit a declared column.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

/// Map a declared SQL type (as sqlparser prints it) to Arrow.
pub fn arrow_type(sql: &str) -> Result<DataType, String> {
    let t = sql.trim().to_ascii_uppercase();
    if let Some(inner) = t.strip_suffix("[]") {
        return Ok(DataType::List(Arc::new(Field::new(
            "item",
            arrow_type(inner)?,
            true,
        ))));
    }
    if let Some(inner) = t.strip_prefix("ARRAY<").and_then(|s| s.strip_suffix('>')) {
        return Ok(DataType::List(Arc::new(Field::new(
            "item",
            arrow_type(inner)?,
            true,
        ))));
    }
    let base = t.split('(').next().unwrap_or("").trim();
    let args: Vec<u8> = t
        .split_once('(')
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(a, _)| a.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_default();
    Ok(match base {
        "TEXT" | "VARCHAR" | "CHAR" | "CHARACTER" | "CHARACTER VARYING" | "STRING" | "JSON" | "NVARCHAR" => DataType::Utf8,
        "INT" | "INTEGER" | "INT4" => DataType::Int32,
        "BIGINT" | "INT8" | "LONG" => DataType::Int64,
        "SMALLINT" | "INT2" => DataType::Int16,
        "TINYINT" => DataType::Int8,
        "FLOAT" | "REAL" | "FLOAT4" => DataType::Float32,
        "DOUBLE" | "DOUBLE PRECISION" | "FLOAT8" => DataType::Float64,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "DATE" => DataType::Date32,
        "BYTEA" | "BINARY" | "VARBINARY" | "BLOB" | "BYTES" => DataType::Binary,
        "DECIMAL" | "NUMERIC" => {
            let p = args.first().copied().unwrap_or(38);
            let s = args.get(1).copied().unwrap_or(if args.is_empty() { 10 } else { 0 });
            if p == 0 || p > 38 || s > p {
                return Err(format!("DECIMAL({p}, {s}) is out of range: precision 1..=38 and scale <= precision"));
            }
            DataType::Decimal128(p, s as i8)
        }
        _ if base.starts_with("TIMESTAMPTZ") || t.contains("WITH TIME ZONE") => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "TIMESTAMP" | "DATETIME" => DataType::Timestamp(TimeUnit::Microsecond, None),
        _ => {
            return Err(format!(
                "unsupported column type '{sql}': use TEXT, INT, BIGINT, SMALLINT, FLOAT, DOUBLE, BOOLEAN, DATE, TIMESTAMP, TIMESTAMPTZ, DECIMAL(p, s), BYTEA or an array such as TEXT[]"
            ))
        }
    })
}

/// Whether rows of type `from` can be stored in a column declared `to` without
/// losing information (the cast is then added to the plan). Anything else is a
/// plan error asking for an explicit CAST.
pub fn fits(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to || *from == Null {
        return true;
    }
    match (from, to) {
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => true,
        (Int8, Int16 | Int32 | Int64) | (Int16, Int32 | Int64) | (Int32, Int64) => true,
        (UInt8, Int16 | Int32 | Int64) | (UInt16, Int32 | Int64) | (UInt32, Int64) => true,
        (Int8 | Int16 | Int32 | UInt8 | UInt16, Float32 | Float64)
        | (Int64 | UInt32 | UInt64, Float64) => true,
        (Float32, Float64) => true,
        (Timestamp(_, a), Timestamp(_, b)) => a.is_some() == b.is_some(),
        (Date32, Timestamp(_, _)) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16)
        }
        (Int8 | Int16 | Int32 | Int64, Decimal128(p, s)) => (*p as i16 - *s as i16) >= 19,
        (List(a) | LargeList(a) | FixedSizeList(a, _), List(b) | LargeList(b)) => {
            fits(a.data_type(), b.data_type())
        }
        (FixedSizeList(a, n), FixedSizeList(b, m)) => n == m && fits(a.data_type(), b.data_type()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_common_types() {
        assert_eq!(arrow_type("TEXT").unwrap(), DataType::Utf8);
        assert_eq!(arrow_type("varchar(20)").unwrap(), DataType::Utf8);
        assert_eq!(arrow_type("BIGINT").unwrap(), DataType::Int64);
        assert_eq!(
            arrow_type("DECIMAL(38,10)").unwrap(),
            DataType::Decimal128(38, 10)
        );
        assert_eq!(
            arrow_type("TIMESTAMP").unwrap(),
            DataType::Timestamp(TimeUnit::Microsecond, None)
        );
        assert!(matches!(arrow_type("TEXT[]").unwrap(), DataType::List(_)));
        assert!(arrow_type("GEOGRAPHY")
            .unwrap_err()
            .contains("unsupported column type"));
    }

    #[test]
    fn fits_is_lossless_only() {
        assert!(fits(&DataType::Int32, &DataType::Int64));
        assert!(!fits(&DataType::Utf8, &DataType::Int32));
        assert!(!fits(&DataType::Int64, &DataType::Int32));
    }
}
