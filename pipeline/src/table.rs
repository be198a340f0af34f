//! [`EpochTable`]: the DataFusion table behind every source. Its contents are the
//! current epoch's batches; plans are built once and re-executed every epoch.

use std::sync::{Arc, RwLock};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// Rows per slice handed to one DataFusion partition; small enough to spread an
/// epoch over every core, large enough to keep per-batch overhead low.
const SLICE_ROWS: usize = 8192;

/// A table whose rows are replaced at the start of every epoch.
#[derive(Debug)]
pub struct EpochTable {
    schema: SchemaRef,
    partitions: usize,
    current: RwLock<Arc<MemTable>>,
}

impl EpochTable {
    /// An empty table of `schema`, spreading each epoch over `partitions` partitions.
    pub fn new(schema: SchemaRef, partitions: usize) -> Self {
        let partitions = partitions.max(1);
        let empty = MemTable::try_new(schema.clone(), vec![vec![]; partitions])
            .expect("empty table matches its schema");
        Self {
            schema,
            partitions,
            current: RwLock::new(Arc::new(empty)),
        }
    }

    /// Replace the contents with one epoch's batches (zero-copy slices,
    /// distributed round-robin across partitions).
    pub fn set(&self, batches: &[RecordBatch]) -> DfResult<()> {
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); self.partitions];
        let mut i = 0;
        for b in batches {
            let mut offset = 0;
            while offset < b.num_rows() {
                let len = SLICE_ROWS.min(b.num_rows() - offset);
                parts[i % self.partitions].push(b.slice(offset, len));
                i += 1;
                offset += len;
            }
        }
        let table = MemTable::try_new(self.schema.clone(), parts)?;
        *self.current.write().expect("epoch table lock") = Arc::new(table);
        Ok(())
    }

    /// Drop the epoch's rows.
    pub fn clear(&self) -> DfResult<()> {
        self.set(&[])
    }
}

#[async_trait]
impl TableProvider for EpochTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let table = self.current.read().expect("epoch table lock").clone();
        table.scan(state, projection, filters, limit).await
    }
}
