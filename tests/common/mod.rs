//! Shared helpers of the end-to-end tests: run the `strata` binary as a child
//! process in a temporary working directory, read every `*.parquet` under a
//! table folder back into rows (Hive partition values included, taken from
//! the folder names), dump rows canonically, parse the run summary, and check
//! that a table folder holds only committed files.
//!
//! Every test binary includes this module with `mod common;`; not every binary
//! uses every helper.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;
use serde_json::Value;

/// The workspace root (where `jobs/`, `models/` and `scripts/` are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `strata` binary cargo built for these tests.
pub fn strata_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

/// The models directory handed to every run (`$STRATA_MODELS`, else
/// `<repo>/models`). Fails, never skips, when the default model is missing.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("STRATA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"));
    let tokenizer = dir.join("all-MiniLM-L6-v2").join("tokenizer.json");
    if !tokenizer.is_file() {
        panic!(
            "the end-to-end tests need the default model files ({} is missing): run scripts/fetch_models.sh \
             from the repository root (or set STRATA_MODELS to a folder holding all-MiniLM-L6-v2)",
            tokenizer.display()
        );
    }
    dir
}

/// A fresh temporary directory (removed when dropped).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("strata-it-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A `strata` command running in `cwd` with the test environment.
pub fn strata_cmd(cwd: &Path) -> Command {
    let mut cmd = Command::new(strata_bin());
    cmd.current_dir(cwd)
        .env("STRATA_MODELS", models_dir())
        .env("NO_COLOR", "1")
        .env_remove("STRATA_LOG");
    cmd
}

/// What a finished `strata` process left behind.
#[derive(Debug)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// stdout, ANSI escapes removed.
    pub stdout: String,
    /// stderr, ANSI escapes removed.
    pub stderr: String,
}

impl Output {
    /// Panic with both streams unless the exit code is `code`.
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "{what}: expected exit code {code}, got {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Panic unless the run succeeded; return its parsed summary.
    pub fn summary(&self, what: &str) -> Summary {
        self.expect_code(0, what);
        Summary::parse(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "{what}: cannot parse the run summary ({e}):\n{}",
                self.stdout
            )
        })
    }
}

/// Longest a single `strata` invocation may take in these tests.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(180);

/// Run `cmd` to completion (killing it after [`RUN_TIMEOUT`]).
pub fn run_cmd(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let status = wait_timeout(&mut child, RUN_TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {RUN_TIMEOUT:?}")
    });
    let stdout = strip_ansi(&String::from_utf8_lossy(
        &t_out.join().expect("stdout reader"),
    ));
    let stderr = strip_ansi(&String::from_utf8_lossy(
        &t_err.join().expect("stderr reader"),
    ));
    Output {
        status,
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Run `strata ARGS...` in `cwd`.
pub fn strata(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = strata_cmd(cwd);
    cmd.args(args);
    run_cmd(cmd)
}

/// Wait for `child` at most `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait for child") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Remove ANSI escape sequences (log colours).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A path as a `&str` (the tests only use UTF-8 temporary paths).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Write a job file `name` into `dir` and return its absolute path.
pub fn write_job(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write job file");
    path
}

// ---------------------------------------------------------------------------
// Run summary

/// Counts of one source in the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceCounts {
    pub records: u64,
    pub rows: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
}

/// Figures of one sink in the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub rows: u64,
    pub files: u64,
    pub location: String,
}

/// The summary `strata run` prints on stdout.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub job: String,
    /// `completed` or `drained on signal`.
    pub outcome: String,
    pub epochs: u64,
    pub replayed: u64,
    pub sources: BTreeMap<String, SourceCounts>,
    pub sinks: BTreeMap<String, SinkCounts>,
}

fn num(s: &str) -> Result<u64, String> {
    s.trim().parse::<u64>().map_err(|e| format!("'{s}': {e}"))
}

impl Summary {
    /// Parse
    /// ```text
    /// job 'x' completed: 3 epoch(s) (1 replayed after a restart) in 0.5s
    ///   source docs: 300 records (298 rows, 1 dead-lettered, 1 dropped), 730.8 KiB, 88 records/s
    ///   sink chunks: 1565 rows in 5 file(s), 238.1 KiB -> file:///tmp/out/chunks
    /// ```
    pub fn parse(stdout: &str) -> Result<Summary, String> {
        let mut sum = Summary::default();
        let mut seen_job = false;
        for line in stdout.lines() {
            if let Some(rest) = line.strip_prefix("job '") {
                let (job, rest) = rest.split_once("' ").ok_or("job line")?;
                let (outcome, rest) = rest.split_once(": ").ok_or("job outcome")?;
                let (epochs, rest) = rest.split_once(" epoch(s)").ok_or("epoch count")?;
                sum.job = job.to_string();
                sum.outcome = outcome.to_string();
                sum.epochs = num(epochs)?;
                if let Some(r) = rest.trim_start().strip_prefix('(') {
                    sum.replayed = num(r.split_whitespace().next().ok_or("replayed count")?)?;
                }
                seen_job = true;
            } else if let Some(rest) = line.strip_prefix("  source ") {
                let (name, rest) = rest.split_once(": ").ok_or("source name")?;
                let (records, rest) = rest.split_once(" records (").ok_or("source records")?;
                let (inner, _) = rest.split_once(')').ok_or("source counts")?;
                let parts: Vec<&str> = inner.split(", ").collect();
                let field = |i: usize, suffix: &str| -> Result<u64, String> {
                    num(parts
                        .get(i)
                        .and_then(|p| p.strip_suffix(suffix))
                        .ok_or_else(|| format!("source field '{suffix}' in '{inner}'"))?)
                };
                let c = SourceCounts {
                    records: num(records)?,
                    rows: field(0, " rows")?,
                    dead_lettered: field(1, " dead-lettered")?,
                    dropped: field(2, " dropped")?,
                };
                sum.sources.insert(name.to_string(), c);
            } else if let Some(rest) = line.strip_prefix("  sink ") {
                let (name, rest) = rest.split_once(": ").ok_or("sink name")?;
                let (rows, rest) = rest.split_once(" rows in ").ok_or("sink rows")?;
                let (files, rest) = rest.split_once(" file(s)").ok_or("sink files")?;
                let (_, location) = rest.split_once(" -> ").ok_or("sink location")?;
                sum.sinks.insert(
                    name.to_string(),
                    SinkCounts {
                        rows: num(rows)?,
                        files: num(files)?,
                        location: location.trim().to_string(),
                    },
                );
            }
        }
        if !seen_job {
            return Err("no 'job ...' line".into());
        }
        Ok(sum)
    }

    /// Counts of source `name` (panics when absent).
    pub fn source(&self, name: &str) -> &SourceCounts {
        self.sources
            .get(name)
            .unwrap_or_else(|| panic!("no source '{name}' in the summary: {self:?}"))
    }

    /// Figures of sink `name` (panics when absent).
    pub fn sink(&self, name: &str) -> &SinkCounts {
        self.sinks
            .get(name)
            .unwrap_or_else(|| panic!("no sink '{name}' in the summary: {self:?}"))
    }
}

/// `file:///a/b` -> `/a/b`; anything else unchanged.
pub fn local_path_of(url: &str) -> PathBuf {
    PathBuf::from(url.strip_prefix("file://").unwrap_or(url))
}

// ---------------------------------------------------------------------------
// Reading tables back

/// A canonical row: column name -> JSON value.
pub type Row = BTreeMap<String, Value>;

/// One Parquet file of a table.
#[derive(Clone, Debug)]
pub struct TableFile {
    /// Path relative to the table folder, `/`-separated.
    pub rel: String,
    /// Hive partition values from the folder names (`None` for NULL).
    pub partitions: Vec<(String, Option<String>)>,
    /// The file's metadata.
    pub metadata: Arc<ParquetMetaData>,
    /// Its rows.
    pub batches: Vec<RecordBatch>,
}

impl TableFile {
    /// Rows of the file with the partition values added as string columns.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for b in &self.batches {
            for mut r in batch_rows(b) {
                for (k, v) in &self.partitions {
                    r.insert(
                        k.clone(),
                        v.clone().map(Value::String).unwrap_or(Value::Null),
                    );
                }
                rows.push(r);
            }
        }
        rows
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Decode a Parquet file held in memory.
pub fn read_parquet_bytes(data: Bytes) -> (Arc<ParquetMetaData>, Vec<RecordBatch>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(data).expect("a valid Parquet file");
    let meta = builder.metadata().clone();
    let batches = builder
        .build()
        .expect("Parquet reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("read Parquet batches");
    (meta, batches)
}

/// Decode a local Parquet file.
pub fn read_parquet_file(path: &Path) -> (Arc<ParquetMetaData>, Vec<RecordBatch>) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    read_parquet_bytes(Bytes::from(data))
}

/// Undo Hive's `%XX` escaping of partition folder names.
pub fn hive_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Hive partitions (`k=v` folders) of a relative object name.
pub fn hive_partitions(rel: &str) -> Vec<(String, Option<String>)> {
    let parts: Vec<&str> = rel.split('/').collect();
    parts[..parts.len().saturating_sub(1)]
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                hive_unescape(k),
                if v == "__HIVE_DEFAULT_PARTITION__" {
                    None
                } else {
                    Some(hive_unescape(v))
                },
            )
        })
        .collect()
}

/// Every file and folder under `dir`, relative and `/`-separated, sorted;
/// folders end with `/`.
pub fn list_tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .replace('\\', "/");
            if p.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Every `*.parquet` file under `dir` (recursively), sorted by relative name.
pub fn read_table(dir: &Path) -> Vec<TableFile> {
    list_tree(dir)
        .into_iter()
        .filter(|rel| rel.ends_with(".parquet"))
        .map(|rel| {
            let (metadata, batches) = read_parquet_file(&dir.join(&rel));
            TableFile {
                partitions: hive_partitions(&rel),
                rel,
                metadata,
                batches,
            }
        })
        .collect()
}

/// All rows of the table under `dir`, partition values included.
pub fn table_rows(dir: &Path) -> Vec<Row> {
    read_table(dir).iter().flat_map(|f| f.rows()).collect()
}

/// A batch as rows (Arrow's JSON encoding, nulls explicit, floats rounded).
pub fn batch_rows(batch: &RecordBatch) -> Vec<Row> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut buf);
        w.write(batch).expect("encode batch as JSON");
        w.finish().expect("finish JSON");
    }
    if buf.is_empty() {
        return Vec::new();
    }
    let values: Vec<Value> = serde_json::from_slice(&buf).expect("Arrow's JSON parses");
    values
        .into_iter()
        .map(|v| match canonical(v) {
            Value::Object(m) => m.into_iter().collect(),
            other => panic!("a row encoded as {other}"),
        })
        .collect()
}

/// Arrays at least this long made only of numbers are embedding vectors.
const VECTOR_MIN_LEN: usize = 32;

/// Round floats to 6 decimals and sort object keys, recursively. Embedding vectors become
/// `{"vector_dims": D, "vector_norm": |v| to 3 decimals}`: their last digits depend on the
/// CPU's SIMD kernels, and their values are checked against reference vectors elsewhere
/// (operators/tests/local_embed.rs).
pub fn canonical(v: Value) -> Value {
    match v {
        Value::Array(a) if a.len() >= VECTOR_MIN_LEN && a.iter().all(Value::is_number) => {
            let norm = a
                .iter()
                .map(|x| x.as_f64().unwrap_or(0.0).powi(2))
                .sum::<f64>()
                .sqrt();
            serde_json::json!({
                "vector_dims": a.len(),
                "vector_norm": (norm * 1e3).round() / 1e3,
            })
        }
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().expect("f64");
            let r = (x * 1e6).round() / 1e6;
            serde_json::Number::from_f64(if r == 0.0 { 0.0 } else { r })
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        Value::Object(m) => {
            let sorted: BTreeMap<String, Value> =
                m.into_iter().map(|(k, v)| (k, canonical(v))).collect();
            Value::Object(sorted.into_iter().collect())
        }
        other => other,
    }
}

/// One row as a JSON object with sorted keys.
pub fn row_json(row: &Row) -> String {
    let obj: serde_json::Map<String, Value> = row
        .iter()
        .map(|(k, v)| (k.clone(), canonical(v.clone())))
        .collect();
    serde_json::to_string(&Value::Object(obj)).expect("serialize row")
}

/// Rows sorted, one JSON object per line (the golden-file format).
pub fn canonical_dump(rows: &[Row]) -> String {
    let mut lines: Vec<String> = rows.iter().map(row_json).collect();
    lines.sort();
    let mut out = lines.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// Integer column `name` of every row (panics on a missing or non-integer value).
pub fn int_column(rows: &[Row], name: &str) -> Vec<i64> {
    rows.iter()
        .map(|r| {
            r.get(name)
                .and_then(Value::as_i64)
                .unwrap_or_else(|| panic!("row without integer '{name}': {r:?}"))
        })
        .collect()
}

/// Assert every value of `ids` in `0..n` appears exactly once.
pub fn assert_exactly_once(ids: &[i64], n: i64, what: &str) {
    let mut counts = vec![0u32; n as usize];
    let mut foreign = Vec::new();
    for &id in ids {
        if (0..n).contains(&id) {
            counts[id as usize] += 1;
        } else {
            foreign.push(id);
        }
    }
    let missing: Vec<i64> = (0..n).filter(|&i| counts[i as usize] == 0).collect();
    let dup: Vec<(i64, u32)> = (0..n)
        .filter(|&i| counts[i as usize] > 1)
        .map(|i| (i, counts[i as usize]))
        .collect();
    assert!(
        missing.is_empty() && dup.is_empty() && foreign.is_empty(),
        "{what}: every id in 0..{n} must appear exactly once; {} rows, {} missing (first {:?}), {} duplicated (first {:?}), unexpected {:?}",
        ids.len(),
        missing.len(),
        &missing[..missing.len().min(10)],
        dup.len(),
        &dup[..dup.len().min(10)],
        &foreign[..foreign.len().min(10)]
    );
}

/// Assert the table folder `dir` holds only committed files: `*.parquet`
/// files (none hidden) exactly `partition_keys.len()` folders deep, every
/// folder on the way named `key=value` in `partition_keys` order, and no
/// other file or folder (no staging, temporary or marker files).
pub fn assert_clean_table(dir: &Path, partition_keys: &[&str]) {
    let tree = list_tree(dir);
    assert!(
        tree.iter().any(|e| e.ends_with(".parquet")),
        "no Parquet file under {}: {tree:?}",
        dir.display()
    );
    for entry in &tree {
        let is_dir = entry.ends_with('/');
        let parts: Vec<&str> = entry.trim_end_matches('/').split('/').collect();
        let folders = if is_dir {
            &parts[..]
        } else {
            &parts[..parts.len() - 1]
        };
        for (i, f) in folders.iter().enumerate() {
            let ok = partition_keys
                .get(i)
                .is_some_and(|k| f.starts_with(&format!("{k}=")));
            assert!(ok, "unexpected folder '{entry}' in table {} (partition keys {partition_keys:?}); all: {tree:?}", dir.display());
        }
        if !is_dir {
            let name = parts[parts.len() - 1];
            assert!(
                name.ends_with(".parquet") && !name.starts_with('.') && !name.starts_with('_'),
                "stray file '{entry}' in table {}: only committed *.parquet files may be there; all: {tree:?}",
                dir.display()
            );
            assert_eq!(
                folders.len(),
                partition_keys.len(),
                "file '{entry}' is not in a leaf partition folder of {}",
                dir.display()
            );
        }
    }
}

/// Assert every file under `dir` is a visible `*.parquet` file (no staging,
/// temporary, hidden or marker files), whatever the partition layout.
pub fn assert_only_parquet(dir: &Path) {
    for entry in list_tree(dir) {
        let hidden = entry
            .trim_end_matches('/')
            .split('/')
            .any(|p| p.starts_with('.') || p.starts_with('_'));
        let ok = !hidden && (entry.ends_with('/') || entry.ends_with(".parquet"));
        assert!(
            ok,
            "stray entry '{entry}' in table {}: only committed *.parquet files may be there",
            dir.display()
        );
    }
}

/// Write JSON Lines of `rows` to `path`.
pub fn write_jsonl(path: &Path, rows: impl IntoIterator<Item = Value>) {
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(&r).expect("row as JSON"));
        out.push('\n');
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create input folder");
    }
    std::fs::write(path, out).expect("write JSONL");
}

/// The epochs (file names `<epoch>.json`) present in `checkpoint/<dir>/`.
pub fn checkpoint_epochs(checkpoint: &Path, dir: &str) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(checkpoint.join(dir))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------------------
// Killing a run at a chosen point

/// Send `sig` to the child process `pid`.
pub fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child process this test started and has not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}) failed: {}",
        std::io::Error::last_os_error()
    );
}

/// Poll `due` while `child` runs; when it holds, freeze the process
/// (SIGSTOP), check `due` again on the frozen state and, if it still holds,
/// SIGKILL it and reap it. Otherwise let it go on (SIGCONT) and keep polling.
/// `Err(status)` when the process ended before `due` held.
pub fn kill_when(child: &mut Child, due: &mut dyn FnMut() -> bool) -> Result<(), ExitStatus> {
    let pid = child.id();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return Err(status);
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the kill point was not reached within {RUN_TIMEOUT:?}");
        }
        if due() {
            signal(pid, libc::SIGSTOP);
            if due() {
                signal(pid, libc::SIGKILL);
                let status =
                    wait_timeout(child, Duration::from_secs(30)).expect("a killed process exits");
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGKILL),
                    "the run ended with {status} instead of being killed"
                );
                return Ok(());
            }
            signal(pid, libc::SIGCONT);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The exact sum of a Decimal128 column of a table, in units of its scale.
pub fn decimal_sum(dir: &Path, column: &str) -> (i128, i8) {
    let mut sum = 0i128;
    let mut scale = 0;
    for f in read_table(dir) {
        for b in &f.batches {
            let col = b.column_by_name(column).expect("decimal column");
            let dec = col
                .as_any()
                .downcast_ref::<arrow::array::Decimal128Array>()
                .expect("Decimal128");
            scale = dec.scale();
            sum += dec.iter().map(|v| v.unwrap_or(0)).sum::<i128>();
        }
    }
    (sum, scale)
}

pub fn int_sum(dir: &Path, column: &str) -> i64 {
    table_rows(dir)
        .iter()
        .map(|r| r[column].as_i64().expect("integer"))
        .sum()
}

/// Binary columns come back from the JSON rows hex-encoded.
pub fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}
