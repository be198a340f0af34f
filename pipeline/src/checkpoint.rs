//! The checkpoint: an offset log, epoch manifests and commit markers in an
//! object store (local directory by default, `--checkpoint URL` otherwise).
//!
//! ```text
//! offsets/<epoch>.json    source ranges + positions after the epoch   (written before any publish)
//! manifests/<epoch>.json  objects each sink publishes for the epoch     (written before any publish)
//! commits/<epoch>.json    the epoch is fully published                  (written last)
//! ```
//! Recovery: an epoch with an offset entry but no commit is re-run over exactly
//! its logged ranges; its manifest tells which objects a replay must remove.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::sink::SinkStats;
use crate::source::SplitRange;
use crate::storage::StorageLocation;
use crate::{PipelineError, Result};

/// How many committed epochs to keep in the log.
const RETAIN_EPOCHS: u64 = 16;

/// One source's part of an epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SourceOffsets {
    /// Ranges consumed in the epoch.
    pub ranges: Vec<SplitRange>,
    /// Position after the epoch, for `Source::open`.
    pub state_after: serde_json::Value,
}

/// An offset-log entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OffsetEntry {
    /// Epoch number.
    pub epoch: u64,
    /// Per source (by table name).
    pub sources: BTreeMap<String, SourceOffsets>,
}

/// Objects published by each sink in an epoch.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Epoch number.
    pub epoch: u64,
    /// Sink name -> object names relative to the sink's location.
    pub sinks: BTreeMap<String, Vec<String>>,
}

/// A commit marker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CommitEntry {
    /// Epoch number.
    pub epoch: u64,
    /// What each sink published.
    pub sinks: BTreeMap<String, SinkStats>,
    /// Commit time, RFC 3339.
    pub committed_at: String,
}

/// What the checkpoint says at start-up.
#[derive(Debug, Default)]
pub struct RecoveryState {
    /// Last committed epoch and its offsets (positions to resume from).
    pub committed: Option<OffsetEntry>,
    /// An epoch that was logged but not committed: re-run it first.
    pub replay: Option<(OffsetEntry, Option<Manifest>)>,
}

impl RecoveryState {
    /// Number of the next new epoch.
    pub fn next_epoch(&self) -> u64 {
        match (&self.replay, &self.committed) {
            (Some((e, _)), _) => e.epoch + 1,
            (None, Some(c)) => c.epoch + 1,
            (None, None) => 1,
        }
    }
}

/// The checkpoint of one job.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    location: StorageLocation,
}

impl Checkpoint {
    /// A checkpoint at `location`.
    pub fn new(location: StorageLocation) -> Self {
        Self { location }
    }

    /// Where it lives.
    pub fn url(&self) -> &str {
        &self.location.url
    }

    fn err(&self, message: impl std::fmt::Display) -> PipelineError {
        PipelineError::Checkpoint {
            location: self.location.url.clone(),
            message: message.to_string(),
        }
    }

    /// `<dir>/<epoch, 20 digits>.<ext>`.
    fn path(&self, dir: &str, epoch: u64, ext: &str) -> ObjPath {
        self.location.child(&format!("{dir}/{epoch:020}.{ext}"))
    }

    /// Write `value` as `<dir>/<epoch>.json`.
    pub(crate) async fn put<T: Serialize>(&self, dir: &str, epoch: u64, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| self.err(e))?;
        self.put_bytes(dir, epoch, "json", bytes).await
    }

    /// Read `<dir>/<epoch>.json`; `None` when it does not exist.
    pub(crate) async fn get<T: for<'de> Deserialize<'de>>(
        &self,
        dir: &str,
        epoch: u64,
    ) -> Result<Option<T>> {
        let Some(bytes) = self.get_bytes(dir, epoch, "json").await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.err(format!("{}: {e}", self.path(dir, epoch, "json"))))
    }

    /// Write `bytes` as `<dir>/<epoch>.<ext>`. A single PUT is atomic on every object store
    /// (local: temp file + rename).
    pub(crate) async fn put_bytes(
        &self,
        dir: &str,
        epoch: u64,
        ext: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let path = self.path(dir, epoch, ext);
        self.location
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| PipelineError::ObjectStore {
                location: path.to_string(),
                source: e,
            })?;
        Ok(())
    }

    /// Read `<dir>/<epoch>.<ext>`; `None` when it does not exist.
    pub(crate) async fn get_bytes(
        &self,
        dir: &str,
        epoch: u64,
        ext: &str,
    ) -> Result<Option<Vec<u8>>> {
        let path = self.path(dir, epoch, ext);
        let io = |e| PipelineError::ObjectStore {
            location: path.to_string(),
            source: e,
        };
        match self.location.store.get(&path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(io)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    /// Remove `<dir>/<epoch>.<ext>` (best effort: a leftover file costs space, not
    /// correctness).
    pub(crate) async fn delete(&self, dir: &str, epoch: u64, ext: &str) {
        let path = self.path(dir, epoch, ext);
        match self.location.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(path = %path, error = %e, "could not remove an old checkpoint file")
            }
        }
    }

    async fn epochs(&self, dir: &str) -> Result<Vec<u64>> {
        let prefix = self.location.child(dir);
        let metas: Vec<_> = self
            .location
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| PipelineError::ObjectStore {
                location: prefix.to_string(),
                source: e,
            })?;
        let mut epochs: Vec<u64> = metas
            .iter()
            .filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Read the checkpoint at start-up.
    pub async fn recover(&self) -> Result<RecoveryState> {
        let offsets = self.epochs("offsets").await?;
        let commits = self.epochs("commits").await?;
        let last_commit = commits.last().copied();
        let last_offset = offsets.last().copied();
        let committed = match last_commit {
            Some(e) => Some(self.get::<OffsetEntry>("offsets", e).await?.ok_or_else(|| {
                self.err(format!("commit marker for epoch {e} has no offset entry; the checkpoint is damaged: restore it or start over with a new --checkpoint"))
            })?),
            None => None,
        };
        let replay = match last_offset {
            Some(e) if Some(e) > last_commit => {
                let entry = self
                    .get::<OffsetEntry>("offsets", e)
                    .await?
                    .ok_or_else(|| self.err(format!("offset entry {e} vanished")))?;
                let manifest = self.get::<Manifest>("manifests", e).await?;
                Some((entry, manifest))
            }
            _ => None,
        };
        Ok(RecoveryState { committed, replay })
    }

    /// Log an epoch's ranges (before anything of it is published).
    pub async fn log_offsets(&self, entry: &OffsetEntry) -> Result<()> {
        self.put("offsets", entry.epoch, entry).await
    }

    /// Log the objects an epoch publishes (before publishing them).
    pub async fn log_manifest(&self, manifest: &Manifest) -> Result<()> {
        self.put("manifests", manifest.epoch, manifest).await
    }

    /// Mark an epoch committed, then prune old entries.
    pub async fn commit(&self, entry: &CommitEntry) -> Result<()> {
        self.put("commits", entry.epoch, entry).await?;
        if entry.epoch > RETAIN_EPOCHS {
            let old = entry.epoch - RETAIN_EPOCHS;
            for dir in ["offsets", "manifests", "commits"] {
                self.delete(dir, old, "json").await;
            }
        }
        Ok(())
    }
}
