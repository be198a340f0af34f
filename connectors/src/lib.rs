//! strata-connectors: where records come from and where they go.
//!
//! One plain registry ([`connectors`]) lists every connector by name. A connector
//! is a folder (`file/`, `parquet/`) with its options struct (documented fields,
//! defaults, unknown keys rejected), its source and/or sink. Connectors implement
//! the runtime's [`strata_pipeline::Source`] and [`strata_pipeline::Sink`]; they
//! never apply bad-data policy or commit logic themselves.

pub mod error;
pub mod file;
pub mod kafka;
pub mod options;
pub mod parquet;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use strata_pipeline::{BadDataPolicy, Sink, Source};

pub use error::{ConnectorError, Result};
pub use options::{OptionValue, TableOptions};

/// A table as declared by `CREATE TABLE name (columns) WITH (options)`.
#[derive(Clone, Debug)]
pub struct TableDecl {
    /// Table name.
    pub name: String,
    /// Declared columns, or `None` when the column list was omitted.
    pub schema: Option<SchemaRef>,
    /// The `WITH (...)` options, `connector` included.
    pub options: TableOptions,
}

/// A source with the policy for its bad records.
pub struct SourceParts {
    /// The source.
    pub source: Box<dyn Source>,
    /// `bad_data` policy.
    pub bad_data: BadDataPolicy,
    /// Where dead letters go when the policy is `dead_letter`.
    pub dead_letter: Option<Arc<dyn Sink>>,
}

/// Settings every connector may need from the job.
#[derive(Clone, Debug)]
pub struct ConnectorContext {
    /// The job's name (part of deterministic file names).
    pub job_name: String,
    /// A local directory private to this job where sinks stage files before
    /// publishing them (outside every table's folders). Sinks use
    /// `staging_dir/<sink name>/` and may wipe it in `recover()`.
    pub staging_dir: std::path::PathBuf,
}

/// A connector: builds sources and/or sinks from declarations.
#[async_trait]
pub trait Connector: Send + Sync {
    /// The `connector = '...'` name.
    fn name(&self) -> &'static str;
    /// Whether the connector can be read from.
    fn is_source(&self) -> bool;
    /// Whether the connector can be written to.
    fn is_sink(&self) -> bool;
    /// Build a source. Validates every option; unknown ones are errors.
    async fn create_source(&self, decl: &TableDecl, ctx: &ConnectorContext) -> Result<SourceParts>;
    /// Build a sink for rows of `schema` (the query's output, already checked
    /// against any declared columns). Validates every option.
    async fn create_sink(
        &self,
        decl: &TableDecl,
        schema: SchemaRef,
        ctx: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>>;
    /// Options that hold secrets, masked in `explain` and logs.
    fn is_secret_option(&self, key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        k.contains("secret")
            || k.contains("password")
            || k.contains("token")
            || k.contains("sasl")
            || k.ends_with("key_id")
            || k.contains("credential")
    }
}

/// Every connector, by name. Adding a connector means adding a line here.
pub fn connectors() -> Vec<Arc<dyn Connector>> {
    vec![
        Arc::new(file::FileConnector),
        Arc::new(parquet::ParquetConnector),
        Arc::new(kafka::KafkaConnector),
    ]
}

/// Look a connector up by name.
pub fn connector(name: &str) -> Option<Arc<dyn Connector>> {
    connectors()
        .into_iter()
        .find(|c| c.name().eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_no_duplicate_connector_names() {
        let mut names: Vec<_> = connectors().iter().map(|c| c.name()).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(n, names.len(), "duplicate connector names: {names:?}");
    }
}
