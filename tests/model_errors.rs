//! `SET job.on_model_error = 'dead_letter'` through the `strata` binary: a row whose model
//! call fails for good gets a NULL result, and its text and the error go to the dead letter
//! of the job's source in the same epoch, once, even when the run is re-run.

mod common;
#[path = "../operators/tests/common/fake_endpoints.rs"]
mod fake_endpoints;

use serde_json::json;

use common::*;
use fake_endpoints::{FakeEndpoint, INVALID_PROMPT};

const N: usize = 90;
const BAD: [usize; 3] = [4, 41, 77];

fn text(i: usize) -> String {
    if BAD.contains(&i) {
        format!("question {i} {INVALID_PROMPT}")
    } else {
        format!("question {i}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_rows_go_to_the_dead_letter_once_with_the_error() {
    let fake = FakeEndpoint::start().await;
    let dir = tempdir();
    let input = dir.path().join("q.jsonl");
    write_jsonl(&input, (0..N).map(|i| json!({"id": i, "q": text(i)})));
    let out = dir.path().join("out");
    let dlq = dir.path().join("dlq");
    let job_text = format!(
        "SET epoch.max_rows = '30';
SET job.on_model_error = 'dead_letter';
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = '{}', model = 'fake-chat');
CREATE TABLE qs (id BIGINT NOT NULL, q TEXT) WITH (connector = 'file', path = '{}', format = 'json',
  bad_data = 'dead_letter', dead_letter = '{}');
CREATE TABLE answers WITH (connector = 'parquet', path = '{}');
INSERT INTO answers SELECT id, ai_complete('llm', q) AS a FROM qs;
",
        fake.openai_url(),
        s(&input),
        s(&dlq),
        s(&out)
    );
    let job = write_job(dir.path(), "dl.sql", &job_text);
    let d = dir.path().to_path_buf();
    let j = job.clone();
    let res = tokio::task::spawn_blocking(move || strata(&d, &["run", s(&j)]))
        .await
        .unwrap();
    res.summary("run with failing rows");

    // Every row is written; the failed ones with NULL.
    let rows = table_rows(&out);
    assert_eq!(rows.len(), N);
    for r in &rows {
        let id = r["id"].as_i64().unwrap() as usize;
        assert_eq!(r["a"].is_null(), BAD.contains(&id), "row {id}: {r:?}");
    }
    // The failed rows' texts, each once, with the provider's error.
    let check = || {
        let dead = table_rows(&dlq);
        let mut texts: Vec<String> = dead
            .iter()
            .map(|r| unhex(r["raw"].as_str().unwrap()))
            .collect();
        texts.sort();
        let mut want: Vec<String> = BAD.iter().map(|&i| text(i)).collect();
        want.sort();
        assert_eq!(texts, want);
        for r in &dead {
            assert_eq!(r["source"], "qs");
            let reason = r["reason"].as_str().unwrap();
            assert!(
                reason.starts_with("ai_complete('llm') failed after its retries:")
                    && reason.contains("400"),
                "{reason}"
            );
        }
    };
    check();

    // A re-run of the finished job writes nothing more.
    let d = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || strata(&d, &["run", s(&job)]))
        .await
        .unwrap()
        .summary("re-run");
    check();
}

#[test]
fn dead_letter_policy_needs_a_source_dead_letter() {
    let dir = tempdir();
    let input = dir.path().join("q.jsonl");
    write_jsonl(&input, [json!({"id": 1, "q": "x"})]);
    let job = write_job(
        dir.path(),
        "nodl.sql",
        &format!(
            "SET job.on_model_error = 'dead_letter';
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = 'http://127.0.0.1:9', model = 'm');
CREATE TABLE qs (id BIGINT NOT NULL, q TEXT) WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE answers WITH (connector = 'parquet', path = '{}');
INSERT INTO answers SELECT id, ai_complete('llm', q) AS a FROM qs;
",
            s(&input),
            s(&dir.path().join("out"))
        ),
    );
    let out = strata(dir.path(), &["explain", s(&job)]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("nodl.sql:1:")
            && out.stderr.contains("bad_data = 'dead_letter'")
            && out.stderr.contains("qs"),
        "{}",
        out.stderr
    );
}

/// A budget stop fails the epoch (its rows are not committed), but the calls it made were
/// paid for: their usage rows are published anyway, one per attempt the endpoint saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_usage_of_a_failed_epoch_is_still_on_record() {
    let fake = FakeEndpoint::start().await;
    let dir = tempdir();
    let input = dir.path().join("q.jsonl");
    write_jsonl(
        &input,
        (0..300).map(|i| json!({"id": i, "q": format!("question {i}")})),
    );
    let usage = dir.path().join("usage");
    let job = write_job(
        dir.path(),
        "budget.sql",
        &format!(
            "SET epoch.max_rows = '100';
SET usage.path = '{}';
SET job.max_cost_usd = '0.02';
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = '{}', model = 'fake-chat',
  max_tokens = '50', max_concurrency = '4', 'price.input_per_1m' = '10', 'price.output_per_1m' = '20');
CREATE TABLE qs (id BIGINT NOT NULL, q TEXT) WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE answers WITH (connector = 'parquet', path = '{}');
INSERT INTO answers SELECT id, ai_complete('llm', q) AS a FROM qs;
",
            s(&usage),
            fake.openai_url(),
            s(&input),
            s(&dir.path().join("out"))
        ),
    );
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || strata(&d, &["run", s(&job)]))
        .await
        .unwrap();
    assert_eq!(
        res.code,
        Some(1),
        "the budget stops the run: {}",
        res.stderr
    );
    assert!(res.stderr.contains("job.max_cost_usd"), "{}", res.stderr);
    let seen = fake.received().len();
    assert!(seen > 0 && seen < 300, "{seen} calls");
    let rows = table_rows(&usage);
    assert_eq!(rows.len(), seen, "one usage row per call the endpoint saw");
    let tokens: i64 = rows
        .iter()
        .map(|r| {
            r["input_tokens"].as_i64().unwrap() * 10 + r["output_tokens"].as_i64().unwrap() * 20
        })
        .sum();
    assert!(tokens > 0);
    // The failed epoch's rows did not reach the output; the epochs before it did.
    let written = table_rows(&dir.path().join("out")).len();
    assert!(
        written < 300 && written % 100 == 0,
        "{written} rows written"
    );
}
