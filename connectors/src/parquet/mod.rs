//! `connector = 'parquet'`: a sink that writes Parquet files to any object
//! store location (local path, `file://`, `s3://`, `memory://`), exactly once
//! per epoch.
//!
//! ```sql
//! CREATE TABLE chunks WITH (connector = 'parquet', path = 's3://bucket/vectors/',
//!       partition_by = 'tenant, dt', compression = 'zstd', 'rollover.rows' = 1000000);
//! ```
//!
//! Layout (DESIGN §6): Hive folders `k=v/` for the `partition_by` columns,
//! which are left out of the files; files named `<epoch stem>-<seq:05>.parquet`
//! so a replayed epoch rewrites the same objects. Files are staged outside the
//! table (`staging_dir/<sink>/`) and each becomes visible in one atomic step at
//! publish. Options are documented on [`ParquetSinkOptions`].
//!
//! Modules: [`options`] (option names, defaults, validation), [`partition`]
//! (Hive folder names, splitting batches), [`writer`] (encoding one
//! partition's files on a blocking thread), [`sink`] (the epoch protocol,
//! staging and publishing), [`conformance`] (the sink test suite, runnable
//! against any location).

pub mod conformance;
pub mod options;
pub mod partition;
pub mod sink;
pub mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use strata_pipeline::Sink;

pub use options::ParquetSinkOptions;
pub use sink::ParquetSink;

use crate::{Connector, ConnectorContext, ConnectorError, Result, SourceParts, TableDecl};

/// `connector = 'parquet'` (sink only; read Parquet with `connector = 'file'`).
pub struct ParquetConnector;

#[async_trait]
impl Connector for ParquetConnector {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn is_source(&self) -> bool {
        false
    }

    fn is_sink(&self) -> bool {
        true
    }

    async fn create_source(
        &self,
        decl: &TableDecl,
        _ctx: &ConnectorContext,
    ) -> Result<SourceParts> {
        Err(ConnectorError::Unsupported(format!(
            "table '{}': connector 'parquet' is a sink only; to read Parquet files use connector = 'file' with format = 'parquet'",
            decl.name
        )))
    }

    async fn create_sink(
        &self,
        decl: &TableDecl,
        schema: SchemaRef,
        ctx: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>> {
        let options = ParquetSinkOptions::from_reader(decl.options.reader(self.name()))?;
        Ok(Arc::new(ParquetSink::new(
            ctx, &decl.name, schema, options,
        )?))
    }
}
