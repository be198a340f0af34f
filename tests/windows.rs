//! Event-time tumbling windows through the `strata` binary: `GROUP BY tumble(ts, ...)` emits
//! every window exactly once when the watermark passes its end, drops (and counts) rows that
//! arrive after their window was emitted, closes the last windows at the end of a bounded
//! input, and keeps its state in the checkpoint so a SIGKILL at any point followed by a
//! re-run neither loses nor repeats a window.

mod common;
#[path = "../operators/tests/common/fake_endpoints.rs"]
mod fake_endpoints;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::json;

use common::*;

/// Events, one minute apart on average, over about 33 hours.
const N: i64 = 2_000;
const MODELS: [&str; 3] = ["haiku", "sonnet", "nova"];
/// 2026-11-01T00:00:00Z in seconds.
const T0: i64 = 1_793_491_200;
/// Rows that arrive 5 hours after their time, long after their window was emitted.
const LATE: [i64; 3] = [700, 1_300, 1_900];

fn ts(i: i64) -> i64 {
    if LATE.contains(&i) {
        return T0 + i * 60 - 5 * 3600;
    }
    // Out of order by up to 4 minutes, within the 10-minute watermark delay.
    T0 + i * 60 - (i * 7919 % 240)
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

fn tokens(i: i64) -> i64 {
    10 + i % 97
}

/// (window start, model) -> (calls, tokens) of the rows that are not late.
fn expected() -> BTreeMap<(String, String), (i64, i64)> {
    let mut m = BTreeMap::new();
    for i in 0..N {
        if LATE.contains(&i) {
            continue;
        }
        let start = ts(i).div_euclid(3600) * 3600;
        let e = m
            .entry((rfc3339(start), MODELS[(i % 3) as usize].to_string()))
            .or_insert((0, 0));
        e.0 += 1;
        e.1 += tokens(i);
    }
    m
}

struct Windowed {
    dir: tempfile::TempDir,
    job: PathBuf,
    out: PathBuf,
}

impl Windowed {
    fn new() -> Self {
        let dir = tempdir();
        let input = dir.path().join("events.jsonl");
        write_jsonl(
            &input,
            (0..N).map(|i| {
                json!({"id": i, "ts": rfc3339(ts(i)), "model": MODELS[(i % 3) as usize], "tokens": tokens(i)})
            }),
        );
        let out = dir.path().join("out");
        let text = format!(
            "SET job.name = 'windows';
SET epoch.max_rows = '50';
CREATE TABLE events (id BIGINT NOT NULL, ts TIMESTAMP NOT NULL, model TEXT NOT NULL, tokens BIGINT NOT NULL,
  WATERMARK FOR ts AS ts - INTERVAL '10' MINUTE)
WITH (connector = 'file', path = '{}', format = 'json', bad_data = 'dead_letter', dead_letter = '{}');
CREATE TABLE hourly WITH (connector = 'parquet', path = '{}');
INSERT INTO hourly
SELECT tumble(ts, INTERVAL '1' HOUR) AS window_start, tumble_end(ts, INTERVAL '1' HOUR) AS window_end,
       model, COUNT(*) AS calls, SUM(tokens) AS tokens
FROM events
GROUP BY tumble(ts, INTERVAL '1' HOUR), tumble_end(ts, INTERVAL '1' HOUR), model;
",
            s(&input),
            s(&dir.path().join("dlq")),
            s(&out)
        );
        let job = write_job(dir.path(), "windows.sql", &text);
        Self { dir, job, out }
    }

    fn checkpoint(&self) -> PathBuf {
        self.dir.path().join(".strata").join("windows")
    }

    fn run(&self) -> Output {
        strata(self.dir.path(), &["run", s(&self.job)])
    }

    /// The output as (window start, model) -> (calls, tokens), every window at most once.
    fn windows(&self) -> BTreeMap<(String, String), (i64, i64)> {
        let mut m = BTreeMap::new();
        for r in table_rows(&self.out) {
            let start = r["window_start"]
                .as_str()
                .expect("window_start")
                .to_string();
            let end = r["window_end"].as_str().expect("window_end");
            let start_secs = chrono::NaiveDateTime::parse_from_str(&start, "%Y-%m-%dT%H:%M:%S")
                .unwrap()
                .and_utc()
                .timestamp();
            assert_eq!(
                rfc3339(start_secs + 3600),
                end,
                "window_end is window_start + 1 hour"
            );
            let key = (start, r["model"].as_str().unwrap().to_string());
            let v = (r["calls"].as_i64().unwrap(), r["tokens"].as_i64().unwrap());
            assert!(
                m.insert(key.clone(), v).is_none(),
                "window {key:?} emitted twice"
            );
        }
        m
    }
}

fn assert_windows(w: &Windowed) {
    let got = w.windows();
    let want = expected();
    assert_eq!(got.len(), want.len(), "windows emitted");
    assert_eq!(got, want);
    // The late rows, each once, in the source's dead letter with the reason.
    let dead = table_rows(&w.dir.path().join("dlq"));
    let mut late: Vec<String> = dead
        .iter()
        .map(|r| {
            let reason = r["reason"].as_str().unwrap();
            assert!(reason.starts_with("late row: its window ["), "{reason}");
            assert_eq!(r["source"], "events");
            unhex(r["raw"].as_str().unwrap())
        })
        .collect();
    late.sort();
    let mut want_late: Vec<String> = LATE
        .iter()
        .map(|&i| format!("\"ts\":\"{}", rfc3339(ts(i))))
        .collect();
    want_late.sort();
    assert_eq!(late.len(), LATE.len(), "{late:?}");
    for (got, want) in late.iter().zip(&want_late) {
        assert!(got.contains(want), "{got} should hold {want}");
    }
}

#[test]
fn every_window_is_emitted_once_with_late_rows_left_out() {
    let w = Windowed::new();
    let ex = strata(w.dir.path(), &["explain", s(&w.job)]);
    ex.expect_code(0, "explain");
    assert!(
        ex.stdout
            .contains("window aggregate: tumbling windows of 3600 s")
            && ex.stdout.contains("max event time - 600 s"),
        "{}",
        ex.stdout
    );
    let out = w.run();
    out.summary("windowed run");
    assert_windows(&w);
    // Windows were emitted as the watermark passed them, not all at the end: the output
    // has many files (one per epoch that closed a window), and the checkpoint keeps only the
    // row files of still-open windows (none after the end of input).
    let files = read_table(&w.out);
    assert!(files.len() > 10, "{} files", files.len());
    let rows_dir = w.checkpoint().join("windows/0/rows");
    let left = std::fs::read_dir(&rows_dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "window row files left after the end of input");
    // A re-run of the finished job adds nothing.
    w.run().summary("re-run");
    assert_windows(&w);
}

#[test]
fn sigkill_anywhere_neither_loses_nor_repeats_a_window() {
    let w = Windowed::new();
    let cp = w.checkpoint();
    // Kill points: while an epoch is logged but not committed, and between epochs, twice.
    let points: [&dyn Fn(&Path) -> bool; 3] = [
        &|cp| {
            let o = checkpoint_epochs(cp, "offsets").last().copied();
            let c = checkpoint_epochs(cp, "commits").last().copied();
            o.is_some_and(|o| o >= 8 && Some(o) > c)
        },
        &|cp| {
            let o = checkpoint_epochs(cp, "offsets").last().copied();
            let c = checkpoint_epochs(cp, "commits").last().copied();
            c.is_some_and(|c| c >= 17) && o == c
        },
        &|cp| {
            let m = checkpoint_epochs(cp, "manifests").last().copied();
            let c = checkpoint_epochs(cp, "commits").last().copied();
            m.is_some_and(|m| m >= 26 && Some(m) > c)
        },
    ];
    for (k, due) in points.iter().enumerate() {
        let mut cmd = strata_cmd(w.dir.path());
        cmd.args(["run", s(&w.job)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start strata run");
        if let Err(status) = kill_when(&mut child, &mut || due(&cp)) {
            panic!("run {k} ended ({status}) before its kill point");
        }
    }
    let out = w.run();
    out.summary("the re-run after three kills");
    assert_windows(&w);
}

#[test]
fn window_plan_errors_name_the_fix() {
    let dir = tempdir();
    let input = dir.path().join("e.jsonl");
    write_jsonl(&input, [json!({"ts": "2026-11-01T00:00:00", "n": 1})]);
    let check = |body: &str, want: &[&str]| {
        let text = format!(
            "CREATE TABLE e (ts TIMESTAMP, n BIGINT) WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE o WITH (connector = 'parquet', path = '{}');
{body}",
            s(&input),
            s(&dir.path().join("o"))
        );
        let job = write_job(dir.path(), "bad.sql", &text);
        let out = strata(dir.path(), &["explain", s(&job)]);
        assert_eq!(out.code, Some(2), "{}\n{}", out.stdout, out.stderr);
        for w in want {
            assert!(out.stderr.contains(w), "missing '{w}' in: {}", out.stderr);
        }
    };
    check(
        "INSERT INTO o SELECT tumble(ts, INTERVAL '1' MONTH), SUM(n) FROM e GROUP BY tumble(ts, INTERVAL '1' MONTH);",
        &["bad.sql:3:", "fixed INTERVAL"],
    );
    check(
        "INSERT INTO o SELECT SUM(n) FROM e;",
        &["GROUP BY / aggregate functions"],
    );
    check(
        "SET window.allowed_lateness = 'a while';\nINSERT INTO o SELECT tumble(ts, INTERVAL '1' HOUR), SUM(n) FROM e GROUP BY 1;",
        &["window.allowed_lateness", "'a while'"],
    );
    check(
        "INSERT INTO o SELECT tumble(n, INTERVAL '1' HOUR), COUNT(*) FROM e GROUP BY 1;",
        &["must be a TIMESTAMP"],
    );
}

#[test]
fn allowed_lateness_keeps_a_window_open_for_late_rows() {
    let w = Windowed::new();
    // With six hours of allowed lateness, the rows five hours late still count.
    let text = std::fs::read_to_string(&w.job).unwrap().replacen(
        "SET epoch.max_rows",
        "SET window.allowed_lateness = '6 hours';\nSET epoch.max_rows",
        1,
    );
    std::fs::write(&w.job, text).unwrap();
    w.run().summary("run with allowed lateness");
    let got = w.windows();
    let calls: i64 = got.values().map(|v| v.0).sum();
    assert_eq!(calls, N, "every row, late ones included, is in a window");
    let tokens_total: i64 = got.values().map(|v| v.1).sum();
    assert_eq!(tokens_total, (0..N).map(tokens).sum::<i64>());
}

/// jobs/cost_rollup.sql over usage that a real run wrote (chat calls through the fake
/// OpenAI-compatible endpoint, throttling included): the FOCUS rollup's costs and tokens sum
/// to the raw usage rows' to the last digit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_rollup_of_real_usage_sums_to_the_last_digit() {
    let fake = fake_endpoints::FakeEndpoint::start().await;
    fake.throttle_every(5);
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_jsonl(
        &input,
        (0..200).map(|i| {
            let tenant = ["acme", "globex"][i % 2];
            json!({"id": i, "tenant": tenant, "body": format!("document {i} {}", "words ".repeat(i % 13))})
        }),
    );
    let usage = dir.path().join("usage");
    let text = format!(
        "SET epoch.max_rows = '40';
SET usage.path = '{}';
SET job.feature = 'digest';
SET job.tenant_column = 'tenant';
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = '{}', model = 'fake-chat',
  'retry.base_ms' = '1', 'retry.max_ms' = '5', 'price.input_per_1m' = '0.8', 'price.output_per_1m' = '4.0000001');
CREATE TABLE docs (id BIGINT NOT NULL, tenant TEXT, body TEXT) WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE out WITH (connector = 'parquet', path = '{}');
INSERT INTO out SELECT id, ai_complete('llm', body) AS answer FROM docs;
",
        s(&usage),
        fake.openai_url(),
        s(&input),
        s(&dir.path().join("out"))
    );
    let job = write_job(dir.path(), "calls.sql", &text);
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || strata(&d, &["run", s(&job)]))
        .await
        .unwrap();
    res.summary("usage-producing run");
    let attempts = table_rows(&usage).len() as i64;
    assert_eq!(attempts as usize, fake.received().len());

    let focus = dir.path().join("focus");
    let rollup = repo().join("jobs").join("cost_rollup.sql");
    let pattern = format!("{}/**/*.parquet", s(&usage));
    let out = strata(
        dir.path(),
        &[
            "run",
            s(&rollup),
            "--var",
            &format!("USAGE={pattern}"),
            "--var",
            "USAGE_FORMAT=parquet",
            "--var",
            &format!("OUT={}", s(&focus)),
        ],
    );
    out.summary("cost rollup");
    let focus = focus.join("cost_rollup");
    let (billed, scale) = decimal_sum(&focus, "BilledCost");
    let (raw, raw_scale) = decimal_sum(&usage, "cost_usd");
    assert_eq!((scale, raw_scale), (10, 10));
    assert!(raw > 0);
    assert_eq!(billed, raw, "BilledCost sums to the raw cost_usd exactly");
    assert_eq!(decimal_sum(&focus, "EffectiveCost").0, raw);
    assert_eq!(int_sum(&focus, "x_attempts"), attempts);
    assert_eq!(
        int_sum(&focus, "x_input_tokens"),
        int_sum(&usage, "input_tokens")
    );
    assert_eq!(
        int_sum(&focus, "x_output_tokens"),
        int_sum(&usage, "output_tokens")
    );
    let errors = table_rows(&usage)
        .iter()
        .filter(|r| r["status"] != "ok")
        .count() as i64;
    assert!(errors > 0);
    assert_eq!(int_sum(&focus, "x_errors"), errors);
    // One row per hour, model, feature and tenant; the tenants are the rows' tenants.
    let rows = table_rows(&focus);
    let mut tenants: Vec<&str> = rows
        .iter()
        .map(|r| r["x_tenant"].as_str().unwrap())
        .collect();
    tenants.sort();
    tenants.dedup();
    assert_eq!(tenants, ["acme", "globex"]);
    for r in &rows {
        assert_eq!(r["ServiceCategory"], "AI and Machine Learning");
        assert_eq!(r["ConsumedUnit"], "Token");
        assert_eq!(r["ResourceId"], "fake-chat");
        assert_eq!(r["BillingCurrency"], "USD");
    }
}

/// A job can window over its own `usage` in the same run: the inserts that read it run after
/// the epoch's model calls, over the usage rows those produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_windows_over_its_own_usage() {
    let fake = fake_endpoints::FakeEndpoint::start().await;
    fake.throttle_every(7);
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_jsonl(
        &input,
        (0..150).map(|i| json!({"id": i, "body": format!("note {i} {}", "word ".repeat(i % 9))})),
    );
    let usage = dir.path().join("usage");
    let spend = dir.path().join("spend");
    let text = format!(
        "SET epoch.max_rows = '30';
SET usage.path = '{}';
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = '{}', model = 'fake-chat',
  'retry.base_ms' = '1', 'retry.max_ms' = '5', 'price.input_per_1m' = '3', 'price.output_per_1m' = '15');
CREATE TABLE docs (id BIGINT NOT NULL, body TEXT) WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE answers WITH (connector = 'parquet', path = '{}');
CREATE TABLE spend WITH (connector = 'parquet', path = '{}');
INSERT INTO answers SELECT id, ai_complete('llm', body) AS a FROM docs;
INSERT INTO spend
SELECT tumble(ts, INTERVAL '1' SECOND) AS second, model, status, COUNT(*) AS attempts, SUM(cost_usd) AS cost
FROM usage GROUP BY tumble(ts, INTERVAL '1' SECOND), model, status;
",
        s(&usage),
        fake.openai_url(),
        s(&input),
        s(&dir.path().join("answers")),
        s(&spend)
    );
    let job = write_job(dir.path(), "own.sql", &text);
    let d = dir.path().to_path_buf();
    let j = job.clone();
    tokio::task::spawn_blocking(move || strata(&d, &["run", s(&j)]))
        .await
        .unwrap()
        .summary("a job windowing its own usage");
    let raw = table_rows(&usage);
    assert_eq!(raw.len(), fake.received().len());
    let windows = table_rows(&spend);
    let attempts: i64 = windows
        .iter()
        .map(|r| r["attempts"].as_i64().unwrap())
        .sum();
    assert_eq!(
        attempts as usize,
        raw.len(),
        "every usage row in exactly one window"
    );
    let (cost, _) = decimal_sum(&spend, "cost");
    let (raw_cost, _) = decimal_sum(&usage, "cost_usd");
    assert!(raw_cost > 0);
    assert_eq!(cost, raw_cost);
    let mut keys: Vec<String> = windows
        .iter()
        .map(|r| format!("{} {} {}", r["second"], r["model"], r["status"]))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "each window once");
    assert!(windows.iter().any(|r| r["status"] == "throttled"));

    // A query over usage may not call models itself.
    let bad = std::fs::read_to_string(&job).unwrap().replace(
        "SUM(cost_usd) AS cost\nFROM usage",
        "SUM(cost_usd) AS cost, MAX(ai_complete('llm', model)) AS x\nFROM usage",
    );
    let bad_job = write_job(dir.path(), "bad_own.sql", &bad);
    let out = strata(dir.path(), &["explain", s(&bad_job)]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("cannot call models"), "{}", out.stderr);
}
