//! The [`Sink`] trait: how connectors take an epoch's output and make it visible
//! atomically at commit.
//!
//! Protocol, driven by the runtime for every epoch:
//! 1. [`Sink::begin_epoch`] with a deterministic file stem (from job, sink and
//!    the epoch's source ranges);
//! 2. [`EpochWriter::write`] for every output batch;
//! 3. [`EpochWriter::finish`] stages the output *invisibly* (outside the table's
//!    folders, or as an uncompleted upload) and returns a [`StagedEpoch`] naming
//!    the final objects;
//! 4. the runtime records those names in the epoch manifest, then calls
//!    [`StagedEpoch::publish`], which makes each object visible in one atomic step.
//!
//! A replayed epoch produces the same stem, so publishing overwrites the objects
//! of the interrupted attempt instead of adding duplicates.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Identifies one epoch's output of one sink.
#[derive(Clone, Debug)]
pub struct EpochInfo {
    /// Epoch number (for logs; part of a file name only for the end-of-input epoch, which
    /// has no ranges to name it).
    pub epoch: u64,
    /// Deterministic stem for this epoch's objects: same ranges, same stem.
    pub file_stem: String,
    /// Wall-clock start of the epoch, microseconds since the Unix epoch.
    pub started_micros: i64,
}

/// What a sink wrote in one epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SinkStats {
    /// Rows written.
    pub rows: u64,
    /// Objects (files) published.
    pub files: u64,
    /// Bytes published.
    pub bytes: u64,
}

impl SinkStats {
    /// Add another epoch's figures.
    pub fn add(&mut self, other: &SinkStats) {
        self.rows += other.rows;
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// A connector that receives rows.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The table name the job declared.
    fn name(&self) -> &str;
    /// Schema of the rows the sink accepts (the query's output, after validation).
    fn schema(&self) -> SchemaRef;
    /// Called once at start: remove stale staging files and abort leftovers of
    /// a previous process.
    async fn recover(&self) -> Result<()>;
    /// Start the epoch's output.
    async fn begin_epoch(&self, epoch: &EpochInfo) -> Result<Box<dyn EpochWriter>>;
    /// Remove published objects (names as returned by [`StagedEpoch::objects`])
    /// that a replay of their epoch did not produce again.
    async fn remove(&self, objects: &[String]) -> Result<()>;
    /// Where the sink writes, for summaries (secrets never included).
    fn location(&self) -> String;
}

/// Receives one epoch's batches for one sink.
#[async_trait]
pub trait EpochWriter: Send {
    /// Write a batch (in the sink's schema).
    async fn write(&mut self, batch: RecordBatch) -> Result<()>;
    /// Finish writing; nothing is visible yet.
    async fn finish(self: Box<Self>) -> Result<Box<dyn StagedEpoch>>;
}

/// One epoch's output, staged and ready to publish.
#[async_trait]
pub trait StagedEpoch: Send {
    /// Final object names (relative to the sink's location) this epoch publishes.
    fn objects(&self) -> Vec<String>;
    /// Make every staged object visible, each in one atomic step. Idempotent.
    async fn publish(self: Box<Self>) -> Result<SinkStats>;
}

/// Rows a job produces on the side while its queries run (model usage), written with the
/// epoch that produced them: the runtime drains every side output after the epoch's
/// queries finish and stages the batch into its sink next to the epoch's other output, so
/// it is published (and replayed) exactly like them.
pub trait SideOutput: Send + Sync + std::fmt::Debug {
    /// Everything collected since the last call, in the sink's schema; `None` when nothing.
    fn drain(&self) -> Option<RecordBatch>;

    /// Whether what an epoch collected is still published when the epoch fails (usage:
    /// the calls were made and paid for, whatever became of the epoch). Default: no, it
    /// is dropped with the epoch, which its re-run produces again.
    fn publish_on_failure(&self) -> bool {
        false
    }
}
