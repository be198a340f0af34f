//! One partition's files within one epoch: encodes batches with parquet's
//! [`ArrowWriter`] straight into a local staging file, rolls over to the next
//! file by rows, estimated bytes or age, and closes (and fsyncs) files at the
//! end of the epoch.
//!
//! Everything here is synchronous and CPU-bound: callers run it on a blocking
//! thread, never on a tokio worker. It never touches the table's location;
//! publishing staged files is `sink.rs`'s job. Memory per open file is
//! bounded by the row group being encoded (capped in rows and bytes).

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use strata_pipeline::PipelineError;

/// Rows handed to the encoder at a time, so byte rollover is checked often.
const WRITE_CHUNK_ROWS: usize = 16 * 1024;

/// Settings shared by every file of one epoch of one sink.
#[derive(Debug)]
pub struct FileSettings {
    /// Sink name, for errors.
    pub sink: String,
    /// Schema of the files.
    pub file_schema: SchemaRef,
    /// Parquet writer properties (compression, row group size, ...).
    pub props: WriterProperties,
    /// Close a file at this many rows.
    pub rollover_rows: u64,
    /// Close a file when its estimated size reaches this.
    pub rollover_bytes: u64,
    /// Close a file open longer than this.
    pub rollover_interval: Option<Duration>,
    /// The epoch's file stem.
    pub stem: String,
    /// Local directory of this epoch attempt's staged files.
    pub staging_dir: PathBuf,
}

/// A closed, staged file.
#[derive(Clone, Debug)]
pub struct StagedFile {
    /// Final name relative to the table location (`k=v/<stem>-00000.parquet`).
    pub object: String,
    /// Where the file sits in staging.
    pub staged: PathBuf,
    /// Rows in the file.
    pub rows: u64,
    /// Size of the file.
    pub bytes: u64,
}

struct OpenFile {
    writer: ArrowWriter<File>,
    object: String,
    staged: PathBuf,
    rows: u64,
    opened: Instant,
}

/// The files of one partition folder in one epoch.
pub struct PartitionFiles {
    settings: Arc<FileSettings>,
    /// Folder relative to the table (`""` when unpartitioned).
    folder: String,
    current: Option<OpenFile>,
    next_seq: u32,
    done: Vec<StagedFile>,
}

impl PartitionFiles {
    /// No file is created until the first row arrives.
    pub fn new(settings: Arc<FileSettings>, folder: String) -> Self {
        Self {
            settings,
            folder,
            current: None,
            next_seq: 0,
            done: Vec::new(),
        }
    }

    fn io_err(path: &std::path::Path, source: std::io::Error) -> PipelineError {
        PipelineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn parquet_err(&self, object: &str, e: parquet::errors::ParquetError) -> PipelineError {
        PipelineError::sink(
            &self.settings.sink,
            format!("encoding Parquet file '{object}': {e}"),
        )
    }

    fn open(&mut self) -> Result<&mut OpenFile, PipelineError> {
        let name = format!("{}-{:05}.parquet", self.settings.stem, self.next_seq);
        self.next_seq += 1;
        let object = if self.folder.is_empty() {
            name
        } else {
            format!("{}/{}", self.folder, name)
        };
        let staged = self.settings.staging_dir.join(&object);
        if let Some(parent) = staged.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Self::io_err(parent, e))?;
        }
        let file = File::create(&staged).map_err(|e| Self::io_err(&staged, e))?;
        let writer = ArrowWriter::try_new(
            file,
            self.settings.file_schema.clone(),
            Some(self.settings.props.clone()),
        )
        .map_err(|e| self.parquet_err(&object, e))?;
        Ok(self.current.insert(OpenFile {
            writer,
            object,
            staged,
            rows: 0,
            opened: Instant::now(),
        }))
    }

    fn close_current(&mut self) -> Result<(), PipelineError> {
        let Some(f) = self.current.take() else {
            return Ok(());
        };
        let file = f
            .writer
            .into_inner()
            .map_err(|e| self.parquet_err(&f.object, e))?;
        // Durable before it can be published: a crash after publish must
        // never leave a visible, truncated file.
        file.sync_all().map_err(|e| Self::io_err(&f.staged, e))?;
        let bytes = file
            .metadata()
            .map_err(|e| Self::io_err(&f.staged, e))?
            .len();
        self.done.push(StagedFile {
            object: f.object,
            staged: f.staged,
            rows: f.rows,
            bytes,
        });
        Ok(())
    }

    /// Encode `batch` (in the file schema), rolling over as configured.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), PipelineError> {
        let total = batch.num_rows();
        let mut offset = 0;
        while offset < total {
            if let (Some(f), Some(max_age)) = (&self.current, self.settings.rollover_interval) {
                if f.opened.elapsed() >= max_age {
                    self.close_current()?;
                }
            }
            let (rollover_rows, rollover_bytes) =
                (self.settings.rollover_rows, self.settings.rollover_bytes);
            let f = match self.current {
                Some(ref mut f) => f,
                None => self.open()?,
            };
            let room = usize::try_from(rollover_rows.saturating_sub(f.rows))
                .unwrap_or(usize::MAX)
                .max(1);
            let n = room.min(total - offset).min(WRITE_CHUNK_ROWS);
            let chunk = if offset == 0 && n == total {
                batch.clone()
            } else {
                batch.slice(offset, n)
            };
            if let Err(e) = f.writer.write(&chunk) {
                let object = f.object.clone();
                return Err(self.parquet_err(&object, e));
            }
            f.rows += n as u64;
            offset += n;
            let size = (f.writer.bytes_written() + f.writer.in_progress_size()) as u64;
            if f.rows >= rollover_rows || size >= rollover_bytes {
                self.close_current()?;
            }
        }
        Ok(())
    }

    /// Close the open file; return every file of the partition.
    pub fn finish(mut self) -> Result<Vec<StagedFile>, PipelineError> {
        self.close_current()?;
        Ok(std::mem::take(&mut self.done))
    }
}
