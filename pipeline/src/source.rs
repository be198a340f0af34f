//! The [`Source`] trait: how connectors hand records to the runtime.
//!
//! A source reads one *epoch* at a time and reports exactly which record ranges
//! it consumed ([`SplitRange`]s). The runtime makes those ranges durable before
//! any output of the epoch is published, and on recovery asks the source to
//! [`Source::replay`] exactly them. Sources detect bad records and hand them over
//! as [`BadRecord`]s; the *policy* (fail, drop, dead letter) is applied by the
//! runtime, in one place.

use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{BadRecord, Result};

/// A contiguous range `[start, end)` of one split of a source, in the split's own
/// unit (byte offset of a file, offset of a Kafka partition).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitRange {
    /// Identifies the split: a file's URL, `topic/partition`.
    pub split: String,
    /// First position of the range (inclusive).
    pub start: u64,
    /// Position after the range (exclusive).
    pub end: u64,
    /// Ordinal of the first record in the split (a file's 1-based line number, a
    /// Kafka offset), used to name positions in errors and dead letters.
    pub first_record: u64,
    /// Number of records (good and bad) in the range.
    pub records: u64,
}

/// How much one epoch may read from a source.
#[derive(Clone, Debug)]
pub struct EpochLimits {
    /// Stop after this many records.
    pub max_rows: usize,
    /// Stop after this many input bytes.
    pub max_bytes: usize,
    /// Stop after this long (streaming sources; bounded sources may ignore it).
    pub max_duration: Duration,
}

/// What a source read for one epoch.
#[derive(Debug, Default)]
pub struct SourceEpoch {
    /// Decoded good records, in the source's declared schema.
    pub batches: Vec<RecordBatch>,
    /// Records that failed to decode; the runtime applies the bad-data policy.
    pub bad: Vec<BadRecord>,
    /// The ranges consumed (good and bad records alike).
    pub ranges: Vec<SplitRange>,
    /// The source's full position after this epoch, handed back to
    /// [`Source::open`] after a restart.
    pub state_after: serde_json::Value,
    /// Input bytes consumed, for progress and metrics.
    pub bytes: u64,
}

impl SourceEpoch {
    /// Number of good rows in the epoch.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
    /// Records consumed, good and bad.
    pub fn records(&self) -> u64 {
        self.ranges.iter().map(|r| r.records).sum()
    }
}

/// A connector that produces records.
#[async_trait]
pub trait Source: Send + 'static {
    /// The table name the job declared.
    fn name(&self) -> &str;
    /// Schema of the batches this source produces.
    fn schema(&self) -> SchemaRef;
    /// Whether the source ends by itself (files, bounded Kafka scans).
    fn is_bounded(&self) -> bool;
    /// Total input size in bytes when known, for progress and ETA.
    fn size_hint(&self) -> Option<u64> {
        None
    }
    /// Position the source after the last committed epoch (`state` is that
    /// epoch's [`SourceEpoch::state_after`]), or at its start when `None`.
    async fn open(&mut self, state: Option<serde_json::Value>) -> Result<()>;
    /// Read the next epoch. `Ok(None)` means a bounded source is exhausted.
    /// A streaming source returns an empty epoch when nothing arrived in time.
    async fn read_epoch(&mut self, limits: &EpochLimits) -> Result<Option<SourceEpoch>>;
    /// Re-read exactly `ranges` (an epoch that was logged but not committed).
    /// Must return the same records in the same order as the first read.
    async fn replay(&mut self, ranges: &[SplitRange]) -> Result<SourceEpoch>;
    /// A handle the runtime calls after each epoch is committed (its files
    /// visible and its commit marker written), for sources that acknowledge
    /// consumed positions upstream (Kafka group offsets). The source itself
    /// lives on the reader task, hence a separate shared handle.
    fn commit_hook(&self) -> Option<std::sync::Arc<dyn CommitHook>> {
        None
    }
}

/// Told about every committed epoch of one source (see [`Source::commit_hook`]).
#[async_trait]
pub trait CommitHook: Send + Sync + 'static {
    /// `ranges` (this source's part of the epoch, possibly empty) are committed:
    /// every output of the epoch is visible. An error fails the run; the epoch
    /// stays committed, so a restart does not re-run it.
    async fn committed(&self, epoch: u64, ranges: &[SplitRange]) -> Result<()>;
}
