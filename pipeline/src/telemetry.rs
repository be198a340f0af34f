//! Telemetry: named events (a struct per event: log line + metrics), the run
//! summary, and progress (an indicatif bar on a terminal, periodic log lines
//! otherwise).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::sink::SinkStats;

/// Per-source counts: every consumed record is accounted for.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceSummary {
    /// Records consumed (good and bad).
    pub records: u64,
    /// Good records handed to the queries.
    pub rows: u64,
    /// Bad records written to the dead letter.
    pub dead_lettered: u64,
    /// Bad records dropped by policy.
    pub dropped: u64,
    /// Input bytes consumed.
    pub bytes: u64,
}

/// Per-sink figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SinkSummary {
    /// Where the sink writes.
    pub location: String,
    /// Rows, files and bytes published.
    #[serde(flatten)]
    pub stats: SinkStats,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every bounded source was read to its end.
    Completed,
    /// Stopped on a signal after committing the current epoch.
    Drained,
}

/// The summary printed at the end of every run.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Job name.
    pub job: String,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Epochs committed by this process (replays included).
    pub epochs: u64,
    /// Of which replays of an epoch interrupted by an earlier process.
    pub replayed_epochs: u64,
    /// Per source.
    pub sources: BTreeMap<String, SourceSummary>,
    /// Per sink.
    pub sinks: BTreeMap<String, SinkSummary>,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
}

impl std::fmt::Display for RunSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = match self.outcome {
            RunOutcome::Completed => "completed",
            RunOutcome::Drained => "drained on signal",
        };
        writeln!(
            f,
            "job '{}' {outcome}: {} epoch(s){} in {:.1}s",
            self.job,
            self.epochs,
            if self.replayed_epochs > 0 {
                format!(" ({} replayed after a restart)", self.replayed_epochs)
            } else {
                String::new()
            },
            self.elapsed_secs
        )?;
        for (name, s) in &self.sources {
            let rate = if self.elapsed_secs > 0.0 {
                s.records as f64 / self.elapsed_secs
            } else {
                0.0
            };
            writeln!(
                f,
                "  source {name}: {} records ({} rows, {} dead-lettered, {} dropped), {}, {rate:.0} records/s",
                s.records,
                s.rows,
                s.dead_lettered,
                s.dropped,
                human_bytes(s.bytes)
            )?;
        }
        for (name, s) in &self.sinks {
            writeln!(
                f,
                "  sink {name}: {} rows in {} file(s), {} -> {}",
                s.stats.rows,
                s.stats.files,
                human_bytes(s.stats.bytes),
                s.location
            )?;
        }
        Ok(())
    }
}

/// `1.5 MiB`-style sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Event: an epoch committed.
pub struct EpochCommitted<'a> {
    /// Job name.
    pub job: &'a str,
    /// Epoch number.
    pub epoch: u64,
    /// Records consumed.
    pub records: u64,
    /// Rows written over all sinks.
    pub rows_out: u64,
    /// Time from first read to commit.
    pub duration: Duration,
    /// Whether it was a replay.
    pub replay: bool,
}

impl EpochCommitted<'_> {
    /// Log and count it.
    pub fn emit(&self) {
        tracing::debug!(
            job = self.job,
            epoch = self.epoch,
            records = self.records,
            rows_out = self.rows_out,
            ms = self.duration.as_millis() as u64,
            replay = self.replay,
            "epoch committed"
        );
        metrics::counter!("strata_epochs_total", "job" => self.job.to_string()).increment(1);
        metrics::histogram!("strata_epoch_duration_seconds", "job" => self.job.to_string())
            .record(self.duration.as_secs_f64());
    }
}

/// Event: a source's epoch was read.
pub struct SourceRead<'a> {
    /// Source (table) name.
    pub source: &'a str,
    /// Records consumed.
    pub records: u64,
    /// Bytes consumed.
    pub bytes: u64,
    /// Bad records dead-lettered.
    pub dead_lettered: u64,
    /// Bad records dropped.
    pub dropped: u64,
}

impl SourceRead<'_> {
    /// Count it.
    pub fn emit(&self) {
        let s = self.source.to_string();
        metrics::counter!("strata_source_records_total", "source" => s.clone())
            .increment(self.records);
        metrics::counter!("strata_source_bytes_total", "source" => s.clone()).increment(self.bytes);
        metrics::counter!("strata_source_dead_lettered_total", "source" => s.clone())
            .increment(self.dead_lettered);
        metrics::counter!("strata_source_dropped_total", "source" => s).increment(self.dropped);
    }
}

/// Event: a sink published an epoch.
pub struct SinkPublished<'a> {
    /// Sink name.
    pub sink: &'a str,
    /// What it published.
    pub stats: &'a SinkStats,
}

impl SinkPublished<'_> {
    /// Count it.
    pub fn emit(&self) {
        let s = self.sink.to_string();
        metrics::counter!("strata_sink_rows_total", "sink" => s.clone()).increment(self.stats.rows);
        metrics::counter!("strata_sink_files_total", "sink" => s.clone())
            .increment(self.stats.files);
        metrics::counter!("strata_sink_bytes_total", "sink" => s).increment(self.stats.bytes);
    }
}

/// Progress of a run: a bar on a terminal, log lines every few seconds otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    total_bytes: Option<u64>,
    started: Instant,
    last_log: Instant,
    log_every: Duration,
}

impl Progress {
    /// `total_bytes`: input size of a bounded run (for ETA); `None` for streams.
    pub fn new(total_bytes: Option<u64>, enabled_bar: bool) -> Self {
        let bar = (enabled_bar && std::io::stderr().is_terminal()).then(|| {
            let bar = match total_bytes {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            let template = if total_bytes.is_some() {
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ETA {eta}"
            } else {
                "{spinner} [{elapsed_precise}] {msg}"
            };
            bar.set_style(ProgressStyle::with_template(template).expect("valid progress template"));
            bar
        });
        Self {
            bar,
            total_bytes,
            started: Instant::now(),
            last_log: Instant::now(),
            log_every: Duration::from_secs(5),
        }
    }

    /// Update after an epoch.
    pub fn update(&mut self, bytes_done: u64, records: u64, rows_out: u64) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-6);
        let rate = records as f64 / secs;
        let msg = format!("{records} records, {rows_out} rows out, {rate:.0} records/s");
        if let Some(bar) = &self.bar {
            bar.set_position(bytes_done);
            bar.set_message(msg);
        } else if self.last_log.elapsed() >= self.log_every {
            self.last_log = Instant::now();
            match self.total_bytes {
                Some(total) if total > 0 && bytes_done > 0 => {
                    let frac = bytes_done as f64 / total as f64;
                    let eta = secs * (1.0 - frac) / frac;
                    tracing::info!(
                        "progress: {:.1}% of {}, {msg}, ETA {:.0}s",
                        frac * 100.0,
                        human_bytes(total),
                        eta
                    );
                }
                _ => tracing::info!("progress: {msg}"),
            }
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
