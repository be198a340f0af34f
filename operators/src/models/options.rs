//! Reading the `WITH (...)` options of a `CREATE MODEL`.
//!
//! Owns typed access to model options: each option is taken once, by the code that uses it,
//! and [`ModelOptions::finish`] rejects whatever nobody took, so no option is parsed and
//! silently ignored.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::{OperatorError, Result};

/// The options of one `CREATE MODEL`, keyed case-insensitively.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    model: String,
    values: BTreeMap<String, String>,
}

impl ModelOptions {
    /// Options of model `model`.
    pub fn new<K: Into<String>, V: Into<String>>(
        model: &str,
        values: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            model: model.to_string(),
            values: values
                .into_iter()
                .map(|(k, v)| (k.into().to_ascii_lowercase(), v.into()))
                .collect(),
        }
    }

    /// The model's alias.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// An error about option `key` of this model.
    pub fn error(&self, key: &str, message: impl Into<String>) -> OperatorError {
        OperatorError::Model {
            model: self.model.clone(),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// An option's value, left for the code that takes it.
    pub fn peek(&self, key: &str) -> Option<String> {
        self.values.get(key).cloned()
    }

    /// Take an option's value.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    /// Take a required option; `hint` says what a good value looks like.
    pub fn require(&mut self, key: &str, hint: &str) -> Result<String> {
        self.take(key).ok_or_else(|| OperatorError::Model {
            model: self.model.clone(),
            key: None,
            message: format!("option '{key}' is required ({hint})"),
        })
    }

    /// Take and parse an option; `expected` names the type in the error.
    pub fn take_parsed<T: FromStr>(&mut self, key: &str, expected: &str) -> Result<Option<T>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|_| self.error(key, format!("must be {expected}, got '{v}'"))),
        }
    }

    /// Take a positive integer option.
    pub fn take_positive(&mut self, key: &str) -> Result<Option<u64>> {
        match self.take_parsed::<u64>(key, "a positive integer")? {
            Some(0) => Err(self.error(key, "must be a positive integer, got 0")),
            other => Ok(other),
        }
    }

    /// Take a boolean option (`true`/`false`).
    pub fn take_bool(&mut self, key: &str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(self.error(key, format!("must be true or false, got '{v}'"))),
            },
        }
    }

    /// Fail on options nobody took.
    pub fn finish(self) -> Result<()> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(key) => Err(OperatorError::Model {
                model: self.model.clone(),
                key: Some(key.clone()),
                message: format!(
                    "unknown option '{key}' (see the README's CREATE MODEL section for the \
                     options of each provider)"
                ),
            }),
        }
    }
}
