//! Reading line-oriented formats (JSON Lines, CSV) from one file: ranged GETs of
//! [`READ_SIZE`] bytes (the next one prefetched while the current one decodes),
//! framing into records, and decoding whole chunks at once with a
//! [`TextCodec`]. When a chunk fails to decode it is bisected until the bad
//! records are isolated, so good records around a bad one survive and every bad
//! one is reported with its own reason and position.
//!
//! Positions are byte offsets into the file; line numbers are 1-based and count
//! every line (blank lines and quoted newlines included). Blank lines are
//! skipped: they are neither records nor errors. A record longer than
//! `max_record_bytes` is a bad record whose `raw` holds its first
//! `max_record_bytes` bytes, so memory stays bounded. This module knows nothing
//! about a particular format; codecs (`json.rs`, `csv.rs`) do.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_pipeline::{BadRecord, PipelineError};
use tokio::task::JoinHandle;

use super::listing::FileEntry;

/// Bytes fetched per ranged GET.
pub const READ_SIZE: usize = 8 << 20;

/// Progress of the scan for the end of the record at the start of the buffer.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanState {
    /// Buffer index scanned up to.
    pub pos: usize,
    /// Whether the scan is inside a quoted field (CSV).
    pub in_quotes: bool,
    /// Newlines inside the record so far (quoted newlines in CSV).
    pub newlines: u64,
}

/// A format's record framing, decoding and error diagnosis.
pub trait TextCodec: Send + Sync + 'static {
    /// Continue scanning `buf` from `state.pos` for the `\n` that ends the record;
    /// return its index, or `None` (with `state` updated) when `buf` ends first.
    fn find_terminator(&self, buf: &[u8], state: &mut ScanState) -> Option<usize>;
    /// Whether a line (terminator excluded) holds no record.
    fn is_blank(&self, content: &[u8]) -> bool;
    /// Decode `data`, which holds exactly `rows` records (blank lines between
    /// them allowed), into one batch in the source schema. Any failure, including
    /// a different number of records, is an `Err` with the decoder's message.
    fn decode(&self, data: &[u8], rows: usize) -> Result<RecordBatch, String>;
    /// Explain, for a user, why one record (terminator excluded) does not decode.
    fn diagnose(&self, record: &[u8], decode_error: &str) -> String;
}

/// A complete record inside the buffer.
#[derive(Clone, Copy, Debug)]
struct Rec {
    start: usize,
    end: usize,
    line: u64,
}

/// What one [`TextCursor::step`] read.
#[derive(Debug, Default)]
pub struct Step {
    /// Good records.
    pub batches: Vec<RecordBatch>,
    /// Bad records.
    pub bad: Vec<BadRecord>,
    /// Records consumed (good and bad; blank lines excluded).
    pub records: u64,
    /// Bytes consumed (blank lines and terminators included).
    pub bytes: u64,
    /// The cursor reached its end.
    pub done: bool,
}

/// A record longer than `max_record_bytes` being skipped.
struct Skip {
    raw: Vec<u8>,
    len: u64,
}

/// Reads records of one file from a position up to an end offset.
pub struct TextCursor {
    codec: Arc<dyn TextCodec>,
    store: Arc<dyn ObjectStore>,
    file: Arc<FileEntry>,
    buf: Vec<u8>,
    /// File offset of `buf[0]`: the start of the next record.
    offset: u64,
    /// Line number at `offset`.
    line: u64,
    /// Where to stop (file size or the end of a replayed range).
    end: u64,
    /// File offset of the end of `buf`.
    fetched: u64,
    scan: ScanState,
    prefetch: Option<(u64, JoinHandle<object_store::Result<Bytes>>)>,
    max_record: usize,
    read_size: u64,
    recs: Vec<Rec>,
}

impl Drop for TextCursor {
    fn drop(&mut self) {
        if let Some((_, h)) = self.prefetch.take() {
            h.abort();
        }
    }
}

impl TextCursor {
    /// A cursor at byte `offset` (line `line`) of `file`, stopping at `end`.
    pub fn new(
        codec: Arc<dyn TextCodec>,
        store: Arc<dyn ObjectStore>,
        file: Arc<FileEntry>,
        offset: u64,
        line: u64,
        end: u64,
        max_record: u64,
    ) -> Self {
        Self {
            codec,
            store,
            file,
            buf: Vec::new(),
            offset,
            line,
            end,
            fetched: offset,
            scan: ScanState::default(),
            prefetch: None,
            max_record: usize::try_from(max_record).unwrap_or(usize::MAX),
            read_size: READ_SIZE as u64,
            recs: Vec::new(),
        }
    }

    /// Use GETs of `bytes` instead of [`READ_SIZE`] (tests exercise chunk edges).
    pub fn with_read_size(mut self, bytes: u64) -> Self {
        self.read_size = bytes.max(1);
        self
    }

    /// Whether the position is at the end of the file (not just of the range).
    pub fn file_done(&self) -> bool {
        self.offset >= self.file.size
    }

    /// Current position: (byte offset of the next record, its line number).
    pub fn position(&self) -> (u64, u64) {
        (self.offset, self.line)
    }

    fn read_err(&self, e: impl std::fmt::Display) -> PipelineError {
        PipelineError::Storage {
            location: self.file.url.clone(),
            message: format!("read failed: {e}"),
        }
    }

    /// Append the next chunk of the file to the buffer (and prefetch the one after).
    async fn fetch(&mut self) -> strata_pipeline::Result<()> {
        let chunk = match self.prefetch.take() {
            Some((start, h)) if start == self.fetched => h
                .await
                .map_err(|e| self.read_err(e))?
                .map_err(|e| self.read_err(e))?,
            other => {
                if let Some((_, h)) = other {
                    h.abort();
                }
                let to = (self.fetched + self.read_size).min(self.end);
                self.store
                    .get_range(&self.file.path, self.fetched..to)
                    .await
                    .map_err(|e| self.read_err(e))?
            }
        };
        if chunk.is_empty() {
            return Err(self.read_err(format!(
                "file ended at byte {} before its listed size {}",
                self.fetched, self.end
            )));
        }
        self.fetched += chunk.len() as u64;
        if self.buf.is_empty() {
            self.buf = Vec::from(chunk);
        } else {
            self.buf.extend_from_slice(&chunk);
        }
        if self.fetched < self.end {
            let (store, path, start) = (self.store.clone(), self.file.path.clone(), self.fetched);
            let read_size = self.read_size;
            let to = (start + read_size).min(self.end);
            self.prefetch = Some((
                start,
                tokio::spawn(async move { store.get_range(&path, start..to).await }),
            ));
        }
        Ok(())
    }

    /// Read records from the position: at most `max_records` and, unless
    /// `force_one` lets a first record exceed it, `max_bytes` bytes.
    pub async fn step(
        &mut self,
        max_records: u64,
        max_bytes: u64,
        force_one: bool,
    ) -> strata_pipeline::Result<Step> {
        let mut step = Step::default();
        loop {
            if self.offset >= self.end {
                step.done = true;
                return Ok(step);
            }
            let eof = self.fetched >= self.end;
            let mut recs = std::mem::take(&mut self.recs);
            recs.clear();
            let mut pos = 0usize;
            let mut line = self.line;
            let mut budget_hit = false;
            let mut oversize_open = false;
            while step.records < max_records {
                let term = self.codec.find_terminator(&self.buf, &mut self.scan);
                let (content_end, next) = match term {
                    Some(t) => (t, t + 1),
                    None if eof => (self.buf.len(), self.buf.len()),
                    None => {
                        oversize_open = self.buf.len() - pos > self.max_record;
                        break;
                    }
                };
                let len = (next - pos) as u64;
                if step.bytes + len > max_bytes && !(force_one && step.bytes == 0) {
                    budget_hit = true;
                    break;
                }
                let content = &self.buf[pos..content_end];
                if self.codec.is_blank(content) {
                    // not a record
                } else if content.len() > self.max_record {
                    step.bad.push(self.oversize(
                        pos as u64,
                        line,
                        content[..self.max_record].to_vec(),
                        content.len() as u64,
                    ));
                    step.records += 1;
                } else {
                    recs.push(Rec {
                        start: pos,
                        end: content_end,
                        line,
                    });
                    step.records += 1;
                }
                step.bytes += len;
                line += 1 + self.scan.newlines;
                pos = next;
                self.scan = ScanState {
                    pos,
                    ..ScanState::default()
                };
                if pos >= self.buf.len() {
                    break;
                }
            }
            if pos > 0 {
                if !recs.is_empty() {
                    self.decode(&mut recs, &mut step).await?;
                }
                self.recs = recs;
                self.buf.drain(..pos);
                self.scan.pos = self.scan.pos.saturating_sub(pos);
                if budget_hit {
                    self.scan = ScanState::default();
                }
                self.offset += pos as u64;
                self.line = line;
                step.done = self.offset >= self.end;
                return Ok(step);
            }
            self.recs = recs;
            if budget_hit || step.records >= max_records {
                self.scan = ScanState::default();
                return Ok(step);
            }
            if oversize_open {
                self.skip_oversize(&mut step).await?;
                step.done = self.offset >= self.end;
                return Ok(step);
            }
            self.fetch().await?;
        }
    }

    fn oversize(&self, rel: u64, line: u64, raw: Vec<u8>, len: u64) -> BadRecord {
        BadRecord {
            raw,
            reason: format!(
                "record is {len} bytes, more than max_record_bytes ({}); raw holds its first {} bytes",
                self.max_record, self.max_record
            ),
            split: self.file.url.clone(),
            position: self.offset + rel,
            location: format!("{}:{line}", self.file.display),
        }
    }

    /// The record at the start of the buffer is longer than `max_record_bytes`
    /// and not complete yet: read on to its end without keeping it.
    async fn skip_oversize(&mut self, step: &mut Step) -> strata_pipeline::Result<()> {
        let mut skip = Skip {
            raw: self.buf[..self.max_record].to_vec(),
            len: 0,
        };
        loop {
            match self.codec.find_terminator(&self.buf, &mut self.scan) {
                Some(t) => {
                    skip.len += t as u64;
                    let bad = self.oversize(0, self.line, std::mem::take(&mut skip.raw), skip.len);
                    step.bad.push(bad);
                    step.records += 1;
                    step.bytes += skip.len + 1;
                    self.line += 1 + self.scan.newlines;
                    self.offset += skip.len + 1;
                    self.buf.drain(..t + 1);
                    self.scan = ScanState::default();
                    return Ok(());
                }
                None if self.fetched >= self.end => {
                    skip.len += self.buf.len() as u64;
                    let bad = self.oversize(0, self.line, std::mem::take(&mut skip.raw), skip.len);
                    step.bad.push(bad);
                    step.records += 1;
                    step.bytes += skip.len;
                    self.line += 1 + self.scan.newlines;
                    self.offset += skip.len;
                    self.buf.clear();
                    self.scan = ScanState::default();
                    return Ok(());
                }
                None => {
                    skip.len += self.buf.len() as u64;
                    self.buf.clear();
                    self.scan.pos = 0;
                    self.fetch().await?;
                }
            }
        }
    }

    /// Decode the framed records on the blocking pool (CPU work stays off the
    /// async workers).
    async fn decode(
        &mut self,
        recs: &mut Vec<Rec>,
        step: &mut Step,
    ) -> strata_pipeline::Result<()> {
        let codec = self.codec.clone();
        let buf = std::mem::take(&mut self.buf);
        let taken = std::mem::take(recs);
        let (file, offset) = (self.file.clone(), self.offset);
        let (buf, taken, batches, bad) = tokio::task::spawn_blocking(move || {
            let mut batches = Vec::new();
            let mut bad = Vec::new();
            decode_recs(&*codec, &buf, &taken, &file, offset, &mut batches, &mut bad);
            (buf, taken, batches, bad)
        })
        .await
        .map_err(|e| PipelineError::source(&self.file.url, format!("decoder task failed: {e}")))?;
        self.buf = buf;
        *recs = taken;
        step.batches.extend(batches);
        // Oversize records were pushed while framing; keep bad records in file order.
        step.bad.extend(bad);
        step.bad.sort_by_key(|b| b.position);
        Ok(())
    }
}

/// Decode `recs` as one chunk; on failure bisect until each bad record is alone.
fn decode_recs(
    codec: &dyn TextCodec,
    buf: &[u8],
    recs: &[Rec],
    file: &FileEntry,
    offset: u64,
    batches: &mut Vec<RecordBatch>,
    bad: &mut Vec<BadRecord>,
) {
    let (Some(first), Some(last)) = (recs.first(), recs.last()) else {
        return;
    };
    match codec.decode(&buf[first.start..last.end], recs.len()) {
        Ok(batch) => batches.push(batch),
        Err(e) if recs.len() == 1 => {
            let raw = &buf[first.start..first.end];
            bad.push(BadRecord {
                raw: raw.to_vec(),
                reason: codec.diagnose(raw, &e),
                split: file.url.clone(),
                position: offset + first.start as u64,
                location: format!("{}:{}", file.display, first.line),
            });
        }
        Err(_) => {
            let mid = recs.len() / 2;
            decode_recs(codec, buf, &recs[..mid], file, offset, batches, bad);
            decode_recs(codec, buf, &recs[mid..], file, offset, batches, bad);
        }
    }
}
