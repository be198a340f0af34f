//! `WITH (...)` options as declared, and a consuming reader that makes sure no
//! option is silently ignored: every connector `take`s what it understands and
//! calls [`TableOptions::finish`], which rejects whatever is left.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::{ConnectorError, Result};

/// One option's value and where it was written (1-based line and column in the
/// job file), so errors can point at it.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionValue {
    /// The value as a string (numbers and booleans are kept as written).
    pub value: String,
    /// Line of the option's key.
    pub line: u64,
    /// Column of the option's key.
    pub column: u64,
}

/// The options of one table, keyed by lower-case name.
#[derive(Clone, Debug, Default)]
pub struct TableOptions {
    values: BTreeMap<String, OptionValue>,
}

impl TableOptions {
    /// Build from key/value pairs (keys are lower-cased).
    pub fn new(values: impl IntoIterator<Item = (String, OptionValue)>) -> Self {
        Self {
            values: values
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        }
    }

    /// Build from plain pairs with no positions (tests, programmatic use).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self::new(pairs.into_iter().map(|(k, v)| {
            (
                k.to_string(),
                OptionValue {
                    value: v.to_string(),
                    line: 0,
                    column: 0,
                },
            )
        }))
    }

    /// All options, for display (`explain`) and position look-ups.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &OptionValue)> {
        self.values.iter()
    }

    /// Look an option up without consuming it.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|v| v.value.as_str())
    }

    /// Where an option was written.
    pub fn position(&self, key: &str) -> Option<(u64, u64)> {
        self.values.get(key).map(|v| (v.line, v.column))
    }

    /// Start consuming a copy of the options for `connector`.
    pub fn reader(&self, connector: &str) -> OptionReader {
        let mut values = self.values.clone();
        values.remove("connector");
        OptionReader {
            connector: connector.to_string(),
            values,
            known: Vec::new(),
        }
    }
}

/// Consumes options; [`OptionReader::finish`] rejects any left over.
pub struct OptionReader {
    connector: String,
    values: BTreeMap<String, OptionValue>,
    known: Vec<String>,
}

impl OptionReader {
    /// Take an optional string option.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.known.push(key.to_string());
        self.values.remove(key).map(|v| v.value)
    }

    /// Take a required string option.
    pub fn require(&mut self, key: &str, hint: &str) -> Result<String> {
        self.take(key).ok_or_else(|| ConnectorError::MissingOption {
            connector: self.connector.clone(),
            option: key.to_string(),
            hint: hint.to_string(),
        })
    }

    /// Take an option and parse it with `FromStr`.
    pub fn take_parsed<T: FromStr>(&mut self, key: &str, expected: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|e| ConnectorError::InvalidOption {
                    option: key.to_string(),
                    value: v.clone(),
                    message: format!("{e}; expected {expected}"),
                }),
        }
    }

    /// Take a boolean (`true`/`false`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        self.take_parsed::<bool>(key, "true or false")
    }

    /// Take a byte size: `1048576`, `64KB`, `128MiB`, `1GB`.
    pub fn take_bytes(&mut self, key: &str) -> Result<Option<u64>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => parse_bytes(&v)
                .map(Some)
                .ok_or_else(|| ConnectorError::InvalidOption {
                    option: key.to_string(),
                    value: v,
                    message: "expected a byte size such as 1048576, 64KB, 128MB or 1GB".into(),
                }),
        }
    }

    /// Take a duration: `30s`, `5 min`, `1h`, `500ms`.
    pub fn take_duration(&mut self, key: &str) -> Result<Option<std::time::Duration>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => humantime::parse_duration(v.trim()).map(Some).map_err(|e| {
                ConnectorError::InvalidOption {
                    option: key.to_string(),
                    value: v.clone(),
                    message: format!("{e}; expected a duration such as 30s, 5min or 1h"),
                }
            }),
        }
    }

    /// Take every `'storage.*'` option (object store settings).
    pub fn take_storage(&mut self) -> BTreeMap<String, String> {
        self.known.push("storage.*".into());
        let keys: Vec<String> = self
            .values
            .keys()
            .filter(|k| k.starts_with("storage."))
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.values.remove(&k).map(|v| (k, v.value)))
            .collect()
    }

    /// Reject options nobody took.
    pub fn finish(self) -> Result<()> {
        if let Some((key, _)) = self.values.into_iter().next() {
            let mut known = self.known;
            known.sort();
            known.dedup();
            return Err(ConnectorError::UnknownOption {
                connector: self.connector,
                option: key,
                known: known.join(", "),
            });
        }
        Ok(())
    }
}

/// Parse `1048576`, `64KB`, `64KiB`, `128MB`, `1GB` (decimal and binary units both
/// mean powers of 1024, as object stores and Parquet tools use them).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    (num >= 0.0).then(|| (num * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_options_are_rejected() {
        let opts = TableOptions::from_pairs([("connector", "file"), ("path", "x"), ("bogus", "1")]);
        let mut r = opts.reader("file");
        assert_eq!(r.take("path").as_deref(), Some("x"));
        let err = r.finish().unwrap_err().to_string();
        assert!(err.contains("unknown option 'bogus'"), "{err}");
        assert!(err.contains("path"), "{err}");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("1024"), Some(1024));
        assert_eq!(parse_bytes("64KB"), Some(65536));
        assert_eq!(parse_bytes("1.5 MiB"), Some(1572864));
        assert_eq!(parse_bytes("lots"), None);
    }
}
