//! The epoch loop.
//!
//! ```text
//!  reader task                       main task (per epoch)
//!  ───────────                       ─────────────────────
//!  replay logged-but-uncommitted     1. bad-data policy (fail / drop / dead letter)
//!  epoch, then open sources and  ─►  2. log offsets (ranges + positions)   [durable]
//!  read epoch N+1 while N runs       3. execute every INSERT, stage its output
//!  (one epoch of prefetch: bounded   4. log the manifest of objects to publish
//!  memory, and decoding overlaps     5. publish (each object atomically visible)
//!  execution on another core)        6. remove objects a replay no longer produces
//!                                    7. write the commit marker
//!                                    8. source commit hooks (Kafka group offsets)
//! ```
//! A crash anywhere after step 2 makes the next start re-run that epoch over
//! exactly its logged ranges; deterministic object names make the re-run
//! overwrite instead of duplicate. A crash before step 2 re-reads from the last
//! committed positions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::bad_data::dead_letter_batch;
use crate::checkpoint::{Checkpoint, CommitEntry, Manifest, OffsetEntry, SourceOffsets};
use crate::sink::{EpochInfo, SinkStats, StagedEpoch};
use crate::table::EpochTable;
use crate::telemetry::{
    EpochCommitted, Progress, RunOutcome, RunSummary, SinkPublished, SinkSummary, SourceRead,
    SourceSummary,
};
use crate::{
    BadDataPolicy, EpochLimits, PipelineError, Result, Sink, Source, SourceEpoch, SplitRange,
};

/// A source of the job with the table it feeds and its bad-data policy.
pub struct SourceBinding {
    /// Table name.
    pub name: String,
    /// The connector.
    pub source: Box<dyn Source>,
    /// The DataFusion table the job's queries read.
    pub table: Arc<EpochTable>,
    /// `bad_data` policy.
    pub bad_data: BadDataPolicy,
    /// Dead-letter sink when the policy is `dead_letter`.
    pub dead_letter: Option<Arc<dyn Sink>>,
}

/// One `INSERT INTO sink SELECT ...` of the job.
pub struct InsertBinding {
    /// Where rows go.
    pub sink: Arc<dyn Sink>,
    /// The query, whose output schema equals the sink's schema. For a window aggregate:
    /// the output part, which reads the rows of the closing windows.
    pub plan: LogicalPlan,
    /// Set for `GROUP BY tumble(...)` queries: their input and window state.
    pub window: Option<Arc<crate::WindowBinding>>,
    /// The query reads a side output's table (`usage`): it runs after the other inserts of
    /// the epoch, once their side outputs are drained into [`Job::side_tables`].
    pub reads_side_output: bool,
}

/// A planned job, ready to run.
pub struct Job {
    /// Job name (`SET job.name`).
    pub name: String,
    /// Session holding the job's tables and functions.
    pub ctx: SessionContext,
    /// Sources.
    pub sources: Vec<SourceBinding>,
    /// Inserts.
    pub inserts: Vec<InsertBinding>,
    /// Where epochs are logged.
    pub checkpoint: Checkpoint,
    /// Epoch size.
    pub limits: EpochLimits,
    /// Show a progress bar when on a terminal.
    pub progress_bar: bool,
    /// Side outputs (model usage) and their sinks, drained after each epoch's queries.
    pub side_outputs: Vec<(Arc<dyn Sink>, Arc<dyn crate::SideOutput>)>,
    /// Tables filled with what a side output (by index) drained in the epoch, for the
    /// inserts that read it (`FROM usage`).
    pub side_tables: Vec<(usize, Arc<EpochTable>)>,
}

/// Set to stop after the current epoch (SIGINT/SIGTERM).
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Ask the job to drain.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether draining was asked for.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One epoch as read by the reader task; `parts[i]` belongs to source `i`.
struct EpochInput {
    epoch: u64,
    replay: bool,
    parts: Vec<Option<SourceEpoch>>,
    started: Instant,
}

/// Deterministic stem of the objects one insert publishes for an epoch: the same
/// job, sink, insert and source ranges always give the same stem.
pub fn file_stem(job: &str, sink: &str, insert: usize, entry: &OffsetEntry) -> String {
    let mut h = Sha256::new();
    h.update(job.as_bytes());
    h.update([0]);
    h.update(sink.as_bytes());
    h.update([0]);
    h.update(insert.to_le_bytes());
    let mut first: Option<&SplitRange> = None;
    for (name, o) in &entry.sources {
        for r in &o.ranges {
            first.get_or_insert(r);
            h.update(name.as_bytes());
            h.update([0]);
            h.update(r.split.as_bytes());
            h.update([0]);
            h.update(r.start.to_le_bytes());
            h.update(r.end.to_le_bytes());
        }
    }
    let digest = hex::encode(&h.finalize()[..8]);
    match first {
        Some(r) => {
            let tag: String = r
                .split
                .rsplit('/')
                .next()
                .unwrap_or("")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(48)
                .collect();
            format!("{tag}-{}-{}-{digest}", r.start, r.end)
        }
        // No ranges: the end-of-input epoch, named by its number so no later one reuses it.
        None => format!("end-e{}-{digest}", entry.epoch),
    }
}

/// Run a job until its bounded sources are exhausted or `shutdown` is triggered.
pub async fn run(job: Job, shutdown: Shutdown) -> Result<RunSummary> {
    let started = Instant::now();
    let Job {
        name: job_name,
        ctx,
        sources,
        inserts,
        checkpoint,
        limits,
        progress_bar,
        side_outputs,
        side_tables,
    } = job;

    let recovery = checkpoint.recover().await?;
    let mut all_sinks: Vec<Arc<dyn Sink>> = inserts.iter().map(|i| i.sink.clone()).collect();
    all_sinks.extend(side_outputs.iter().map(|(sink, _)| sink.clone()));
    all_sinks.extend(sources.iter().filter_map(|s| s.dead_letter.clone()));
    let mut seen = BTreeSet::new();
    for sink in &all_sinks {
        if seen.insert(sink.location()) {
            sink.recover().await?;
        }
    }
    if let Some((entry, _)) = &recovery.replay {
        tracing::info!(job = %job_name, epoch = entry.epoch, checkpoint = checkpoint.url(), "re-running epoch interrupted by an earlier process over its logged ranges");
    }
    let committed_epoch = recovery.committed.as_ref().map(|e| e.epoch);
    for (idx, ins) in inserts.iter().enumerate() {
        if let Some(w) = &ins.window {
            w.restore(&checkpoint, idx, committed_epoch).await?;
        }
    }
    // Window aggregates over bounded inputs close their last windows in one more epoch
    // after the input ends.
    let flush_at_end =
        inserts.iter().any(|i| i.window.is_some()) && sources.iter().all(|s| s.source.is_bounded());

    // Positions per source as of the newest offset entry; sources absent from an
    // epoch carry them forward so every entry is complete.
    let mut last_offsets: BTreeMap<String, SourceOffsets> =
        match (&recovery.replay, &recovery.committed) {
            (Some((e, _)), _) | (None, Some(e)) => e.sources.clone(),
            _ => BTreeMap::new(),
        };
    let replay_manifest: Option<Manifest> = recovery.replay.as_ref().and_then(|(_, m)| m.clone());

    let total_bytes = if sources.iter().all(|s| s.source.is_bounded()) {
        sources
            .iter()
            .map(|s| s.source.size_hint())
            .sum::<Option<u64>>()
    } else {
        None
    };
    let mut progress = Progress::new(total_bytes, progress_bar);

    let mut bindings = Vec::with_capacity(sources.len());
    let mut readers = Vec::with_capacity(sources.len());
    let hooks: Vec<(String, Arc<dyn crate::CommitHook>)> = sources
        .iter()
        .filter_map(|s| s.source.commit_hook().map(|h| (s.name.clone(), h)))
        .collect();
    for s in sources {
        readers.push((s.name.clone(), s.source));
        bindings.push((s.name, s.table, s.bad_data, s.dead_letter));
    }

    let (tx, mut rx) = mpsc::channel::<Result<EpochInput>>(1);
    let reader = tokio::spawn(
        read_epochs(
            readers,
            recovery,
            limits,
            tx,
            shutdown.clone(),
            flush_at_end,
        )
        .instrument(tracing::info_span!("reader", job = %job_name)),
    );

    let mut summary_sources: BTreeMap<String, SourceSummary> = bindings
        .iter()
        .map(|b| (b.0.clone(), SourceSummary::default()))
        .collect();
    let mut summary_sinks: BTreeMap<String, SinkSummary> = BTreeMap::new();
    for sink in inserts
        .iter()
        .map(|i| &i.sink)
        .chain(side_outputs.iter().map(|(s, _)| s))
    {
        summary_sinks
            .entry(sink.name().to_string())
            .or_insert_with(|| SinkSummary {
                location: sink.location(),
                stats: SinkStats::default(),
            });
    }
    let mut epochs = 0u64;
    let mut replayed = 0u64;
    let mut bytes_done = 0u64;

    while let Some(msg) = rx.recv().await {
        let input = msg?;
        let epoch = input.epoch;
        let span = tracing::info_span!("epoch", job = %job_name, epoch, replay = input.replay);
        let result = async {
            // 1. Bad data.
            let mut dead_letters: Vec<(Arc<dyn Sink>, arrow::record_batch::RecordBatch)> = Vec::new();
            let now_micros = chrono::Utc::now().timestamp_micros();
            for (i, part) in input.parts.iter().enumerate() {
                let Some(part) = part else { continue };
                let (name, _, policy, dl) = &bindings[i];
                let sum = summary_sources.get_mut(name).expect("summary per source");
                let (mut dead, mut dropped) = (0u64, 0u64);
                if let Some(first) = part.bad.first() {
                    match policy {
                        BadDataPolicy::Fail => {
                            return Err(PipelineError::BadRecord { source_name: name.clone(), location: first.location.clone(), reason: first.reason.clone() });
                        }
                        BadDataPolicy::Drop => dropped = part.bad.len() as u64,
                        BadDataPolicy::DeadLetter => {
                            let dl = dl.clone().ok_or_else(|| PipelineError::source(name, "bad_data = 'dead_letter' but no dead_letter location"))?;
                            dead_letters.push((dl, dead_letter_batch(name, &part.bad, now_micros)));
                            dead = part.bad.len() as u64;
                        }
                    }
                }
                sum.records += part.records();
                sum.rows += part.rows() as u64;
                sum.dead_lettered += dead;
                sum.dropped += dropped;
                sum.bytes += part.bytes;
                bytes_done += part.bytes;
                SourceRead { source: name, records: part.records(), bytes: part.bytes, dead_lettered: dead, dropped }.emit();
            }

            // 2. Offsets, durable before anything of the epoch is published.
            for (i, part) in input.parts.iter().enumerate() {
                let name = &bindings[i].0;
                let entry = last_offsets.entry(name.clone()).or_default();
                match part {
                    Some(p) => {
                        entry.ranges = p.ranges.clone();
                        entry.state_after = p.state_after.clone();
                    }
                    None => entry.ranges.clear(),
                }
            }
            let offsets = OffsetEntry { epoch, sources: last_offsets.clone() };
            if !input.replay {
                checkpoint.log_offsets(&offsets).await?;
            }

            // 3. Execute and stage.
            for (i, part) in input.parts.iter().enumerate() {
                let table = &bindings[i].1;
                let res = match part {
                    Some(p) => table.set(&p.batches),
                    None => table.clear(),
                };
                res.map_err(|e| PipelineError::Execution { sink: "-".into(), source: e })?;
            }
            drop(input.parts);
            let started_micros = now_micros;
            // An epoch without any range is the end-of-input epoch (see `flush_at_end`).
            let end_of_input = offsets.sources.values().all(|o| o.ranges.is_empty());
            // Phase 1: the inserts over the sources, and the bad records' dead letters.
            let mut jobs = Vec::new();
            let mut owners = Vec::new();
            for (idx, ins) in inserts.iter().enumerate().filter(|(_, i)| !i.reads_side_output) {
                let info = EpochInfo { epoch, file_stem: file_stem(&job_name, ins.sink.name(), idx, &offsets), started_micros };
                jobs.push(execute_insert(&ctx, ins, info, end_of_input));
                owners.push(Some(idx));
            }
            for (idx, (sink, batch)) in dead_letters.into_iter().enumerate() {
                let info = EpochInfo { epoch, file_stem: file_stem(&job_name, sink.name(), usize::MAX - idx, &offsets), started_micros };
                jobs.push(Box::pin(async move {
                    let mut w = sink.begin_epoch(&info).await?;
                    w.write(batch).await?;
                    Ok((sink, w.finish().await?, None))
                }));
                owners.push(None);
            }
            let mut results: Vec<(Option<usize>, Staged)> = owners.into_iter().zip(futures::future::try_join_all(jobs).await?).collect();
            let mut staged: Vec<(Arc<dyn Sink>, Box<dyn StagedEpoch>)> = Vec::with_capacity(results.len());
            // Side outputs (usage) hold what the queries above produced; they are staged
            // only now, when those queries have finished, and fill the tables that read them.
            for (idx, (sink, output)) in side_outputs.iter().enumerate() {
                let batch = output.drain();
                for (_, table) in side_tables.iter().filter(|(i, _)| *i == idx) {
                    let rows: &[arrow::record_batch::RecordBatch] = batch.as_slice();
                    table.set(rows).map_err(|e| PipelineError::Execution { sink: sink.name().to_string(), source: e })?;
                }
                if let Some(batch) = batch {
                    let info = EpochInfo { epoch, file_stem: file_stem(&job_name, sink.name(), usize::MAX / 2 - idx, &offsets), started_micros };
                    let mut w = sink.begin_epoch(&info).await?;
                    w.write(batch).await?;
                    staged.push((sink.clone(), w.finish().await?));
                }
            }
            // Phase 2: the inserts over side outputs (windows over `usage`).
            let mut jobs = Vec::new();
            let mut owners = Vec::new();
            for (idx, ins) in inserts.iter().enumerate().filter(|(_, i)| i.reads_side_output) {
                let info = EpochInfo { epoch, file_stem: file_stem(&job_name, ins.sink.name(), idx, &offsets), started_micros };
                jobs.push(execute_insert(&ctx, ins, info, end_of_input));
                owners.push(Some(idx));
            }
            results.extend(owners.into_iter().zip(futures::future::try_join_all(jobs).await?));
            for (_, table) in &side_tables {
                table.clear().map_err(|e| PipelineError::Execution { sink: "-".into(), source: e })?;
            }
            let mut window_deltas = Vec::new();
            for (owner, (sink, st, delta)) in results {
                if let (Some(idx), Some(mut delta)) = (owner, delta) {
                    let w = inserts[idx].window.as_ref().expect("a delta comes from a window insert");
                    w.persist(&checkpoint, idx, epoch, &delta).await?;
                    // Late rows go to the source's dead letter in this epoch.
                    if let (Some(batch), Some((_, dl))) = (delta.late.take(), &w.dead_letter) {
                        let info = EpochInfo { epoch, file_stem: file_stem(&job_name, dl.name(), usize::MAX / 4 - idx, &offsets), started_micros };
                        let mut writer = dl.begin_epoch(&info).await?;
                        writer.write(batch).await?;
                        staged.push((dl.clone(), writer.finish().await?));
                    }
                    window_deltas.push((idx, delta));
                }
                staged.push((sink, st));
            }
            for (_, table, _, _) in &bindings {
                table.clear().map_err(|e| PipelineError::Execution { sink: "-".into(), source: e })?;
            }

            // 4. Manifest.
            let mut manifest = Manifest { epoch, sinks: BTreeMap::new() };
            for (sink, st) in &staged {
                manifest.sinks.entry(sink.name().to_string()).or_default().extend(st.objects());
            }
            // A replay keeps the interrupted attempt's objects in its manifest: if
            // the replay is interrupted too, the next one must still remove them.
            let mut logged = manifest.clone();
            if input.replay {
                if let Some(old) = replay_manifest.as_ref().filter(|m| m.epoch == epoch) {
                    for (sink, objects) in &old.sinks {
                        let entry = logged.sinks.entry(sink.clone()).or_default();
                        for o in objects {
                            if !entry.contains(o) {
                                entry.push(o.clone());
                            }
                        }
                    }
                }
            }
            checkpoint.log_manifest(&logged).await?;

            // 5. Publish.
            let published = futures::future::try_join_all(staged.into_iter().map(|(sink, st)| async move {
                let stats = st.publish().await?;
                Ok::<_, PipelineError>((sink, stats))
            }))
            .await?;

            // 6. A replay may produce fewer objects than the interrupted attempt.
            if input.replay {
                if let Some(old) = replay_manifest.as_ref().filter(|m| m.epoch == epoch) {
                    for (sink, _) in &published {
                        let new: BTreeSet<&String> = manifest.sinks.get(sink.name()).map(|v| v.iter().collect()).unwrap_or_default();
                        let stale: Vec<String> = old.sinks.get(sink.name()).into_iter().flatten().filter(|o| !new.contains(o)).cloned().collect();
                        if !stale.is_empty() {
                            tracing::info!(sink = sink.name(), count = stale.len(), "removing objects of the interrupted attempt that the replay did not produce");
                            sink.remove(&stale).await?;
                        }
                    }
                }
            }

            // 7. Commit.
            let mut commit = CommitEntry { epoch, sinks: BTreeMap::new(), committed_at: chrono::Utc::now().to_rfc3339() };
            let mut rows_out = 0;
            for (sink, stats) in &published {
                SinkPublished { sink: sink.name(), stats }.emit();
                commit.sinks.entry(sink.name().to_string()).or_default().add(stats);
                if let Some(s) = summary_sinks.get_mut(sink.name()) {
                    s.stats.add(stats);
                    rows_out += stats.rows;
                }
            }
            checkpoint.commit(&commit).await?;
            for (idx, delta) in &window_deltas {
                if let Some(w) = &inserts[*idx].window {
                    w.prune(&checkpoint, *idx, delta).await;
                }
            }
            // 8. Acknowledge upstream (Kafka group offsets), only now that every
            // file of the epoch is visible.
            for (name, hook) in &hooks {
                let ranges = offsets.sources.get(name).map(|o| o.ranges.as_slice()).unwrap_or(&[]);
                hook.committed(epoch, ranges).await?;
            }
            epochs += 1;
            if input.replay {
                replayed += 1;
            }
            let records: u64 = offsets.sources.values().flat_map(|o| o.ranges.iter()).map(|r| r.records).sum();
            EpochCommitted { job: &job_name, epoch, records, rows_out, duration: input.started.elapsed(), replay: input.replay }.emit();
            let total_records: u64 = summary_sources.values().map(|s| s.records).sum();
            let total_out: u64 = summary_sinks.values().map(|s| s.stats.rows).sum();
            progress.update(bytes_done, total_records, total_out);
            Ok::<(), PipelineError>(())
        }
        .instrument(span)
        .await;
        if let Err(e) = result {
            flush_side_outputs(&job_name, epoch, &side_outputs).await;
            return Err(e);
        }
        if shutdown.is_triggered() {
            // The reader may already hold a prefetched epoch; it was never
            // logged, so dropping it loses nothing: the next run reads it again.
            tracing::info!(job = %job_name, epoch, "drained: committed the current epoch, stopping");
            break;
        }
    }
    drop(rx);
    progress.finish();
    match reader.await {
        Ok(()) => {}
        Err(e) => {
            return Err(PipelineError::source(
                "reader",
                format!("reader task failed: {e}"),
            ))
        }
    }
    Ok(RunSummary {
        job: job_name,
        outcome: if shutdown.is_triggered() {
            RunOutcome::Drained
        } else {
            RunOutcome::Completed
        },
        epochs,
        replayed_epochs: replayed,
        sources: summary_sources,
        sinks: summary_sinks,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// An epoch failed: what its calls already produced in the side outputs that ask for it
/// (the usage rows of model calls that were made, and paid for, before the failure) is
/// published now, on its own, so the spend is on record although the epoch's rows are not. The re-run of the
/// epoch records its own calls (cache hits for the answers the failed attempt got). Best
/// effort: a failure here is logged, and the epoch's error is what the run reports.
async fn flush_side_outputs(
    job: &str,
    epoch: u64,
    side_outputs: &[(Arc<dyn Sink>, Arc<dyn crate::SideOutput>)],
) {
    let started_micros = chrono::Utc::now().timestamp_micros();
    for (sink, output) in side_outputs {
        let Some(batch) = output.drain() else {
            continue;
        };
        if !output.publish_on_failure() {
            continue;
        }
        let rows = batch.num_rows();
        let info = EpochInfo {
            epoch,
            // Never the name of a committed epoch's object: the failed attempt's own.
            file_stem: format!("failed-e{epoch}-{started_micros}-{}", sink.name()),
            started_micros,
        };
        let published = async {
            let mut w = sink.begin_epoch(&info).await?;
            w.write(batch).await?;
            w.finish().await?.publish().await
        }
        .await;
        match published {
            Ok(_) => tracing::warn!(job, epoch, sink = sink.name(), rows, "the epoch failed: published what its model calls recorded so far, so their spend is on record"),
            Err(e) => tracing::error!(job, epoch, sink = sink.name(), rows, error = %e, "the epoch failed and its side output could not be published"),
        }
    }
}

type Staged = (
    Arc<dyn Sink>,
    Box<dyn StagedEpoch>,
    Option<crate::window::WindowDelta>,
);
type StageFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Staged>> + Send + 'a>>;

fn execute_insert<'a>(
    ctx: &'a SessionContext,
    ins: &'a InsertBinding,
    info: EpochInfo,
    end_of_input: bool,
) -> StageFuture<'a> {
    Box::pin(async move {
        let sink_name = ins.sink.name().to_string();
        let exec_err = |e| PipelineError::Execution {
            sink: sink_name.clone(),
            source: e,
        };
        let delta = match &ins.window {
            Some(w) => Some(w.absorb(ctx, &sink_name, info.epoch, end_of_input).await?),
            None => None,
        };
        let physical = ctx
            .state()
            .create_physical_plan(&ins.plan)
            .await
            .map_err(exec_err)?;
        let mut stream = execute_stream(physical, ctx.task_ctx()).map_err(exec_err)?;
        let mut writer = ins.sink.begin_epoch(&info).await?;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(exec_err)?;
            if batch.num_rows() > 0 {
                writer.write(batch).await?;
            }
        }
        if let Some(w) = &ins.window {
            w.after_output(&sink_name)?;
        }
        Ok((ins.sink.clone(), writer.finish().await?, delta))
    })
}

async fn read_epochs(
    mut sources: Vec<(String, Box<dyn Source>)>,
    recovery: crate::checkpoint::RecoveryState,
    limits: EpochLimits,
    tx: mpsc::Sender<Result<EpochInput>>,
    shutdown: Shutdown,
    flush_at_end: bool,
) {
    let result: Result<()> = async {
        let mut epoch = recovery.next_epoch();
        let resume = match (&recovery.replay, &recovery.committed) {
            (Some((e, _)), _) | (None, Some(e)) => Some(e.clone()),
            _ => None,
        };
        if let Some((entry, _)) = &recovery.replay {
            let started = Instant::now();
            let mut parts = Vec::with_capacity(sources.len());
            for (name, s) in sources.iter_mut() {
                match entry
                    .sources
                    .get(name.as_str())
                    .filter(|o| !o.ranges.is_empty())
                {
                    Some(o) => parts.push(Some(s.replay(&o.ranges).await?)),
                    None => parts.push(None),
                }
            }
            if tx
                .send(Ok(EpochInput {
                    epoch: entry.epoch,
                    replay: true,
                    parts,
                    started,
                }))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
        for (name, s) in sources.iter_mut() {
            let state = resume
                .as_ref()
                .and_then(|e| e.sources.get(name.as_str()))
                .map(|o| o.state_after.clone())
                .filter(|v| !v.is_null());
            s.open(state).await?;
        }
        let mut exhausted = vec![false; sources.len()];
        loop {
            if shutdown.is_triggered() {
                tracing::info!("draining: no new epochs after a shutdown signal");
                break;
            }
            let started = Instant::now();
            let mut parts = Vec::with_capacity(sources.len());
            for (i, (_, s)) in sources.iter_mut().enumerate() {
                if exhausted[i] {
                    parts.push(None);
                    continue;
                }
                match s.read_epoch(&limits).await? {
                    Some(e) => parts.push(Some(e)),
                    None => {
                        exhausted[i] = true;
                        parts.push(None);
                    }
                }
            }
            let any_data = parts.iter().flatten().any(|p| !p.ranges.is_empty());
            if !any_data {
                if exhausted.iter().all(|e| *e) {
                    if flush_at_end {
                        // One epoch without ranges: window aggregates close what is open.
                        let parts = (0..sources.len()).map(|_| None).collect();
                        let _ = tx
                            .send(Ok(EpochInput {
                                epoch,
                                replay: false,
                                parts,
                                started,
                            }))
                            .await;
                    }
                    break;
                }
                continue;
            }
            if tx
                .send(Ok(EpochInput {
                    epoch,
                    replay: false,
                    parts,
                    started,
                }))
                .await
                .is_err()
            {
                return Ok(());
            }
            epoch += 1;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
}

/// Read every source of `job` to its end, from the start as a first run would (no
/// checkpoint is read or written), and run `plans` over each epoch, discarding what they
/// return. `strata explain` uses it for its cost estimate: its plans call dry-run stand-ins
/// of the model functions, which see exactly the rows a run would send. Returns the
/// records read.
pub async fn dry_run(job: &mut Job, plans: &[LogicalPlan]) -> Result<u64> {
    let exec = |e| PipelineError::Execution {
        sink: "estimate".into(),
        source: e,
    };
    for s in job.sources.iter_mut() {
        s.source.open(None).await?;
    }
    let mut records = 0u64;
    let mut exhausted = vec![false; job.sources.len()];
    while !exhausted.iter().all(|e| *e) {
        for (i, s) in job.sources.iter_mut().enumerate() {
            let epoch = if exhausted[i] {
                None
            } else {
                s.source.read_epoch(&job.limits).await?
            };
            match epoch {
                Some(e) => {
                    records += e.records();
                    s.table.set(&e.batches).map_err(exec)?;
                }
                None => {
                    exhausted[i] = true;
                    s.table.clear().map_err(exec)?;
                }
            }
        }
        for plan in plans {
            let physical = job
                .ctx
                .state()
                .create_physical_plan(plan)
                .await
                .map_err(exec)?;
            let mut stream = execute_stream(physical, job.ctx.task_ctx()).map_err(exec)?;
            while let Some(batch) = stream.next().await {
                batch.map_err(exec)?;
            }
        }
    }
    for s in &job.sources {
        s.table.clear().map_err(exec)?;
    }
    Ok(records)
}
