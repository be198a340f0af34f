//! [`KafkaSource`]: a consumer-group member that hands the runtime one epoch of
//! messages at a time, each partition's messages as one [`SplitRange`]
//! (`split` = `topic/partition`, `[start, end)` = offsets).
//!
//! Positions and exactly-once:
//! - The runtime logs an epoch's ranges before publishing its files and
//!   re-runs a logged, uncommitted epoch with [`Source::replay`], which reads
//!   exactly those offsets with a consumer of its own (no group membership).
//! - Group offsets are committed only by the [`CommitHook`], after the epoch's
//!   commit marker: the group's committed offsets never run ahead of visible
//!   files.
//! - A partition assigned to this worker starts at the larger of the group's
//!   committed offset and this worker's own checkpoint position (a commit that
//!   failed after a local commit); with neither, at `'scan.startup.mode'`.
//! - On revocation (a rebalance) the worker waits, inside the rebalance
//!   callback, until every epoch it handed to the runtime is committed, and
//!   drops what it had read but not handed over. The rebalance completes only
//!   then, so the new owner starts exactly after the last published offset and
//!   this worker never publishes for a partition it no longer owns.
//! - Bounded (`'scan.bounded.mode' = 'latest'`): the end offsets are taken when
//!   the source opens; the source ends once it has been assigned partitions and
//!   every partition it owns has reached its end.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use strata_pipeline::{
    CommitHook, EpochLimits, PipelineError, Result, Source, SourceEpoch, SplitRange,
};

use super::decode::{Decoder, PartBuf};
use super::options::{BoundedMode, KafkaSourceOptions, StartupMode};
use super::DeadLetterSide;

/// Broker round trips at start (metadata, watermarks) give up after this long.
const META_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a revocation waits for in-flight epochs to commit.
const REVOKE_WAIT: Duration = Duration::from_secs(120);

type Tp = (String, i32);

fn split_name(tp: &Tp) -> String {
    format!("{}/{}", tp.0, tp.1)
}

fn parse_split(s: &str) -> Option<Tp> {
    let (t, p) = s.rsplit_once('/')?;
    Some((t.to_string(), p.parse().ok()?))
}

/// Checkpoint state: the next offset of every partition this worker has
/// committed (or handed over) so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KafkaState {
    /// `topic/partition` -> next offset.
    pub positions: BTreeMap<String, i64>,
}

/// State shared by the consumer's rebalance callback, the reader and the commit hook.
struct Shared {
    name: String,
    startup: StartupMode,
    /// Partitions owned now, with the offset the next message must have.
    owned: Mutex<BTreeMap<Tp, i64>>,
    /// Set on every assignment, cleared on revocation.
    assigned: Mutex<bool>,
    /// Partitions revoked since the reader last looked.
    revoked: Mutex<Vec<Tp>>,
    /// Next offsets this worker knows to be done (checkpoint, commits).
    local: Mutex<BTreeMap<Tp, i64>>,
    /// Epochs handed to the runtime and not yet committed.
    outstanding: Mutex<u64>,
    outstanding_cv: Condvar,
    /// Set when the source is dropped: revocations no longer wait.
    closing: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn start_offset(
        &self,
        c: &BaseConsumer<GroupContext>,
        tp: &Tp,
        committed: Offset,
    ) -> std::result::Result<i64, KafkaError> {
        let local = self.local.lock().expect("lock").get(tp).copied();
        let committed = match committed {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        if let Some(o) = committed.max(local) {
            return Ok(o);
        }
        let (low, high) = c.fetch_watermarks(&tp.0, tp.1, META_TIMEOUT)?;
        Ok(match self.startup {
            StartupMode::Earliest | StartupMode::GroupOffsets => low,
            StartupMode::Latest => high,
            StartupMode::Timestamp(ts) => {
                let mut q = TopicPartitionList::new();
                q.add_partition_offset(&tp.0, tp.1, Offset::Offset(ts))?;
                let r = c.offsets_for_times(q, META_TIMEOUT)?;
                match r.find_partition(&tp.0, tp.1).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                }
            }
        })
    }
}

/// The consumer's context: rebalance handling.
pub struct GroupContext {
    shared: Arc<Shared>,
    /// The source's table name, for metrics.
    source: String,
}

impl ClientContext for GroupContext {
    /// librdkafka's statistics (every `statistics.interval.ms`, served by the consumer's
    /// polls): `strata_kafka_consumer_lag{source,topic,partition}` is its `consumer_lag`,
    /// the messages between a partition's high watermark and the group's committed offset,
    /// which strata commits only once an epoch's files are published: the messages not yet
    /// durably in the job's output. Reported for the partitions this worker fetches.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                metrics::gauge!(
                    "strata_kafka_consumer_lag",
                    "source" => self.source.clone(),
                    "topic" => topic.clone(),
                    "partition" => partition.to_string(),
                )
                .set(p.consumer_lag as f64);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(&self, c: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let sh = &self.shared;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let parts: Vec<Tp> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let committed = c.committed_offsets(tpl.clone(), META_TIMEOUT);
                let mut owned = BTreeMap::new();
                let mut assign = TopicPartitionList::new();
                for tp in parts {
                    let group = match &committed {
                        Ok(l) => l
                            .find_partition(&tp.0, tp.1)
                            .map(|e| e.offset())
                            .unwrap_or(Offset::Invalid),
                        Err(_) => Offset::Invalid,
                    };
                    match sh.start_offset(c, &tp, group) {
                        Ok(o) => {
                            let _ = assign.add_partition_offset(&tp.0, tp.1, Offset::Offset(o));
                            owned.insert(tp, o);
                        }
                        Err(e) => {
                            tracing::error!(source = %sh.name, topic = %tp.0, partition = tp.1, error = %e, "cannot find where to start reading; reading from the group's committed offset");
                            let _ = assign.add_partition_offset(&tp.0, tp.1, group);
                            // Unknown start: the first message read sets it.
                            owned.insert(tp, -1);
                        }
                    }
                }
                if let Err(e) = committed {
                    tracing::warn!(source = %sh.name, error = %e, "cannot read the group's committed offsets; using this worker's checkpoint and 'scan.startup.mode'");
                }
                tracing::info!(source = %sh.name, partitions = ?owned, "partitions assigned");
                if let Err(e) = c.assign(&assign) {
                    tracing::error!(source = %sh.name, error = %e, "assigning partitions failed");
                }
                *sh.owned.lock().expect("lock") = owned;
                *sh.assigned.lock().expect("lock") = true;
            }
            _ => {
                let parts: Vec<Tp> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                let lost = c.assignment_lost();
                *sh.assigned.lock().expect("lock") = false;
                if !sh.closing.load(std::sync::atomic::Ordering::SeqCst) && !lost {
                    // Finish the in-flight epochs before giving the partitions up.
                    let started = Instant::now();
                    let mut n = sh.outstanding.lock().expect("lock");
                    while *n > 0 && started.elapsed() < REVOKE_WAIT {
                        n = sh
                            .outstanding_cv
                            .wait_timeout(n, Duration::from_millis(100))
                            .expect("lock")
                            .0;
                    }
                    if *n > 0 {
                        tracing::error!(source = %sh.name, epochs = *n, "revocation: in-flight epochs did not commit in time; their group offsets may be committed by the new owner first");
                    }
                } else if lost {
                    tracing::warn!(source = %sh.name, partitions = ?parts, "partitions lost (session timed out); reading stops for them");
                }
                tracing::info!(source = %sh.name, partitions = ?parts, "partitions revoked");
                sh.owned.lock().expect("lock").clear();
                sh.revoked.lock().expect("lock").extend(parts);
                let _ = c.unassign();
            }
        }
    }
}

/// Commits group offsets after each committed epoch.
pub struct KafkaCommitHook {
    shared: Arc<Shared>,
    consumer: Mutex<Option<Arc<BaseConsumer<GroupContext>>>>,
}

#[async_trait]
impl CommitHook for KafkaCommitHook {
    async fn committed(&self, epoch: u64, ranges: &[SplitRange]) -> Result<()> {
        if ranges.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        {
            let mut local = self.shared.local.lock().expect("lock");
            for r in ranges {
                let tp = parse_split(&r.split).ok_or_else(|| {
                    PipelineError::source(
                        &self.shared.name,
                        format!("bad split name '{}'", r.split),
                    )
                })?;
                let e = local.entry(tp.clone()).or_insert(r.end as i64);
                *e = (*e).max(r.end as i64);
                let _ = tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(r.end as i64));
            }
        }
        let consumer = self.consumer.lock().expect("lock").clone();
        if let Some(c) = consumer {
            let name = self.shared.name.clone();
            let res = tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync))
                .await
                .map_err(|e| PipelineError::source(&name, e))?;
            match res {
                Ok(()) => {
                    tracing::debug!(source = %self.shared.name, epoch, "group offsets committed")
                }
                // The epoch's files are visible and its checkpoint entry written;
                // the next assignment of these partitions to this worker starts
                // after them, and the offsets are committed again then.
                Err(e) => {
                    tracing::warn!(source = %self.shared.name, epoch, error = %e, "committing group offsets failed (files are visible; the checkpoint holds the positions)")
                }
            }
        }
        let mut n = self.shared.outstanding.lock().expect("lock");
        *n = n.saturating_sub(1);
        self.shared.outstanding_cv.notify_all();
        Ok(())
    }
}

/// Reading state moved onto a blocking thread for each epoch.
struct Reader {
    consumer: Arc<BaseConsumer<GroupContext>>,
    /// Next offset expected per owned partition (own copy, updated as read).
    next: BTreeMap<Tp, i64>,
    bounds: Option<BTreeMap<Tp, i64>>,
}

/// The `kafka` connector's source.
pub struct KafkaSource {
    name: String,
    options: Arc<KafkaSourceOptions>,
    decoder: Arc<Decoder>,
    shared: Arc<Shared>,
    hook: Arc<KafkaCommitHook>,
    reader: Option<Reader>,
    side: DeadLetterSide,
    handed: BTreeMap<Tp, i64>,
}

impl KafkaSource {
    pub(crate) fn new(
        name: &str,
        options: KafkaSourceOptions,
        decoder: Decoder,
        side: DeadLetterSide,
    ) -> Self {
        let shared = Arc::new(Shared {
            name: name.to_string(),
            startup: options.startup,
            owned: Mutex::new(BTreeMap::new()),
            assigned: Mutex::new(false),
            revoked: Mutex::new(Vec::new()),
            local: Mutex::new(BTreeMap::new()),
            outstanding: Mutex::new(0),
            outstanding_cv: Condvar::new(),
            closing: std::sync::atomic::AtomicBool::new(false),
        });
        Self {
            name: name.to_string(),
            options: Arc::new(options),
            decoder: Arc::new(decoder),
            hook: Arc::new(KafkaCommitHook {
                shared: shared.clone(),
                consumer: Mutex::new(None),
            }),
            shared,
            reader: None,
            side,
            handed: BTreeMap::new(),
        }
    }

    fn err(&self, m: impl std::fmt::Display) -> PipelineError {
        PipelineError::source(&self.name, m)
    }

    fn state(&self) -> Result<serde_json::Value> {
        let st = KafkaState {
            positions: self
                .handed
                .iter()
                .map(|(tp, o)| (split_name(tp), *o))
                .collect(),
        };
        serde_json::to_value(st).map_err(|e| self.err(e))
    }

    /// Decode every partition buffer into an epoch.
    fn build_epoch(&mut self, bufs: BTreeMap<Tp, (i64, i64, PartBuf)>) -> Result<SourceEpoch> {
        let mut ep = SourceEpoch::default();
        for (tp, (start, end, buf)) in bufs {
            if buf.msgs.is_empty() && start == end {
                continue;
            }
            let (batches, bad) = self
                .decoder
                .decode(&tp.0, tp.1, &buf)
                .map_err(|e| self.err(format!("topic '{}' partition {}: {e}", tp.0, tp.1)))?;
            if !bad.is_empty() {
                let mut side = self.side.lock().expect("lock");
                for b in &bad {
                    if let Some(m) = buf.msgs.iter().find(|m| m.offset as u64 == b.position) {
                        side.insert(
                            (b.split.clone(), b.position),
                            (m.key.clone(), m.headers.clone()),
                        );
                    }
                }
            }
            ep.bytes += buf.bytes() as u64;
            ep.batches
                .extend(batches.into_iter().filter(|b| b.num_rows() > 0));
            ep.bad.extend(bad);
            ep.ranges.push(SplitRange {
                split: split_name(&tp),
                start: start as u64,
                end: end as u64,
                first_record: start as u64,
                records: buf.msgs.len() as u64,
            });
            let h = self.handed.entry(tp).or_insert(end);
            *h = (*h).max(end);
        }
        if !ep.ranges.is_empty() {
            *self.shared.outstanding.lock().expect("lock") += 1;
        }
        ep.state_after = self.state()?;
        Ok(ep)
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn headers_of<M: Message>(m: &M) -> Vec<(String, Option<Vec<u8>>)> {
    match m.headers() {
        None => Vec::new(),
        Some(h) => h
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
            .collect(),
    }
}

fn fatal(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
            | Some(RDKafkaErrorCode::TopicAuthorizationFailed)
            | Some(RDKafkaErrorCode::GroupAuthorizationFailed)
            | Some(RDKafkaErrorCode::SaslAuthenticationFailed)
            | Some(RDKafkaErrorCode::Authentication)
            | Some(RDKafkaErrorCode::Fatal)
    )
}

#[async_trait]
impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn schema(&self) -> SchemaRef {
        self.decoder.schema()
    }

    fn is_bounded(&self) -> bool {
        self.options.bounded == BoundedMode::Latest
    }

    fn commit_hook(&self) -> Option<Arc<dyn CommitHook>> {
        Some(self.hook.clone())
    }

    async fn open(&mut self, state: Option<serde_json::Value>) -> Result<()> {
        if let Some(st) = state {
            let st: KafkaState = serde_json::from_value(st.clone())
                .map_err(|e| self.err(format!("unreadable kafka source state {st}: {e}")))?;
            let mut local = self.shared.local.lock().expect("lock");
            for (s, o) in st.positions {
                if let Some(tp) = parse_split(&s) {
                    let e = local.entry(tp.clone()).or_insert(o);
                    *e = (*e).max(o);
                    let h = self.handed.entry(tp).or_insert(o);
                    *h = (*h).max(o);
                }
            }
        }
        let options = self.options.clone();
        let shared = self.shared.clone();
        let name = self.name.clone();
        let consumer: BaseConsumer<GroupContext> = options
            .consumer_config()
            .create_with_context(GroupContext {
                shared,
                source: name.clone(),
            })
            .map_err(|e| self.err(format!("cannot create the Kafka consumer: {e}")))?;
        let consumer = Arc::new(consumer);
        let c = consumer.clone();
        let topics = options.topics.clone();
        let bounded = options.bounded;
        let bootstrap = options.bootstrap_servers.clone();
        let bounds = tokio::task::spawn_blocking(move || -> std::result::Result<Option<BTreeMap<Tp, i64>>, String> {
            let mut bounds = BTreeMap::new();
            for t in &topics {
                let md = c.fetch_metadata(Some(t), META_TIMEOUT).map_err(|e| {
                    format!("cannot reach the Kafka brokers at '{bootstrap}' within {}s ({e}); check bootstrap_servers and that the brokers are up", META_TIMEOUT.as_secs())
                })?;
                let topic = md.topics().iter().find(|x| x.name() == t);
                let parts = match topic {
                    Some(x) if x.error().is_none() && !x.partitions().is_empty() => x.partitions().iter().map(|p| p.id()).collect::<Vec<_>>(),
                    _ => return Err(format!("topic '{t}' does not exist at '{bootstrap}': create it (kafka-topics.sh --create --topic {t}) or fix topic")),
                };
                if bounded == BoundedMode::Latest {
                    for p in parts {
                        let (_, high) = c.fetch_watermarks(t, p, META_TIMEOUT).map_err(|e| format!("cannot read the end offset of topic '{t}' partition {p}: {e}"))?;
                        bounds.insert((t.clone(), p), high);
                    }
                }
            }
            let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
            c.subscribe(&refs).map_err(|e| format!("cannot subscribe to {topics:?}: {e}"))?;
            Ok((bounded == BoundedMode::Latest).then_some(bounds))
        })
        .await
        .map_err(|e| self.err(e))?
        .map_err(|e| PipelineError::source(&name, e))?;
        if let Some(b) = &bounds {
            tracing::info!(source = %self.name, ends = ?b, "bounded scan: reading up to these end offsets");
        }
        *self.hook.consumer.lock().expect("lock") = Some(consumer.clone());
        self.reader = Some(Reader {
            consumer,
            next: BTreeMap::new(),
            bounds,
        });
        Ok(())
    }

    async fn read_epoch(&mut self, limits: &EpochLimits) -> Result<Option<SourceEpoch>> {
        let mut reader = self
            .reader
            .take()
            .ok_or_else(|| self.err("read before open"))?;
        let shared = self.shared.clone();
        let limits = limits.clone();
        let max = self.decoder.max_record_bytes();
        let name = self.name.clone();
        let (reader, out) = tokio::task::spawn_blocking(move || {
            let out = read_blocking(&mut reader, &shared, &limits, max, &name);
            (reader, out)
        })
        .await
        .map_err(|e| self.err(e))?;
        let r = reader;
        let out = out.map_err(|e| self.err(e))?;
        self.reader = Some(r);
        match out {
            None => Ok(None),
            Some(bufs) => Ok(Some(self.build_epoch(bufs)?)),
        }
    }

    async fn replay(&mut self, ranges: &[SplitRange]) -> Result<SourceEpoch> {
        let mut config = self.options.consumer_config();
        config.set("group.id", format!("{}-replay", self.options.group_id));
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| self.err(format!("cannot create the Kafka consumer: {e}")))?;
        let ranges_v = ranges.to_vec();
        let max = self.decoder.max_record_bytes();
        let name = self.name.clone();
        let bufs = tokio::task::spawn_blocking(move || -> std::result::Result<BTreeMap<Tp, (i64, i64, PartBuf)>, String> {
            let mut out = BTreeMap::new();
            for r in &ranges_v {
                let tp = parse_split(&r.split).ok_or_else(|| format!("bad split name '{}' in the checkpoint", r.split))?;
                let (start, end) = (r.start as i64, r.end as i64);
                let mut buf = PartBuf::default();
                if end > start {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(start)).map_err(|e| e.to_string())?;
                    consumer.assign(&tpl).map_err(|e| e.to_string())?;
                    let mut next = start;
                    let mut idle = Instant::now();
                    while next < end {
                        match consumer.poll(Duration::from_millis(100)) {
                            None => {}
                            Some(Err(e)) if fatal(&e) => return Err(format!("cannot replay topic '{}' partition {} offsets {start}..{end}: {e}", tp.0, tp.1)),
                            Some(Err(e)) => tracing::warn!(source = %name, error = %e, "replay: broker error, retrying"),
                            Some(Ok(m)) => {
                                idle = Instant::now();
                                if m.offset() < next || m.offset() >= end {
                                    if m.offset() >= end { next = end; }
                                    continue;
                                }
                                buf.push(m.offset(), m.payload(), m.key(), m.timestamp().to_millis(), headers_of(&m), max);
                                next = m.offset() + 1;
                            }
                        }
                        if next < end && idle.elapsed() > Duration::from_secs(60) {
                            let (low, _) = consumer.fetch_watermarks(&tp.0, tp.1, META_TIMEOUT).unwrap_or((0, 0));
                            return Err(format!(
                                "cannot replay topic '{}' partition {} offsets {start}..{end} logged by the interrupted run: no message for 60s at offset {next} (earliest retained offset {low}); if retention deleted them, start over with a new --checkpoint",
                                tp.0, tp.1
                            ));
                        }
                    }
                }
                out.insert(tp, (start, end, buf));
            }
            Ok(out)
        })
        .await
        .map_err(|e| self.err(e))?
        .map_err(|e| PipelineError::source(&self.name, e))?;
        {
            let mut local = self.shared.local.lock().expect("lock");
            for (tp, (_, end, _)) in &bufs {
                let e = local.entry(tp.clone()).or_insert(*end);
                *e = (*e).max(*end);
            }
        }
        let mut ep = self.build_epoch(bufs)?;
        // The replayed ranges are exactly the logged ones (a range with no
        // message left, e.g. after compaction, still counts).
        ep.ranges = ranges.to_vec();
        Ok(ep)
    }
}

/// Poll until the epoch is full, its time is up, or (bounded) every owned
/// partition has reached its end. `None`: bounded and done.
fn read_blocking(
    r: &mut Reader,
    shared: &Shared,
    limits: &EpochLimits,
    max: usize,
    name: &str,
) -> std::result::Result<Option<BTreeMap<Tp, (i64, i64, PartBuf)>>, String> {
    let deadline = Instant::now() + limits.max_duration;
    let mut bufs: BTreeMap<Tp, (i64, i64, PartBuf)> = BTreeMap::new();
    let (mut rows, mut bytes) = (0usize, 0usize);
    let mut last_error: Option<Instant> = None;
    let mut last_group_check: Option<Instant> = None;
    loop {
        // Pick up rebalances that happened inside the last poll.
        let revoked: Vec<Tp> = std::mem::take(&mut *shared.revoked.lock().expect("lock"));
        for tp in revoked {
            if let Some((_, _, b)) = bufs.remove(&tp) {
                rows -= b.msgs.len().min(rows);
                tracing::info!(source = %name, topic = %tp.0, partition = tp.1, dropped = b.msgs.len(), "partition revoked: dropping messages read but not yet in an epoch");
            }
            r.next.remove(&tp);
        }
        let owned = shared.owned.lock().expect("lock").clone();
        for (tp, o) in &owned {
            r.next.entry(tp.clone()).or_insert(*o);
        }
        r.next.retain(|tp, _| owned.contains_key(tp));
        let assigned = *shared.assigned.lock().expect("lock");
        if let Some(bounds) = &r.bounds {
            let done = assigned
                && r.next
                    .iter()
                    .all(|(tp, o)| bounds.get(tp).is_none_or(|b| o >= b));
            if done && !bufs.is_empty() {
                return Ok(Some(bufs));
            }
            // Every partition this worker owns is done; the run ends once the
            // whole group is (a member that died still holds its partitions
            // until its session times out, and they come to a live member then).
            if done && last_group_check.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                last_group_check = Some(Instant::now());
                let mut tpl = TopicPartitionList::new();
                for tp in bounds.keys() {
                    tpl.add_partition(&tp.0, tp.1);
                }
                if let Ok(list) = r.consumer.committed_offsets(tpl, META_TIMEOUT) {
                    let local = shared.local.lock().expect("lock").clone();
                    let all = bounds.iter().all(|(tp, b)| {
                        let group = match list.find_partition(&tp.0, tp.1).map(|e| e.offset()) {
                            Some(Offset::Offset(o)) => o,
                            _ => 0,
                        };
                        group.max(local.get(tp).copied().unwrap_or(0)) >= *b
                    });
                    if all {
                        return Ok(None);
                    }
                }
            }
        }
        if rows >= limits.max_rows.max(1)
            || bytes >= limits.max_bytes.max(1)
            || Instant::now() >= deadline
        {
            return Ok(Some(bufs));
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        match r.consumer.poll(wait) {
            None => {}
            Some(Err(e)) if fatal(&e) => return Err(format!("Kafka consumer error: {e}")),
            Some(Err(e)) => {
                if last_error.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(source = %name, error = %e, "Kafka broker error; the consumer retries (the job pauses until the brokers answer)");
                    last_error = Some(Instant::now());
                }
            }
            Some(Ok(m)) => {
                let tp = (m.topic().to_string(), m.partition());
                let Some(next) = r.next.get(&tp).copied() else {
                    continue;
                };
                let off = m.offset();
                let next = if next < 0 { off } else { next };
                if off < next {
                    continue;
                }
                if let Some(b) = r.bounds.as_ref().and_then(|b| b.get(&tp)) {
                    if off >= *b {
                        r.next.insert(tp, *b);
                        continue;
                    }
                }
                let entry = bufs
                    .entry(tp.clone())
                    .or_insert_with(|| (next, next, PartBuf::default()));
                entry.2.push(
                    off,
                    m.payload(),
                    m.key(),
                    m.timestamp().to_millis(),
                    headers_of(&m),
                    max,
                );
                entry.1 = off + 1;
                rows += 1;
                bytes += m.payload_len() + 1;
                r.next.insert(tp, off + 1);
            }
        }
    }
}
