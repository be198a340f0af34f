//! Crash recovery, the exactly-once guarantee (DESIGN §4): a `strata run`
//! killed with SIGKILL anywhere, then run again with the same command, leaves
//! every input record in the output exactly once (and every bad record in
//! the dead letter exactly once), with nothing but committed `*.parquet` files
//! in the table folders. SIGTERM drains: the run commits what it read, exits
//! 0 saying so, and a re-run finishes the job.
//!
//! Kill points are taken from the checkpoint (`offsets/`, `manifests/`,
//! `commits/`): the test polls it, freezes the process with SIGSTOP when the
//! wanted state shows, checks the state again while the process cannot move,
//! and only then sends SIGKILL, so "after the offsets of epoch N were logged
//! but before N committed" is hit exactly, not by luck of timing.

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use arrow::array::Array;
use serde_json::{json, Value};

use common::*;

/// Good input records (ids 0..N).
const N: i64 = 20_000;
/// Records per epoch.
const EPOCH_ROWS: u64 = 500;
/// Every this many good records, one bad record (dead-lettered).
const BAD_EVERY: i64 = 1_000;
const JOB: &str = "recovery";

fn body(id: i64) -> String {
    format!("body of {id} {}", "x".repeat((id % 37) as usize))
}

fn tenant(id: i64) -> String {
    format!("t{}", id % 4)
}

/// A bad record's line (BODY is a number where TEXT is declared).
fn bad_line(k: i64) -> String {
    format!(
        "{{\"id\": {}, \"tenant\": \"t0\", \"body\": {k}}}",
        1_000_000 + k
    )
}

struct Scenario {
    dir: tempfile::TempDir,
    job: PathBuf,
    out: PathBuf,
    dlq: PathBuf,
    bad: Vec<String>,
    runs: usize,
}

impl Scenario {
    /// Two input files of JSON Lines (so epochs cross a file boundary), bad
    /// records sprinkled in, a job with small epochs into a partitioned sink
    /// with rollover, and a dead letter.
    fn new() -> Scenario {
        Scenario::with_rollover(100)
    }

    /// Like [`Scenario::new`] with `'rollover.rows' = rollover`.
    fn with_rollover(rollover: u64) -> Scenario {
        let dir = tempdir();
        let input = dir.path().join("input");
        std::fs::create_dir_all(&input).expect("input folder");
        let mut bad = Vec::new();
        for (part, ids) in [(0, 0..N / 2), (1, N / 2..N)] {
            let mut text = String::new();
            for id in ids {
                if id % BAD_EVERY == 500 {
                    let line = bad_line(id / BAD_EVERY);
                    text.push_str(&line);
                    text.push('\n');
                    bad.push(line);
                }
                let row: Value = json!({"id": id, "tenant": tenant(id), "body": body(id)});
                text.push_str(&row.to_string());
                text.push('\n');
            }
            std::fs::write(input.join(format!("part-{part}.jsonl")), text).expect("write input");
        }
        let out = dir.path().join("out");
        let dlq = dir.path().join("dlq");
        let text = format!(
            "SET job.name = '{JOB}';\n\
             SET epoch.max_rows = '{EPOCH_ROWS}';\n\
             CREATE TABLE src (id BIGINT NOT NULL, tenant TEXT NOT NULL, body TEXT)\n\
             WITH (connector = 'file', path = '{input}/', format = 'json', bad_data = 'dead_letter', dead_letter = '{dlq}/');\n\
             CREATE TABLE out WITH (connector = 'parquet', path = '{out}/', partition_by = 'tenant', 'rollover.rows' = {rollover});\n\
             INSERT INTO out SELECT id, tenant, body FROM src;\n",
            input = s(&input),
            dlq = s(&dlq),
            out = s(&out),
        );
        let job = write_job(dir.path(), "recovery.sql", &text);
        Scenario {
            dir,
            job,
            out,
            dlq,
            bad,
            runs: 0,
        }
    }

    fn checkpoint(&self) -> PathBuf {
        self.dir.path().join(".strata").join(JOB)
    }

    fn state(&self) -> CheckpointState {
        let cp = self.checkpoint();
        let mut st = CheckpointState {
            offsets: checkpoint_epochs(&cp, "offsets").last().copied(),
            manifests: checkpoint_epochs(&cp, "manifests").last().copied(),
            commits: checkpoint_epochs(&cp, "commits").last().copied(),
            ..Default::default()
        };
        // Objects of an uncommitted manifest already visible in the table.
        if let Some(m) = st.manifests.filter(|m| Some(*m) > st.commits) {
            let path = cp.join("manifests").join(format!("{m:020}.json"));
            if let Some(objects) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| v["sinks"]["out"].as_array().cloned())
            {
                st.in_manifest = objects.len();
                st.published = objects
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|o| self.out.join(o).is_file())
                    .count();
            }
        }
        st
    }

    /// Start `strata run` in the background, its output going to files.
    fn spawn(&mut self) -> (Child, PathBuf, PathBuf) {
        self.runs += 1;
        let stdout = self.dir.path().join(format!("run{}.stdout", self.runs));
        let stderr = self.dir.path().join(format!("run{}.stderr", self.runs));
        let mut cmd = strata_cmd(self.dir.path());
        cmd.args(["run", s(&self.job)])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        (cmd.spawn().expect("start strata run"), stdout, stderr)
    }

    /// Run to completion.
    fn run(&mut self) -> Output {
        let mut cmd = strata_cmd(self.dir.path());
        cmd.args(["run", s(&self.job)]);
        self.runs += 1;
        run_cmd(cmd)
    }

    /// Start a run and SIGKILL it at `at`; return the checkpoint state the
    /// process was killed in.
    fn kill_at(&mut self, at: KillAt) -> CheckpointState {
        let started = Instant::now();
        let due = move |sc: &Scenario| match at {
            KillAt::Immediately => true,
            KillAt::After(d) => started.elapsed() >= d,
            _ => at.reached(&sc.state()),
        };
        self.kill_when(&format!("{at:?}"), &due)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start a run and SIGKILL it once `due` holds (checked again while the
    /// process is stopped). `Err` when the run ended first.
    fn kill_when(
        &mut self,
        what: &str,
        due: &dyn Fn(&Scenario) -> bool,
    ) -> Result<CheckpointState, String> {
        let (mut child, stdout, stderr) = self.spawn();
        match common::kill_when(&mut child, &mut || due(self)) {
            Ok(()) => Ok(self.state()),
            Err(status) => Err(format!(
                "the run ended ({status}) before the kill point {what} was reached; state {:?}\n--- stdout\n{}\n--- stderr\n{}",
                self.state(),
                std::fs::read_to_string(&stdout).unwrap_or_default(),
                strip_ansi(&std::fs::read_to_string(&stderr).unwrap_or_default())
            )),
        }
    }

    /// Re-run to completion and check the whole output. The re-run must
    /// replay exactly one epoch when the kill left one logged but uncommitted
    /// (`killed_in`), none otherwise.
    fn finish(&mut self, killed_in: &CheckpointState) -> Summary {
        let o = self.run();
        let sum = o.summary("the re-run after a crash");
        assert_eq!(sum.outcome, "completed", "{}", o.stdout);
        let expect_replay = killed_in.uncommitted().is_some();
        assert_eq!(
            sum.replayed,
            u64::from(expect_replay),
            "replayed epochs after a kill in {killed_in:?}:\n{}\n{}",
            o.stdout,
            o.stderr
        );
        self.check_output();
        sum
    }

    /// Every good id once in the table, every bad record once in the dead
    /// letter, nothing else anywhere, nothing left in staging.
    fn check_output(&self) {
        assert_clean_table(&self.out, &["tenant"]);
        let rows = table_rows(&self.out);
        let ids = int_column(&rows, "id");
        assert_exactly_once(&ids, N, "output after recovery");
        for r in &rows {
            let id = r["id"].as_i64().expect("id");
            assert_eq!(r["tenant"], Value::String(tenant(id)), "tenant of {id}");
            assert_eq!(r["body"], Value::String(body(id)), "body of {id}");
        }
        assert_clean_table(&self.dlq, &[]);
        let mut raws: Vec<String> = Vec::new();
        for f in read_table(&self.dlq) {
            for b in &f.batches {
                let raw = b.column_by_name("raw").expect("raw column");
                let raw = raw
                    .as_any()
                    .downcast_ref::<arrow::array::BinaryArray>()
                    .expect("raw is Binary");
                raws.extend(
                    (0..raw.len())
                        .map(|i| String::from_utf8(raw.value(i).to_vec()).expect("UTF-8 raw")),
                );
            }
        }
        raws.sort();
        let mut want = self.bad.clone();
        want.sort();
        assert_eq!(
            raws, want,
            "every bad record exactly once in the dead letter"
        );
        let staging = self.checkpoint().join("staging");
        let left: Vec<String> = list_tree(&staging)
            .into_iter()
            .filter(|e| !e.ends_with('/'))
            .collect();
        assert!(
            left.is_empty(),
            "staged files left behind after a completed run: {left:?}"
        );
    }
}

/// Newest epoch in each checkpoint folder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct CheckpointState {
    offsets: Option<u64>,
    manifests: Option<u64>,
    commits: Option<u64>,
    /// Objects of the sink `out` in the uncommitted manifest.
    in_manifest: usize,
    /// How many of them are visible in the table.
    published: usize,
}

impl CheckpointState {
    /// The epoch logged but not committed, if any.
    fn uncommitted(&self) -> Option<u64> {
        self.offsets.filter(|o| Some(*o) > self.commits)
    }
}

#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// Right after the process starts (before any epoch).
    Immediately,
    /// After a delay.
    After(Duration),
    /// Epoch >= N has its offsets logged, but is not committed.
    Logged(u64),
    /// Epoch >= N has its manifest logged (publishing may be under way), but is not committed.
    Manifested(u64),
    /// At least N epochs committed and none in flight in the checkpoint.
    Between(u64),
    /// Epoch >= N is not committed but some of its files are already
    /// published in the table (a crash in the middle of publishing).
    Published(u64),
}

impl KillAt {
    fn reached(&self, s: &CheckpointState) -> bool {
        match *self {
            KillAt::Immediately | KillAt::After(_) => true,
            KillAt::Logged(n) => s.uncommitted().is_some_and(|e| e >= n),
            KillAt::Manifested(n) => s.manifests.is_some_and(|m| m >= n && Some(m) > s.commits),
            KillAt::Between(n) => s.commits.is_some_and(|c| c >= n) && s.offsets == s.commits,
            KillAt::Published(n) => {
                s.manifests.is_some_and(|m| m >= n && Some(m) > s.commits) && s.published > 0
            }
        }
    }
}

fn kill_and_recover(at: KillAt) {
    let mut sc = Scenario::new();
    let state = sc.kill_at(at);
    eprintln!("killed at {at:?} in {state:?}");
    if matches!(
        at,
        KillAt::Logged(_) | KillAt::Manifested(_) | KillAt::Published(_)
    ) {
        assert!(
            state.uncommitted().is_some(),
            "killed at {at:?} with nothing in flight: {state:?}"
        );
    }
    sc.finish(&state);
}

#[test]
fn sigkill_immediately_after_start() {
    kill_and_recover(KillAt::Immediately);
}

#[test]
fn sigkill_after_first_offsets_logged_before_commit() {
    kill_and_recover(KillAt::Logged(1));
}

#[test]
fn sigkill_mid_publish_after_manifest_before_commit() {
    kill_and_recover(KillAt::Manifested(8));
}

#[test]
fn sigkill_with_an_epoch_partly_published() {
    kill_and_recover(KillAt::Published(3));
}

#[test]
fn sigkill_between_two_epochs() {
    kill_and_recover(KillAt::Between(20));
}

#[test]
fn sigkill_after_a_delay() {
    kill_and_recover(KillAt::After(Duration::from_millis(250)));
}

#[test]
fn sigkill_in_the_last_epochs_after_pruning_old_checkpoint_entries() {
    // Past epoch 16 the checkpoint prunes old entries; 20020 records make 41 epochs.
    kill_and_recover(KillAt::Logged(38));
}

#[test]
fn sigkill_twice_then_complete() {
    let mut sc = Scenario::new();
    let first = sc.kill_at(KillAt::Manifested(5));
    let e = first.uncommitted().expect("an epoch in flight");
    // The second run replays epoch e; kill it once it is past e.
    let second = sc.kill_at(KillAt::Logged(e + 3));
    assert!(second.uncommitted().is_some(), "{second:?}");
    sc.finish(&second);
}

#[test]
fn sigterm_drains_then_rerun_completes() {
    let mut sc = Scenario::new();
    let (mut child, stdout, stderr) = sc.spawn();
    let pid = child.id();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the run ended ({status}) before 5 epochs were committed");
        }
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "5 epochs not committed in time"
        );
        if KillAt::Between(5).reached(&sc.state()) || KillAt::Logged(6).reached(&sc.state()) {
            break;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    signal(pid, libc::SIGSTOP);
    let at = sc.state();
    assert!(
        at.commits.is_some_and(|c| c < 30),
        "the run must still be far from done: {at:?}"
    );
    signal(pid, libc::SIGTERM);
    signal(pid, libc::SIGCONT);
    let status = wait_timeout(&mut child, RUN_TIMEOUT).expect("a drained run exits");
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    let err = strip_ansi(&std::fs::read_to_string(&stderr).unwrap_or_default());
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM: drain, commit and exit 0; got {status}\n--- stdout\n{out}\n--- stderr\n{err}"
    );
    let sum = Summary::parse(&out)
        .unwrap_or_else(|e| panic!("no summary after SIGTERM ({e}):\n{out}\n{err}"));
    assert_eq!(sum.outcome, "drained on signal", "{out}");
    let drained = sc.state();
    assert_eq!(
        drained.uncommitted(),
        None,
        "a drained run leaves no epoch in flight: {drained:?}"
    );
    assert!(
        drained.commits.is_some_and(|c| c < 41),
        "it stopped early: {drained:?}"
    );

    // What it committed is there exactly once.
    let rows = table_rows(&sc.out);
    let mut ids = int_column(&rows, "id");
    assert_eq!(
        ids.len() as u64,
        sum.sink("out").rows,
        "rows in the table = rows the drained run reported"
    );
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "no row twice after a drain");
    assert_clean_table(&sc.out, &["tenant"]);

    let o = sc.run();
    let rest = o.summary("the re-run after a drain");
    assert_eq!(
        (rest.outcome.as_str(), rest.replayed),
        ("completed", 0),
        "{}",
        o.stdout
    );
    assert_eq!(
        sum.source("src").records + rest.source("src").records,
        N as u64 + sc.bad.len() as u64,
        "the two runs together read every record once"
    );
    sc.check_output();
}

/// A job that is already complete: the re-run reads nothing and changes nothing.
#[test]
fn rerun_after_completion_changes_nothing() {
    let mut sc = Scenario::new();
    let first = sc.run().summary("first run");
    assert_eq!(first.source("src").records, N as u64 + sc.bad.len() as u64);
    sc.check_output();
    let before = list_tree(&sc.out);
    let again = sc.run().summary("second run");
    assert_eq!((again.epochs, again.source("src").records), (0, 0));
    assert_eq!(list_tree(&sc.out), before);
    sc.check_output();
}

fn manifest_path(sc: &Scenario, epoch: u64) -> PathBuf {
    sc.checkpoint()
        .join("manifests")
        .join(format!("{epoch:020}.json"))
}

/// Objects of sink `out` in the manifest of `epoch`, if it is there.
fn manifest_objects(sc: &Scenario, epoch: u64) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(&std::fs::read(manifest_path(sc, epoch)).ok()?).ok()?;
    Some(
        v["sinks"]["out"]
            .as_array()?
            .iter()
            .filter_map(|o| o.as_str().map(str::to_string))
            .collect(),
    )
}

/// Make the interrupted attempt of `epoch` look as if it had produced one more
/// file than a replay will: a copy of one of its published files under the
/// next-but-many sequence number, listed in its manifest. Returns its name.
fn add_surplus_object(sc: &Scenario, epoch: u64) -> String {
    let mut objects = manifest_objects(sc, epoch).expect("manifest of the epoch in flight");
    let published = objects
        .iter()
        .find(|o| sc.out.join(o.as_str()).is_file())
        .expect("a published object")
        .clone();
    let (stem, _) = published
        .rsplit_once('-')
        .expect("object names end with -<seq>.parquet");
    let extra = format!("{stem}-09999.parquet");
    std::fs::copy(sc.out.join(&published), sc.out.join(&extra)).expect("copy a published file");
    objects.push(extra.clone());
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(manifest_path(sc, epoch)).expect("manifest"))
            .expect("manifest JSON");
    manifest["sinks"]["out"] = json!(objects);
    std::fs::write(
        manifest_path(sc, epoch),
        serde_json::to_vec_pretty(&manifest).expect("JSON"),
    )
    .expect("write manifest");
    extra
}

/// A replay that produces fewer objects than the interrupted attempt removes
/// the surplus (the attempt's manifest lists it).
#[test]
fn replay_removes_the_interrupted_attempts_surplus_files() {
    let mut sc = Scenario::with_rollover(10);
    let first = sc.kill_at(KillAt::Published(3));
    let e = first.uncommitted().expect("an epoch in flight");
    let extra = add_surplus_object(&sc, e);
    sc.finish(&first);
    assert!(
        !sc.out.join(&extra).exists(),
        "{extra} must be removed by the replay"
    );
}

/// Regression: a replay used to log its own manifest over the interrupted
/// attempt's. When the replay produces fewer objects than the first attempt
/// did (time-based `rollover.interval` splits files differently on every
/// attempt) and is itself killed before it removes the surplus and commits,
/// the next run no longer knows the first attempt's surplus objects: they stay
/// in the table and their rows appear twice.
///
/// The first attempt's surplus is simulated by one more file (a copy of one of
/// its files under the next sequence number, listed in its manifest), exactly
/// what a first attempt that rolled over once more would have left.
#[test]
fn sigkill_during_a_replay_still_removes_the_first_attempts_surplus_files() {
    for _try in 0..3 {
        // Small files: many objects per epoch, so publishing takes a while.
        let mut sc = Scenario::with_rollover(10);
        let first = sc.kill_at(KillAt::Published(3));
        let e = first.uncommitted().expect("an epoch in flight");
        let extra = add_surplus_object(&sc, e);

        // Second run: stop it once the replay has logged its manifest, before it commits.
        let commit = sc
            .checkpoint()
            .join("commits")
            .join(format!("{e:020}.json"));
        let mtime = |sc: &Scenario| {
            std::fs::metadata(manifest_path(sc, e))
                .and_then(|m| m.modified())
                .ok()
        };
        let before = mtime(&sc);
        let replay_logged =
            |sc: &Scenario| mtime(sc).is_some() && mtime(sc) != before && !commit.exists();
        match sc.kill_when(
            "the replay logged its manifest but has not committed",
            &replay_logged,
        ) {
            Ok(state) => {
                eprintln!("second run killed in {state:?}");
                let o = sc.run();
                o.summary("third run");
                assert!(
                    !sc.out.join(&extra).exists(),
                    "{extra}: an object of the first attempt of epoch {e} that no replay produced is still in the table (its rows are now duplicated)"
                );
                sc.check_output();
                return;
            }
            Err(why) => eprintln!("retrying: {why}"),
        }
    }
    panic!("could not stop a replay between its manifest and its commit in 3 tries");
}

/// A second SIGTERM stops the run at once (exit 130); the next run re-runs
/// whatever was in flight and the output is exactly once.
#[test]
fn second_sigterm_stops_at_once_then_rerun_is_exactly_once() {
    let mut sc = Scenario::new();
    let (mut child, stdout, stderr) = sc.spawn();
    let pid = child.id();
    let started = Instant::now();
    while !KillAt::Between(3).reached(&sc.state()) && !KillAt::Logged(4).reached(&sc.state()) {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the run ended before 3 epochs were committed"
        );
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "3 epochs not committed in time"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
    signal(pid, libc::SIGTERM);
    // Wait until the first signal was handled, then send the second.
    while !std::fs::read_to_string(&stderr)
        .unwrap_or_default()
        .contains("signal received")
    {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            started.elapsed() < RUN_TIMEOUT,
            "the first SIGTERM was not acknowledged"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    if child.try_wait().expect("wait").is_none() {
        let _ = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    let status = wait_timeout(&mut child, RUN_TIMEOUT).expect("the run exits");
    let err = strip_ansi(&std::fs::read_to_string(&stderr).unwrap_or_default());
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    // 130: stopped by the second signal; 0: the drain finished before it arrived.
    assert!(
        matches!(status.code(), Some(130) | Some(0)),
        "two SIGTERMs: exit 130 (or 0 when the drain won the race); got {status}\n{out}\n{err}"
    );
    if status.code() == Some(130) {
        assert!(
            err.contains("second signal"),
            "the second signal is explained on stderr:\n{err}"
        );
    }
    let killed_in = sc.state();
    sc.finish(&killed_in);
}

/// Files that appear under the source's path after a run are read by the
/// next run, and nothing read before is read again.
#[test]
fn a_new_input_file_is_read_by_the_next_run_and_nothing_else() {
    let mut sc = Scenario::new();
    sc.run().summary("first run");
    sc.check_output();
    let input = sc.dir.path().join("input").join("part-2.jsonl");
    let mut text = String::new();
    for id in N..N + 700 {
        text.push_str(&json!({"id": id, "tenant": tenant(id), "body": body(id)}).to_string());
        text.push('\n');
    }
    std::fs::write(&input, text).expect("write a new input file");
    let o = sc.run();
    let sum = o.summary("run after a new file arrived");
    assert_eq!(
        (sum.source("src").records, sum.sink("out").rows, sum.epochs),
        (700, 700, 2),
        "{}",
        o.stdout
    );
    let rows = table_rows(&sc.out);
    assert_exactly_once(&int_column(&rows, "id"), N + 700, "after the new file");
    assert_clean_table(&sc.out, &["tenant"]);
}
