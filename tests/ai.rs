//! `ai_summarize` / `ai_complete` end to end through the `strata` binary, against the fake
//! OpenAI-compatible endpoint this test starts on 127.0.0.1: every row answered once and in
//! place, a rerun answered from the response cache with zero model calls, the budget stop,
//! the `job.on_model_error` policies, and plan errors for bad settings.

mod common;
#[path = "../operators/tests/common/fake_endpoints.rs"]
mod fake_endpoints;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use common::*;
use fake_endpoints::{fake_answer, FakeEndpoint, INVALID_PROMPT};
use strata_operators::udfs::ai::summarize_prompt;

const N: usize = 300;

fn body(i: usize) -> String {
    format!("Document {i} says that shipment {} arrived {} days late.", i * 7, i % 9)
}

fn write_docs(path: &Path, invalid: &[usize]) {
    write_jsonl(
        path,
        (0..N).map(|i| {
            let text = if invalid.contains(&i) {
                format!("{} {INVALID_PROMPT}", body(i))
            } else {
                body(i)
            };
            json!({"doc_id": i, "body": text})
        }),
    );
}

fn job(fake: &FakeEndpoint, input: &Path, out: &Path, settings: &str, model_extra: &str) -> String {
    format!(
        "SET epoch.max_rows = '100';
{settings}
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = '{}', model = 'fake-chat',
  max_concurrency = '8', 'retry.base_ms' = '1', 'retry.max_ms' = '10'{model_extra});
CREATE TABLE docs (doc_id BIGINT NOT NULL, body TEXT) WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE summaries WITH (connector = 'parquet', path = '{}');
INSERT INTO summaries SELECT doc_id, ai_summarize('llm', body, 30) AS summary FROM docs;
",
        fake.openai_url(),
        s(input),
        s(out)
    )
}

/// doc_id -> summary of a finished table.
fn summaries(out: &Path) -> BTreeMap<i64, Option<String>> {
    table_rows(out)
        .iter()
        .map(|r| {
            let id = r["doc_id"].as_i64().expect("doc_id");
            let summary = match &r["summary"] {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => panic!("summary is {other:?}"),
            };
            (id, summary)
        })
        .collect()
}

fn run(dir: &Path, job_path: &Path, ckpt: &str) -> Output {
    let ckpt = dir.join(ckpt);
    strata(dir, &["run", s(job_path), "--checkpoint", s(&ckpt)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_is_summarized_once_and_a_rerun_is_free() {
    let fake = FakeEndpoint::start().await;
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_docs(&input, &[]);
    let cache = dir.path().join("llm-cache");
    let settings = format!("SET cache.path = '{}';", s(&cache));

    let out1 = dir.path().join("out1");
    let job1 = write_job(dir.path(), "a.sql", &job(&fake, &input, &out1, &settings, ""));
    let d = dir.path().to_path_buf();
    let first = tokio::task::spawn_blocking(move || run(&d, &job1, "ckpt1")).await.unwrap();
    assert_eq!(first.summary("first run").sinks["summaries"].rows, N as u64);
    let got = summaries(&out1);
    assert_eq!(got.len(), N);
    for (id, summary) in &got {
        let want = fake_answer(&summarize_prompt(&body(*id as usize), 30));
        assert_eq!(summary.as_deref(), Some(want.as_str()), "doc {id}");
    }
    assert_eq!(fake.received().len(), N, "one model call per row");

    // The same job again (new checkpoint, new output): every answer comes from the cache.
    let out2 = dir.path().join("out2");
    let job2 = write_job(dir.path(), "b.sql", &job(&fake, &input, &out2, &settings, ""));
    let d = dir.path().to_path_buf();
    let second = tokio::task::spawn_blocking(move || run(&d, &job2, "ckpt2")).await.unwrap();
    assert_eq!(second.summary("rerun").sinks["summaries"].rows, N as u64);
    assert_eq!(summaries(&out2), got);
    assert_eq!(fake.received().len(), N, "the rerun made no model calls");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_stops_the_job_with_a_clear_error() {
    let fake = FakeEndpoint::start().await;
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_docs(&input, &[]);
    let out = dir.path().join("out");
    // Each call is bounded by ~25 input + 61 output tokens at 10 USD per million tokens
    // (under 0.001 USD): 0.05 USD allows a few dozen calls, not 300.
    let text = job(
        &fake,
        &input,
        &out,
        "SET job.max_cost_usd = '0.05';",
        ", 'price.input_per_1m' = '10', 'price.output_per_1m' = '10'",
    );
    let job_path = write_job(dir.path(), "budget.sql", &text);
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || run(&d, &job_path, "ckpt")).await.unwrap();
    assert_ne!(res.code, Some(0), "the run must fail:\n{}\n{}", res.stdout, res.stderr);
    assert!(res.stderr.contains("job.max_cost_usd = 0.05"), "{}", res.stderr);
    let calls = fake.received().len();
    assert!(calls > 0 && calls < N, "{calls} calls");
    // What was published is complete and correct: no NULL stands in for an unpaid row.
    for (id, summary) in summaries(&out) {
        let want = fake_answer(&summarize_prompt(&body(id as usize), 30));
        assert_eq!(summary.as_deref(), Some(want.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_errors_follow_job_on_model_error() {
    let fake = FakeEndpoint::start().await;
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    let invalid = [5usize, 150, 299];
    write_docs(&input, &invalid);

    let out = dir.path().join("nulls");
    let text = job(&fake, &input, &out, "SET job.on_model_error = 'null';", "");
    let job_path = write_job(dir.path(), "nulls.sql", &text);
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || run(&d, &job_path, "ckpt-null")).await.unwrap();
    assert_eq!(res.summary("null policy").sinks["summaries"].rows, N as u64);
    let got = summaries(&out);
    for (id, summary) in &got {
        assert_eq!(summary.is_none(), invalid.contains(&(*id as usize)), "doc {id}: {summary:?}");
    }

    let out = dir.path().join("fail");
    let text = job(&fake, &input, &out, "SET job.on_model_error = 'fail';", "");
    let job_path = write_job(dir.path(), "fail.sql", &text);
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || run(&d, &job_path, "ckpt-fail")).await.unwrap();
    assert_eq!(res.code, Some(1), "{}\n{}", res.stdout, res.stderr);
    assert!(res.stderr.contains("the prompt is not allowed"), "{}", res.stderr);
    assert!(res.stderr.contains("job.on_model_error"), "{}", res.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_model_settings_are_plan_errors() {
    let fake = FakeEndpoint::start().await;
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_docs(&input, &[]);
    let out = dir.path().join("out");
    let cases = [
        ("SET job.on_model_error = 'skip';", "", "unknown policy 'skip'"),
        ("SET job.max_cost_usd = 'lots';", "", "job.max_cost_usd must be"),
        ("SET job.max_cost_usd = '1';", "", "price.input_per_1m"),
        ("", ", temperature = '9'", "temperature"),
    ];
    for (i, (settings, extra, needle)) in cases.iter().enumerate() {
        let text = job(&fake, &input, &out, settings, extra);
        let job_path = write_job(dir.path(), &format!("bad{i}.sql"), &text);
        let res = strata(dir.path(), &["explain", s(&job_path)]);
        res.expect_code(2, needle);
        assert!(res.stderr.contains(needle), "{needle}: {}", res.stderr);
        assert!(res.stderr.contains(&format!("bad{i}.sql:")), "position: {}", res.stderr);
    }
    assert!(fake.received().is_empty(), "planning makes no model calls");
}
