//! Event-time window aggregates: `INSERT INTO t SELECT ... GROUP BY tumble(ts, size), ...`.
//!
//! Owns window state and when windows close. The planner splits such a query at its
//! aggregate: the **input** (the rows the aggregate reads, cut to the columns it uses) runs on
//! every epoch; its rows join the **state**; the rows of every window whose end (plus
//! `window.allowed_lateness`) the **watermark** has passed are handed to the **output** plan
//! (the aggregate and what is above it), which runs over exactly those rows, once, and they
//! leave the state. The watermark is the largest event time seen minus the source's
//! `WATERMARK FOR ts AS ts - INTERVAL ...` delay; a bounded source's end of input closes every
//! window. A row whose window has already been emitted is late: it is counted
//! (`strata_window_late_rows_total`) and logged, never added to an emitted window.
//!
//! Exactly once: the state is part of the epoch's checkpoint. Each epoch writes the rows it
//! added (`windows/<insert>/rows/<epoch>.arrow`, Arrow IPC) and the watermark with the list of
//! epochs whose rows are still open (`windows/<insert>/meta/<epoch>.json`) before the epoch
//! commits; a restart loads the committed epoch's meta and the open rows of those files, and
//! a replayed epoch recomputes from the same state, so it emits the same windows into the
//! same files. Each row is written to the checkpoint once, so the cost stays linear in the
//! input however long windows stay open.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::collect;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::table::EpochTable;
use crate::{PipelineError, Result};

/// How one windowed insert is split and when its windows close.
pub struct WindowBinding {
    /// The aggregate's input, run on each epoch's rows.
    pub input: LogicalPlan,
    /// The table the output plan reads: the rows of the windows closing now.
    pub state_table: Arc<EpochTable>,
    /// Index of the event-time column in `input`'s output.
    pub time_column: usize,
    /// Window length in microseconds.
    pub size_micros: i64,
    /// `SET window.allowed_lateness`: windows stay open this long past their end.
    pub lateness_micros: i64,
    /// The source's watermark delay; `None` when it declares no watermark (windows then close
    /// only at the end of a bounded input).
    pub watermark_delay_micros: Option<i64>,
    /// The source's name and dead letter (`bad_data = 'dead_letter'`), where late rows go.
    pub dead_letter: Option<(String, Arc<dyn crate::Sink>)>,
    state: Mutex<WindowState>,
}

impl std::fmt::Debug for WindowBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowBinding")
            .field("time_column", &self.time_column)
            .field("size_micros", &self.size_micros)
            .field("lateness_micros", &self.lateness_micros)
            .field("watermark_delay_micros", &self.watermark_delay_micros)
            .field(
                "dead_letter",
                &self.dead_letter.as_ref().map(|(s, d)| (s, d.location())),
            )
            .finish()
    }
}

#[derive(Debug, Default)]
struct WindowState {
    /// Open rows, with the epoch that added them.
    rows: Vec<(u64, RecordBatch)>,
    meta: WindowMeta,
}

/// The part of the window state written as JSON each epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowMeta {
    /// Event-time watermark (µs since the epoch); `None` before any row.
    pub watermark: Option<i64>,
    /// Largest event time seen.
    pub max_event: Option<i64>,
    /// Epochs whose row files still hold open rows.
    pub live: Vec<u64>,
    /// Late rows so far.
    pub late_rows: u64,
}

/// What one epoch did to a window's state, to be made durable with the epoch.
#[derive(Debug)]
pub struct WindowDelta {
    /// Rows the epoch added to the state (written as the epoch's row file when non-empty).
    pub added: Vec<RecordBatch>,
    /// The state after the epoch.
    pub meta: WindowMeta,
    /// Row files no longer needed once the epoch commits.
    pub dead: Vec<u64>,
    /// Late rows, as dead-letter records, when the source has a dead letter.
    pub late: Option<RecordBatch>,
}

impl WindowBinding {
    /// A binding with empty state.
    pub fn new(
        input: LogicalPlan,
        state_table: Arc<EpochTable>,
        time_column: usize,
        size_micros: i64,
        lateness_micros: i64,
        watermark_delay_micros: Option<i64>,
        dead_letter: Option<(String, Arc<dyn crate::Sink>)>,
    ) -> Self {
        Self {
            input,
            state_table,
            time_column,
            size_micros,
            lateness_micros,
            watermark_delay_micros,
            dead_letter,
            state: Mutex::default(),
        }
    }

    /// Late rows as dead-letter records of the source: the row (the columns the aggregate
    /// reads) as a JSON line, and why.
    fn late_records(
        &self,
        sink: &str,
        epoch: u64,
        late: &[RecordBatch],
        watermark: Option<i64>,
    ) -> Result<Vec<crate::BadRecord>> {
        let mut out = Vec::new();
        for b in late {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                w.write(b).map_err(|e| window_err(e.to_string()))?;
                w.finish().map_err(|e| window_err(e.to_string()))?;
            }
            let times = self.times(b)?;
            for (i, line) in buf
                .split(|c| *c == b'\n')
                .filter(|l| !l.is_empty())
                .enumerate()
            {
                let reason = match (times.is_valid(i).then(|| times.value(i)), watermark) {
                    (None, _) => "late row: no event time, so it belongs to no window".to_string(),
                    (Some(t), w) => format!(
                        "late row: its window [{}, {}) was already emitted (watermark {}, window.allowed_lateness {} s)",
                        micros_text(t.div_euclid(self.size_micros) * self.size_micros),
                        micros_text(t.div_euclid(self.size_micros) * self.size_micros + self.size_micros),
                        w.map(micros_text).unwrap_or_else(|| "none".into()),
                        self.lateness_micros / 1_000_000
                    ),
                };
                out.push(crate::BadRecord {
                    raw: line.to_vec(),
                    reason,
                    split: format!("window:{sink}"),
                    position: epoch,
                    location: format!("INSERT INTO {sink}, epoch {epoch}"),
                });
            }
        }
        Ok(out)
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(self.input.schema().as_arrow().clone())
    }

    /// The time after which the window of an event at `ts` may be emitted.
    fn closes_at(&self, ts: i64) -> i64 {
        ts.div_euclid(self.size_micros)
            .saturating_mul(self.size_micros)
            .saturating_add(self.size_micros)
            .saturating_add(self.lateness_micros)
    }

    fn times(&self, batch: &RecordBatch) -> Result<TimestampMicrosecondArray> {
        let col = batch.column(self.time_column);
        let micros = cast(col, &DataType::Timestamp(TimeUnit::Microsecond, None))
            .map_err(|e| window_err(format!("event time: {e}")))?;
        Ok(micros
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("cast to Timestamp(µs)")
            .clone())
    }

    /// Rows of `batch` whose window closes at or before `watermark` (`keep = false`), or
    /// after it (`keep = true`). Rows without an event time count as closed.
    fn split(
        &self,
        batch: &RecordBatch,
        watermark: Option<i64>,
        keep: bool,
    ) -> Result<RecordBatch> {
        let times = self.times(batch)?;
        let mask: BooleanArray = times
            .iter()
            .map(|t| {
                let closed = match (t, watermark) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(t), Some(w)) => self.closes_at(t) <= w,
                };
                Some(closed != keep)
            })
            .collect();
        filter_record_batch(batch, &mask).map_err(|e| window_err(e.to_string()))
    }

    /// Run one epoch: absorb the epoch's rows (the source tables are already set), advance
    /// the watermark (to the end of time when `end_of_input`), and put the rows of the
    /// windows that close into [`Self::state_table`] for the output plan. The caller runs the
    /// output plan, then calls [`Self::after_output`].
    pub async fn absorb(
        &self,
        ctx: &SessionContext,
        sink: &str,
        epoch: u64,
        end_of_input: bool,
    ) -> Result<WindowDelta> {
        let exec = |e| PipelineError::Execution {
            sink: sink.to_string(),
            source: e,
        };
        let physical = ctx
            .state()
            .create_physical_plan(&self.input)
            .await
            .map_err(exec)?;
        let batches = collect(physical, ctx.task_ctx()).await.map_err(exec)?;

        let mut state = self.state.lock().expect("window state lock");
        // Late rows: their window was emitted already.
        let before = state.meta.watermark;
        let mut added = Vec::new();
        let mut late = 0usize;
        let mut late_rows = Vec::new();
        for b in &batches {
            let kept = self.split(b, before, true)?;
            late += b.num_rows() - kept.num_rows();
            if kept.num_rows() < b.num_rows() && self.dead_letter.is_some() {
                late_rows.push(self.split(b, before, false)?);
            }
            if kept.num_rows() > 0 {
                let times = self.times(&kept)?;
                let max = arrow::compute::max(&times);
                state.meta.max_event = state.meta.max_event.max(max);
                added.push(kept);
            }
        }
        if late > 0 {
            state.meta.late_rows += late as u64;
            metrics::counter!("strata_window_late_rows_total", "sink" => sink.to_string())
                .increment(late as u64);
            tracing::warn!(sink, epoch, late, watermark = ?before, dead_lettered = self.dead_letter.is_some(), "rows for windows already emitted (or without event time) were not added to any window; raise window.allowed_lateness or the source's WATERMARK delay to keep them");
        }
        let late_batch = match &self.dead_letter {
            Some((source, _)) if !late_rows.is_empty() => {
                let records = self.late_records(sink, epoch, &late_rows, before)?;
                let now = chrono::Utc::now().timestamp_micros();
                Some(crate::bad_data::dead_letter_batch(source, &records, now))
            }
            _ => None,
        };
        for b in &added {
            state.rows.push((epoch, b.clone()));
        }
        // Advance the watermark; it never goes back.
        let candidate = if end_of_input {
            Some(i64::MAX)
        } else {
            match (self.watermark_delay_micros, state.meta.max_event) {
                (Some(delay), Some(max)) => Some(max.saturating_sub(delay)),
                _ => None,
            }
        };
        state.meta.watermark = state.meta.watermark.max(candidate);
        let watermark = state.meta.watermark;

        let mut closed = Vec::new();
        let mut open = Vec::new();
        for (e, b) in std::mem::take(&mut state.rows) {
            let c = self.split(&b, watermark, false)?;
            if c.num_rows() == b.num_rows() {
                closed.push(b);
                continue;
            }
            if c.num_rows() > 0 {
                closed.push(c);
            }
            open.push((e, self.split(&b, watermark, true)?));
        }
        let was_live: BTreeSet<u64> = state.meta.live.iter().copied().collect();
        let live: BTreeSet<u64> = open.iter().map(|(e, _)| *e).collect();
        state.rows = open;
        state.meta.live = live.iter().copied().collect();
        let meta = state.meta.clone();

        let open_rows: usize = state.rows.iter().map(|(_, b)| b.num_rows()).sum();
        drop(state);

        self.state_table.set(&closed).map_err(exec)?;
        metrics::gauge!("strata_window_open_rows", "sink" => sink.to_string())
            .set(open_rows as f64);
        Ok(WindowDelta {
            added,
            meta,
            dead: was_live.difference(&live).copied().collect(),
            late: late_batch,
        })
    }

    /// The output plan has run: drop the closed rows it read.
    pub fn after_output(&self, sink: &str) -> Result<()> {
        self.state_table
            .clear()
            .map_err(|e| PipelineError::Execution {
                sink: sink.to_string(),
                source: e,
            })
    }

    /// Make an epoch's state durable (before the epoch commits).
    pub async fn persist(
        &self,
        checkpoint: &Checkpoint,
        insert: usize,
        epoch: u64,
        delta: &WindowDelta,
    ) -> Result<()> {
        if !delta.added.is_empty() {
            let mut buf = Vec::new();
            {
                let mut w = FileWriter::try_new(&mut buf, &self.schema())
                    .map_err(|e| window_err(e.to_string()))?;
                for b in &delta.added {
                    w.write(b).map_err(|e| window_err(e.to_string()))?;
                }
                w.finish().map_err(|e| window_err(e.to_string()))?;
            }
            checkpoint
                .put_bytes(&rows_dir(insert), epoch, "arrow", buf)
                .await?;
        }
        checkpoint.put(&meta_dir(insert), epoch, &delta.meta).await
    }

    /// After the epoch committed: remove the row files no open row needs.
    pub async fn prune(&self, checkpoint: &Checkpoint, insert: usize, delta: &WindowDelta) {
        for e in &delta.dead {
            checkpoint.delete(&rows_dir(insert), *e, "arrow").await;
        }
    }

    /// Load the state as of committed epoch `epoch` (none: empty state).
    pub async fn restore(
        &self,
        checkpoint: &Checkpoint,
        insert: usize,
        epoch: Option<u64>,
    ) -> Result<()> {
        let Some(epoch) = epoch else { return Ok(()) };
        let Some(meta) = checkpoint
            .get::<WindowMeta>(&meta_dir(insert), epoch)
            .await?
        else {
            return Ok(());
        };
        let mut rows = Vec::new();
        for e in &meta.live {
            let bytes = checkpoint
                .get_bytes(&rows_dir(insert), *e, "arrow")
                .await?
                .ok_or_else(|| {
                    window_err(format!(
                        "the window rows of epoch {e} are missing from the checkpoint; it is damaged: restore it or start over with a new --checkpoint"
                    ))
                })?;
            let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
                .map_err(|e| window_err(e.to_string()))?;
            for b in reader {
                let b = b.map_err(|e| window_err(e.to_string()))?;
                let open = self.split(&b, meta.watermark, true)?;
                if open.num_rows() > 0 {
                    rows.push((*e, open));
                }
            }
        }
        let n: usize = rows.iter().map(|(_, b)| b.num_rows()).sum();
        tracing::info!(insert, epoch, open_rows = n, watermark = ?meta.watermark, "window state restored");
        let mut state = self.state.lock().expect("window state lock");
        state.rows = rows;
        state.meta = meta;
        Ok(())
    }
}

/// `2026-11-01T07:00:00Z`.
fn micros_text(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| micros.to_string())
}

fn rows_dir(insert: usize) -> String {
    format!("windows/{insert}/rows")
}

fn meta_dir(insert: usize) -> String {
    format!("windows/{insert}/meta")
}

fn window_err(message: String) -> PipelineError {
    PipelineError::Window { message }
}
