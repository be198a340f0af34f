//! The parquet [`Sink`]: stages each epoch's files locally under
//! `staging_dir/<sink>/`, then publishes each file in one atomic step.
//!
//! - `begin_epoch` opens a [`ParquetEpochWriter`]; `write` splits batches by
//!   partition and hands each partition's rows to a blocking thread that
//!   encodes them into a staging file (one batch in flight per partition, so
//!   encoding overlaps the caller's next batch and partitions encode in
//!   parallel; memory stays bounded by the row groups being built).
//! - `finish` closes and fsyncs the files; nothing is visible yet.
//! - `publish`: a local table gets `rename(2)` from staging (or, across
//!   filesystems, a copy to a hidden `.<name>.tmp` next to the destination
//!   followed by a rename); a remote table (`s3://`, `memory://`) gets a single
//!   PUT for small files and a multipart upload, completed only after its last
//!   part, for larger ones. Republishing overwrites the same names.
//!
//! This module must not decide file names beyond `<stem>-<seq>.parquet`
//! (the stem comes from the runtime) and never writes into the table's
//! folders before `publish`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use bytes::BytesMut;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;
use tracing::Instrument;

use strata_pipeline::sink::{EpochInfo, EpochWriter, Sink, SinkStats, StagedEpoch};
use strata_pipeline::storage::{self, StorageLocation};
use strata_pipeline::PipelineError;

use super::options::{ParquetSinkOptions, SinkConfig};
use super::partition::Partitioner;
use super::writer::{FileSettings, PartitionFiles, StagedFile};
use crate::ConnectorContext;

/// Files up to this size are published with one PUT; larger ones with a
/// multipart upload in parts of this size.
pub const UPLOAD_PART_BYTES: usize = 16 << 20;
/// Parts of one multipart upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// Files published at once.
const PUBLISH_CONCURRENCY: usize = 4;
/// Row groups are flushed when their encoded size reaches this (bounds memory
/// per open file when rows are wide).
const MAX_ROW_GROUP_BYTES: usize = 128 << 20;

static ATTEMPTS: AtomicU64 = AtomicU64::new(0);

/// Writes Parquet files to any object store location, exactly once per epoch.
pub struct ParquetSink {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    config: SinkConfig,
    location: StorageLocation,
    /// `staging_dir/<sink name>`.
    staging: PathBuf,
    props: WriterProperties,
    partitioner: Partitioner,
}

impl std::fmt::Debug for ParquetSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParquetSink")
            .field("name", &self.shared.name)
            .field("location", &self.shared.location.url)
            .finish()
    }
}

/// A file-system-safe folder name for a sink.
fn staging_folder(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.as_str() {
        "" | "." | ".." => "_sink".to_string(),
        _ => s,
    }
}

impl ParquetSink {
    /// Build a sink named `name` for rows of `schema` with validated options.
    pub fn new(
        ctx: &ConnectorContext,
        name: &str,
        schema: SchemaRef,
        options: ParquetSinkOptions,
    ) -> crate::Result<Self> {
        let config = options.validate(&schema)?;
        let location = storage::resolve(&config.options.path, &config.options.storage)?;
        let props = WriterProperties::builder()
            .set_compression(config.options.compression)
            .set_max_row_group_row_count(Some(config.options.row_group_size))
            .set_max_row_group_bytes(Some(MAX_ROW_GROUP_BYTES))
            .set_statistics_enabled(EnabledStatistics::Page)
            .build();
        let partitioner = Partitioner::new(
            &schema,
            &config.partition_indices,
            &config.file_indices,
            config.file_schema.clone(),
        );
        let staging = ctx.staging_dir.join(staging_folder(name));
        Ok(Self {
            shared: Arc::new(Shared {
                name: name.to_string(),
                config,
                location,
                staging,
                props,
                partitioner,
            }),
        })
    }

    /// A sink for dead letters (rows of
    /// [`strata_pipeline::bad_data::dead_letter_schema`]) at `location`:
    /// unpartitioned, ZSTD, default rollover.
    pub fn for_dead_letters(
        ctx: &ConnectorContext,
        name: &str,
        location: &str,
        storage: BTreeMap<String, String>,
    ) -> crate::Result<Arc<dyn Sink>> {
        let mut options = ParquetSinkOptions::new(location);
        options.storage = storage;
        Ok(Arc::new(Self::new(
            ctx,
            name,
            strata_pipeline::bad_data::dead_letter_schema(),
            options,
        )?))
    }

    /// The options the sink runs with.
    pub fn options(&self) -> &ParquetSinkOptions {
        &self.shared.config.options
    }

    /// Schema of the files (the input minus the partition columns).
    pub fn file_schema(&self) -> SchemaRef {
        self.shared.config.file_schema.clone()
    }
}

impl Shared {
    fn err(&self, message: impl std::fmt::Display) -> PipelineError {
        PipelineError::sink(&self.name, message)
    }

    /// Reject names that could escape the table's location.
    fn check_object(&self, object: &str) -> Result<(), PipelineError> {
        if object.is_empty()
            || object.starts_with('/')
            || object
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(self.err(format!(
                "refusing object name '{object}': not a relative path inside the table"
            )));
        }
        Ok(())
    }

    fn object_path(&self, object: &str) -> Result<ObjPath, PipelineError> {
        let prefix = self.location.prefix.as_ref();
        let full = if prefix.is_empty() {
            object.to_string()
        } else {
            format!("{prefix}/{object}")
        };
        ObjPath::parse(&full).map_err(|e| self.err(format!("invalid object name '{object}': {e}")))
    }

    async fn publish_file(&self, file: &StagedFile) -> Result<(), PipelineError> {
        self.check_object(&file.object)?;
        match &self.location.local_path {
            Some(root) => {
                let dest = root.join(&file.object);
                let staged = file.staged.clone();
                tokio::task::spawn_blocking(move || publish_local(&staged, &dest))
                    .await
                    .map_err(|e| self.err(format!("publish task failed: {e}")))?
            }
            None => self.publish_remote(file).await,
        }
    }

    async fn publish_remote(&self, file: &StagedFile) -> Result<(), PipelineError> {
        let path = self.object_path(&file.object)?;
        let store = &self.location.store;
        let os_err = |source| PipelineError::ObjectStore {
            location: format!(
                "{}/{}",
                self.location.url.trim_end_matches('/'),
                file.object
            ),
            source,
        };
        let io_err = |source| PipelineError::Io {
            path: file.staged.clone(),
            source,
        };
        if file.bytes <= UPLOAD_PART_BYTES as u64 {
            let data = tokio::fs::read(&file.staged).await.map_err(io_err)?;
            store
                .put(&path, PutPayload::from(data))
                .await
                .map_err(os_err)?;
            return Ok(());
        }
        let mut reader = tokio::fs::File::open(&file.staged).await.map_err(io_err)?;
        let upload = store.put_multipart(&path).await.map_err(os_err)?;
        let mut multipart = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
        let result: Result<(), PipelineError> = async {
            loop {
                let mut buf = BytesMut::zeroed(UPLOAD_PART_BYTES);
                let mut filled = 0;
                while filled < buf.len() {
                    let n = reader.read(&mut buf[filled..]).await.map_err(io_err)?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    return Ok(());
                }
                buf.truncate(filled);
                multipart
                    .wait_for_capacity(UPLOAD_CONCURRENCY)
                    .await
                    .map_err(os_err)?;
                multipart.put(buf.freeze());
                if filled < UPLOAD_PART_BYTES {
                    return Ok(());
                }
            }
        }
        .await;
        match result {
            // The object appears only when the upload completes.
            Ok(()) => multipart.finish().await.map(|_| ()).map_err(os_err),
            Err(e) => {
                if let Err(abort) = multipart.abort().await {
                    tracing::warn!(sink = %self.name, object = %file.object, error = %abort, "aborting multipart upload failed");
                }
                Err(e)
            }
        }
    }
}

/// Move a staged file to its local destination in one atomic step.
pub(crate) fn publish_local(staged: &Path, dest: &Path) -> Result<(), PipelineError> {
    let io = |path: &Path, source| PipelineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let parent = dest.parent().ok_or_else(|| {
        io(
            dest,
            std::io::Error::other("destination has no parent folder"),
        )
    })?;
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    match std::fs::rename(staged, dest) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            // Copy next to the destination under a hidden name (ignored by
            // Hive, Athena, DuckDB), make it durable, then rename into place.
            let file_name = dest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let tmp = parent.join(format!(".{file_name}.tmp"));
            let copy = || -> std::io::Result<()> {
                std::fs::copy(staged, &tmp)?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, dest)
            };
            if let Err(e) = copy() {
                let _ = std::fs::remove_file(&tmp);
                return Err(io(dest, e));
            }
            std::fs::remove_file(staged).map_err(|e| io(staged, e))
        }
        Err(e) => Err(io(dest, e)),
    }
}

#[async_trait]
impl Sink for ParquetSink {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn schema(&self) -> SchemaRef {
        self.shared.config.input_schema.clone()
    }

    async fn recover(&self) -> strata_pipeline::Result<()> {
        let staging = self.shared.staging.clone();
        tokio::task::spawn_blocking(move || {
            match std::fs::remove_dir_all(&staging) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(PipelineError::Io {
                        path: staging,
                        source: e,
                    })
                }
            }
            std::fs::create_dir_all(&staging).map_err(|e| PipelineError::Io {
                path: staging.clone(),
                source: e,
            })
        })
        .await
        .map_err(|e| self.shared.err(format!("recover task failed: {e}")))?
    }

    async fn begin_epoch(
        &self,
        epoch: &EpochInfo,
    ) -> strata_pipeline::Result<Box<dyn EpochWriter>> {
        if epoch.file_stem.is_empty()
            || epoch.file_stem.contains(['/', '\\'])
            || epoch.file_stem.starts_with('.')
        {
            return Err(self
                .shared
                .err(format!("invalid file stem '{}'", epoch.file_stem)));
        }
        let attempt = ATTEMPTS.fetch_add(1, Ordering::Relaxed);
        let dir = self.shared.staging.join(format!(
            "{}.{}.{attempt}",
            epoch.file_stem,
            std::process::id()
        ));
        let opts = &self.shared.config.options;
        let settings = Arc::new(FileSettings {
            sink: self.shared.name.clone(),
            file_schema: self.shared.config.file_schema.clone(),
            props: self.shared.props.clone(),
            rollover_rows: opts.rollover_rows,
            rollover_bytes: opts.rollover_bytes,
            rollover_interval: opts.rollover_interval,
            stem: epoch.file_stem.clone(),
            staging_dir: dir.clone(),
        });
        let span =
            tracing::info_span!("parquet_epoch", sink = %self.shared.name, epoch = epoch.epoch);
        Ok(Box::new(ParquetEpochWriter {
            shared: self.shared.clone(),
            settings,
            epoch: epoch.epoch,
            dir,
            partitions: HashMap::new(),
            failed: false,
            span,
        }))
    }

    async fn remove(&self, objects: &[String]) -> strata_pipeline::Result<()> {
        let shared = &self.shared;
        for object in objects {
            shared.check_object(object)?;
        }
        match &shared.location.local_path {
            Some(root) => {
                let paths: Vec<PathBuf> = objects.iter().map(|o| root.join(o)).collect();
                tokio::task::spawn_blocking(move || {
                    for p in paths {
                        match std::fs::remove_file(&p) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(PipelineError::Io { path: p, source: e }),
                        }
                    }
                    Ok(())
                })
                .await
                .map_err(|e| shared.err(format!("remove task failed: {e}")))?
            }
            None => {
                futures::stream::iter(objects.iter().map(Ok::<_, PipelineError>))
                    .try_for_each_concurrent(PUBLISH_CONCURRENCY, |object| async move {
                        let path = shared.object_path(object)?;
                        match shared.location.store.delete(&path).await {
                            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                            Err(source) => Err(PipelineError::ObjectStore {
                                location: format!(
                                    "{}/{object}",
                                    shared.location.url.trim_end_matches('/')
                                ),
                                source,
                            }),
                        }
                    })
                    .await
            }
        }
    }

    fn location(&self) -> String {
        self.shared.location.url.clone()
    }
}

/// A partition's encoder, busy with (or done with) its latest batch on a
/// blocking thread.
type Slot = JoinHandle<Result<Box<PartitionFiles>, PipelineError>>;

/// One epoch of a [`ParquetSink`].
pub struct ParquetEpochWriter {
    shared: Arc<Shared>,
    settings: Arc<FileSettings>,
    epoch: u64,
    dir: PathBuf,
    partitions: HashMap<String, Slot>,
    failed: bool,
    span: tracing::Span,
}

/// Wait for a partition's encoder to finish its batch.
async fn settle(shared: &Shared, slot: Slot) -> Result<Box<PartitionFiles>, PipelineError> {
    slot.await
        .map_err(|e| shared.err(format!("encoder task failed: {e}")))?
}

impl ParquetEpochWriter {
    async fn write_part(&mut self, folder: String, rows: RecordBatch) -> Result<(), PipelineError> {
        let mut files = match self.partitions.remove(&folder) {
            Some(slot) => settle(&self.shared, slot).await?,
            None => Box::new(PartitionFiles::new(self.settings.clone(), folder.clone())),
        };
        let handle = tokio::task::spawn_blocking(move || {
            files.write(&rows)?;
            Ok(files)
        });
        self.partitions.insert(folder, handle);
        Ok(())
    }

    async fn write_inner(&mut self, batch: RecordBatch) -> Result<(), PipelineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let parts = if self.shared.partitioner.is_partitioned() {
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || shared.partitioner.split(&batch))
                .await
                .map_err(|e| self.shared.err(format!("partitioning task failed: {e}")))??
        } else {
            vec![(String::new(), self.shared.partitioner.project(&batch)?)]
        };
        for (folder, rows) in parts {
            self.write_part(folder, rows).await?;
        }
        Ok(())
    }
}

/// `strata_sink_write_seconds{sink, stage}`: time spent encoding rows (`encode`), closing
/// an epoch's files (`finish`) and making them visible (`publish`).
fn record_stage(sink: &str, stage: &'static str, since: std::time::Instant) {
    metrics::histogram!("strata_sink_write_seconds", "sink" => sink.to_string(), "stage" => stage)
        .record(since.elapsed().as_secs_f64());
}

#[async_trait]
impl EpochWriter for ParquetEpochWriter {
    async fn write(&mut self, batch: RecordBatch) -> strata_pipeline::Result<()> {
        if self.failed {
            return Err(self.shared.err("an earlier write of this epoch failed"));
        }
        let span = self.span.clone();
        let t = std::time::Instant::now();
        let result = self.write_inner(batch).instrument(span).await;
        record_stage(&self.shared.name, "encode", t);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    async fn finish(mut self: Box<Self>) -> strata_pipeline::Result<Box<dyn StagedEpoch>> {
        if self.failed {
            return Err(self.shared.err("an earlier write of this epoch failed"));
        }
        let span = self.span.clone();
        let t = std::time::Instant::now();
        let partitions = std::mem::take(&mut self.partitions);
        let shared: &Shared = &self.shared;
        let files: Vec<Vec<StagedFile>> = futures::stream::iter(partitions.into_values())
            .map(|slot| async move {
                let files = settle(shared, slot).await?;
                tokio::task::spawn_blocking(move || files.finish())
                    .await
                    .map_err(|e| shared.err(format!("encoder task failed: {e}")))?
            })
            .buffer_unordered(PUBLISH_CONCURRENCY)
            .try_collect()
            .instrument(span.clone())
            .await?;
        let mut files: Vec<StagedFile> = files.into_iter().flatten().collect();
        files.sort_by(|a, b| a.object.cmp(&b.object));
        let rows: u64 = files.iter().map(|f| f.rows).sum();
        record_stage(&self.shared.name, "finish", t);
        tracing::debug!(parent: &span, files = files.len(), rows, "parquet epoch staged");
        let dir = std::mem::take(&mut self.dir);
        Ok(Box::new(ParquetStagedEpoch {
            shared: self.shared.clone(),
            epoch: self.epoch,
            files,
            dir,
            span,
        }))
    }
}

impl Drop for ParquetEpochWriter {
    fn drop(&mut self) {
        // An abandoned epoch: its staged files are never published.
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One epoch's staged files, ready to publish.
pub struct ParquetStagedEpoch {
    shared: Arc<Shared>,
    epoch: u64,
    files: Vec<StagedFile>,
    dir: PathBuf,
    span: tracing::Span,
}

#[async_trait]
impl StagedEpoch for ParquetStagedEpoch {
    fn objects(&self) -> Vec<String> {
        self.files.iter().map(|f| f.object.clone()).collect()
    }

    async fn publish(mut self: Box<Self>) -> strata_pipeline::Result<SinkStats> {
        let span = tracing::info_span!(parent: &self.span, "parquet_publish", sink = %self.shared.name, epoch = self.epoch, files = self.files.len());
        let files = std::mem::take(&mut self.files);
        let shared = &self.shared;
        let t = std::time::Instant::now();
        futures::stream::iter(files.iter().map(Ok::<_, PipelineError>))
            .try_for_each_concurrent(PUBLISH_CONCURRENCY, |file| async move {
                shared.publish_file(file).await
            })
            .instrument(span.clone())
            .await?;
        let stats = SinkStats {
            rows: files.iter().map(|f| f.rows).sum(),
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.bytes).sum(),
        };
        record_stage(&shared.name, "publish", t);
        let label = shared.name.clone();
        metrics::counter!("strata_sink_rows_total", "sink" => label.clone()).increment(stats.rows);
        metrics::counter!("strata_sink_files_total", "sink" => label.clone())
            .increment(stats.files);
        metrics::counter!("strata_sink_bytes_total", "sink" => label).increment(stats.bytes);
        tracing::info!(parent: &span, rows = stats.rows, files = stats.files, bytes = stats.bytes, location = %shared.location.url, "parquet epoch published");
        let dir = std::mem::take(&mut self.dir);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        Ok(stats)
    }
}

impl Drop for ParquetStagedEpoch {
    fn drop(&mut self) {
        // Staged but never published: drop the files (recover() would too).
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
