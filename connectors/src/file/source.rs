//! [`FileSource`]: the `file` connector's [`Source`]. Owns the file list, the
//! position (current file, offset, line), epoch accounting ([`SplitRange`]s),
//! checkpoint state and replay. Decoding belongs to the format modules; bad
//! records are only reported here, never acted on (the runtime applies the
//! `bad_data` policy).
//!
//! Splits are files, named by their canonical URL. JSON/CSV positions are byte
//! offsets with `first_record` the 1-based line number at the range's start;
//! Parquet positions are row indices with `first_record` the first row index.
//! An epoch may span several files (one range per file touched). State is
//! `{"file": URL, "offset": N, "line": N, "done": bool}`: at [`Source::open`]
//! the files are listed again and sorted, files before `file` are taken as
//! read, and files after it (also ones added since) are read. [`Source::replay`]
//! re-reads exactly the logged ranges with ranged GETs and moves the position
//! past them when they are ahead of it.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use strata_pipeline::{EpochLimits, PipelineError, Result, Source, SourceEpoch, SplitRange};

use super::csv::{read_header, CsvCodec};
use super::json::JsonCodec;
use super::listing::{self, FileEntry};
use super::options::{FileFormat, FileOptions};
use super::parquet_reader::ParquetCursor;
use super::text::{Step, TextCodec, TextCursor, READ_SIZE};

/// Checkpoint state of a [`FileSource`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// URL of the file the position is in (`None`: before the first file).
    pub file: Option<String>,
    /// Byte offset (JSON/CSV) or row index (Parquet) in `file`.
    pub offset: u64,
    /// Line number at `offset` (JSON/CSV; the row index for Parquet).
    pub line: u64,
    /// `file` has been read to its end.
    pub done: bool,
}

enum Reader {
    Text(TextCursor),
    Parquet(ParquetCursor),
}

impl Reader {
    fn position(&self) -> (u64, u64) {
        match self {
            Reader::Text(c) => c.position(),
            Reader::Parquet(c) => c.position(),
        }
    }
    async fn step(&mut self, max_records: u64, max_bytes: u64, force_one: bool) -> Result<Step> {
        match self {
            Reader::Text(c) => c.step(max_records, max_bytes, force_one).await,
            Reader::Parquet(c) => c.step(max_records, max_bytes, force_one).await,
        }
    }
    /// Whether the position is at the end of the whole file.
    fn file_done(&self) -> bool {
        match self {
            Reader::Text(c) => c.file_done(),
            Reader::Parquet(c) => c.file_done(),
        }
    }
}

/// What opening a reader on a file needs (shared, cheap to clone).
#[derive(Clone)]
struct Opener {
    name: String,
    schema: SchemaRef,
    format: FileFormat,
    options: Arc<FileOptions>,
    store: Arc<dyn ObjectStore>,
    /// Every Hive partition key seen at creation (Parquet).
    partition_keys: Arc<Vec<String>>,
    json: Arc<JsonCodec>,
    read_size: u64,
}

/// Reads JSON Lines, CSV or Parquet files in URL order.
pub struct FileSource {
    opener: Opener,
    name: String,
    schema: SchemaRef,
    format: FileFormat,
    options: Arc<FileOptions>,
    files: Vec<Arc<FileEntry>>,
    idx: usize,
    offset: u64,
    line: u64,
    reader: Option<Reader>,
}

impl FileSource {
    /// A source over `files` (as listed by [`listing::list`]) producing `schema`.
    pub(crate) fn new(
        name: &str,
        schema: SchemaRef,
        format: FileFormat,
        options: FileOptions,
        store: Arc<dyn ObjectStore>,
        files: Vec<Arc<FileEntry>>,
    ) -> Self {
        let mut partition_keys: Vec<String> = Vec::new();
        for f in &files {
            for (k, _) in &f.partitions {
                if !partition_keys.contains(k) {
                    partition_keys.push(k.clone());
                }
            }
        }
        let options = Arc::new(options);
        let opener = Opener {
            name: name.to_string(),
            schema: schema.clone(),
            format,
            options: options.clone(),
            store,
            partition_keys: Arc::new(partition_keys),
            json: Arc::new(JsonCodec::new(schema.clone())),
            read_size: READ_SIZE as u64,
        };
        let mut s = Self {
            opener,
            name: name.to_string(),
            schema,
            format,
            options,
            files,
            idx: 0,
            offset: 0,
            line: 0,
            reader: None,
        };
        (s.offset, s.line) = s.file_start();
        s
    }

    /// Read JSON/CSV files in GETs of `bytes` (default [`READ_SIZE`]).
    pub fn set_read_size(&mut self, bytes: u64) {
        self.opener.read_size = bytes.max(1);
        self.reader = None;
    }

    /// The files this source reads, in order.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.url.as_str())
    }

    fn file_start(&self) -> (u64, u64) {
        match self.format {
            FileFormat::Parquet => (0, 0),
            FileFormat::Json | FileFormat::Csv => (0, 1),
        }
    }

    fn state(&self) -> FileState {
        match (self.files.get(self.idx), self.files.last()) {
            (Some(f), _) => FileState {
                file: Some(f.url.clone()),
                offset: self.offset,
                line: self.line,
                done: false,
            },
            (None, Some(last)) => FileState {
                file: Some(last.url.clone()),
                offset: self.offset,
                line: self.line,
                done: true,
            },
            (None, None) => FileState::default(),
        }
    }

    fn position_of(&self, url: &str) -> std::result::Result<usize, usize> {
        self.files.binary_search_by(|f| f.url.as_str().cmp(url))
    }
}

impl Opener {
    /// A reader of `file` from (`offset`, `line`) to `end` (`None`: its end).
    async fn open(
        self,
        file: Arc<FileEntry>,
        offset: u64,
        line: u64,
        end: Option<u64>,
    ) -> Result<Reader> {
        let o = &self.options;
        Ok(match self.format {
            FileFormat::Json => {
                let end = end.unwrap_or(file.size);
                let codec: Arc<dyn TextCodec> = self.json.clone();
                Reader::Text(
                    TextCursor::new(
                        codec,
                        self.store.clone(),
                        file,
                        offset,
                        line,
                        end,
                        o.max_record_bytes,
                    )
                    .with_read_size(self.read_size),
                )
            }
            FileFormat::Csv => {
                let end = end.unwrap_or(file.size);
                let (mut offset, mut line) = (offset, line);
                let header = if o.csv_has_header {
                    match read_header(&self.store, &file, o.csv_delimiter, o.max_record_bytes)
                        .await?
                    {
                        Some(h) => {
                            if offset < h.end {
                                (offset, line) = (h.end, h.next_line);
                            }
                            Some(h.names)
                        }
                        None => None,
                    }
                } else {
                    None
                };
                let codec = CsvCodec::new(self.schema.clone(), header.as_deref(), o.csv_delimiter)
                    .map_err(|m| {
                        PipelineError::source(&self.name, format!("{}: {m}", file.display))
                    })?;
                let end = end.max(offset);
                Reader::Text(
                    TextCursor::new(
                        Arc::new(codec),
                        self.store.clone(),
                        file,
                        offset,
                        line,
                        end,
                        o.max_record_bytes,
                    )
                    .with_read_size(self.read_size),
                )
            }
            FileFormat::Parquet => Reader::Parquet(
                ParquetCursor::open(
                    &self.store,
                    file,
                    self.schema.clone(),
                    &self.partition_keys,
                    offset,
                    end,
                )
                .await?,
            ),
        })
    }
}

#[async_trait]
impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn size_hint(&self) -> Option<u64> {
        Some(self.files.iter().map(|f| f.size).sum())
    }

    async fn open(&mut self, state: Option<serde_json::Value>) -> Result<()> {
        let listing = listing::list(&self.options.path, &self.options.storage)
            .await
            .map_err(|e| PipelineError::source(&self.name, e))?;
        self.files = listing.files;
        self.opener.store = listing.root.store;
        self.reader = None;
        self.idx = 0;
        (self.offset, self.line) = self.file_start();
        let Some(state) = state else { return Ok(()) };
        let state: FileState = serde_json::from_value(state.clone()).map_err(|e| {
            PipelineError::source(
                &self.name,
                format!("unreadable file source state {state}: {e}"),
            )
        })?;
        let Some(url) = state.file else { return Ok(()) };
        match self.position_of(&url) {
            Ok(i) if state.done => self.idx = i + 1,
            Ok(i) => (self.idx, self.offset, self.line) = (i, state.offset, state.line),
            Err(i) => self.idx = i,
        }
        Ok(())
    }

    async fn read_epoch(&mut self, limits: &EpochLimits) -> Result<Option<SourceEpoch>> {
        if self.idx >= self.files.len() {
            return Ok(None);
        }
        let mut ep = SourceEpoch::default();
        let mut records_left = limits.max_rows.max(1) as u64;
        let mut bytes_left = limits.max_bytes.max(1) as u64;
        let mut epoch_records = 0u64;
        while self.idx < self.files.len() {
            let file = self.files[self.idx].clone();
            let mut reader = match self.reader.take() {
                Some(r) => r,
                None => {
                    self.opener
                        .clone()
                        .open(file.clone(), self.offset, self.line, None)
                        .await?
                }
            };
            let (start, first_record) = reader.position();
            let mut range_records = 0;
            let mut done = false;
            loop {
                let force = ep.bytes == 0 && epoch_records == 0;
                let step = reader.step(records_left, bytes_left, force).await?;
                let consumed = step.records > 0 || step.bytes > 0;
                range_records += step.records;
                epoch_records += step.records;
                records_left = records_left.saturating_sub(step.records);
                bytes_left = bytes_left.saturating_sub(step.bytes);
                ep.bytes += step.bytes;
                ep.batches
                    .extend(step.batches.into_iter().filter(|b| b.num_rows() > 0));
                ep.bad.extend(step.bad);
                if step.done {
                    done = true;
                    break;
                }
                if !consumed || records_left == 0 || bytes_left == 0 {
                    break;
                }
            }
            let (end, line) = reader.position();
            if end > start {
                ep.ranges.push(SplitRange {
                    split: file.url.clone(),
                    start,
                    end,
                    first_record,
                    records: range_records,
                });
            }
            (self.offset, self.line) = (end, line);
            if !done {
                self.reader = Some(reader);
                break;
            }
            self.idx += 1;
            if self.idx < self.files.len() {
                (self.offset, self.line) = self.file_start();
            }
            if records_left == 0 || bytes_left == 0 {
                break;
            }
        }
        ep.state_after =
            serde_json::to_value(self.state()).map_err(|e| PipelineError::source(&self.name, e))?;
        Ok(Some(ep))
    }

    async fn replay(&mut self, ranges: &[SplitRange]) -> Result<SourceEpoch> {
        let mut ep = SourceEpoch {
            ranges: ranges.to_vec(),
            ..Default::default()
        };
        let mut last: Option<(usize, u64, u64, bool)> = None;
        for range in ranges {
            let idx = self.position_of(&range.split).map_err(|_| {
                PipelineError::source(
                    &self.name,
                    format!(
                        "cannot replay {}: the file is no longer listed under '{}'",
                        range.split, self.options.path
                    ),
                )
            })?;
            let file = self.files[idx].clone();
            let mut reader = self
                .opener
                .clone()
                .open(file, range.start, range.first_record, Some(range.end))
                .await?;
            loop {
                let step = reader.step(u64::MAX, u64::MAX, true).await?;
                ep.bytes += step.bytes;
                ep.batches
                    .extend(step.batches.into_iter().filter(|b| b.num_rows() > 0));
                ep.bad.extend(step.bad);
                if step.done || (step.records == 0 && step.bytes == 0) {
                    break;
                }
            }
            let (end, line) = reader.position();
            last = Some((idx, end, line, reader.file_done()));
        }
        if let Some((idx, end, line, file_done)) = last {
            if (idx, end) >= (self.idx, self.offset) {
                self.reader = None;
                if file_done {
                    self.idx = idx + 1;
                    (self.offset, self.line) = if self.idx < self.files.len() {
                        self.file_start()
                    } else {
                        (end, line)
                    };
                } else {
                    (self.idx, self.offset, self.line) = (idx, end, line);
                }
            }
        }
        ep.state_after =
            serde_json::to_value(self.state()).map_err(|e| PipelineError::source(&self.name, e))?;
        Ok(ep)
    }
}
