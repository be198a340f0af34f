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
    format!(
        "Document {i} says that shipment {} arrived {} days late.",
        i * 7,
        i % 9
    )
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
    let job1 = write_job(
        dir.path(),
        "a.sql",
        &job(&fake, &input, &out1, &settings, ""),
    );
    let d = dir.path().to_path_buf();
    let first = tokio::task::spawn_blocking(move || run(&d, &job1, "ckpt1"))
        .await
        .unwrap();
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
    let job2 = write_job(
        dir.path(),
        "b.sql",
        &job(&fake, &input, &out2, &settings, ""),
    );
    let d = dir.path().to_path_buf();
    let second = tokio::task::spawn_blocking(move || run(&d, &job2, "ckpt2"))
        .await
        .unwrap();
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
    let res = tokio::task::spawn_blocking(move || run(&d, &job_path, "ckpt"))
        .await
        .unwrap();
    assert_ne!(
        res.code,
        Some(0),
        "the run must fail:\n{}\n{}",
        res.stdout,
        res.stderr
    );
    assert!(
        res.stderr.contains("job.max_cost_usd = 0.05"),
        "{}",
        res.stderr
    );
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
    let res = tokio::task::spawn_blocking(move || run(&d, &job_path, "ckpt-null"))
        .await
        .unwrap();
    assert_eq!(res.summary("null policy").sinks["summaries"].rows, N as u64);
    let got = summaries(&out);
    for (id, summary) in &got {
        assert_eq!(
            summary.is_none(),
            invalid.contains(&(*id as usize)),
            "doc {id}: {summary:?}"
        );
    }

    let out = dir.path().join("fail");
    let text = job(&fake, &input, &out, "SET job.on_model_error = 'fail';", "");
    let job_path = write_job(dir.path(), "fail.sql", &text);
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || run(&d, &job_path, "ckpt-fail"))
        .await
        .unwrap();
    assert_eq!(res.code, Some(1), "{}\n{}", res.stdout, res.stderr);
    assert!(
        res.stderr.contains("the prompt is not allowed"),
        "{}",
        res.stderr
    );
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
        (
            "SET job.on_model_error = 'skip';",
            "",
            "unknown policy 'skip'",
        ),
        (
            "SET job.max_cost_usd = 'lots';",
            "",
            "job.max_cost_usd must be",
        ),
        ("SET job.max_cost_usd = '1';", "", "price.input_per_1m"),
        ("", ", temperature = '9'", "temperature"),
    ];
    for (i, (settings, extra, needle)) in cases.iter().enumerate() {
        let text = job(&fake, &input, &out, settings, extra);
        let job_path = write_job(dir.path(), &format!("bad{i}.sql"), &text);
        let res = strata(dir.path(), &["explain", s(&job_path)]);
        res.expect_code(2, needle);
        assert!(res.stderr.contains(needle), "{needle}: {}", res.stderr);
        assert!(
            res.stderr.contains(&format!("bad{i}.sql:")),
            "position: {}",
            res.stderr
        );
    }
    assert!(fake.received().is_empty(), "planning makes no model calls");
}

/// `cost_usd` (Decimal128(38, 10), written by Arrow's JSON as text) in units of 1e-10 USD.
fn cost_units(v: &Value) -> i128 {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    assert!(
        frac.len() <= 10,
        "cost_usd {text} has more than 10 decimals"
    );
    let frac = format!("{frac:0<10}");
    int.parse::<i128>().unwrap() * 10_000_000_000 + frac.parse::<i128>().unwrap()
}

/// The exact sum of a usage table's `cost_usd` (Decimal128(38, 10)) in units of 1e-10 USD,
/// read from the Arrow arrays (the JSON rows round floats).
fn cost_sum(dir: &Path) -> i128 {
    let (sum, scale) = decimal_sum(dir, "cost_usd");
    assert_eq!(scale, 10);
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_has_a_row_per_attempt_and_exact_costs() {
    let fake = FakeEndpoint::start().await;
    fake.throttle_every(4);
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_docs(&input, &[7]);
    let usage = dir.path().join("usage");
    let cache = dir.path().join("cache");
    let settings = format!(
        "SET usage.path = '{}'; SET job.feature = 'digest'; SET cache.path = '{}'; SET job.on_model_error = 'null';",
        s(&usage),
        s(&cache)
    );
    let prices = ", 'price.input_per_1m' = '10', 'price.output_per_1m' = '20'";
    let out = dir.path().join("out1");
    let job1 = write_job(
        dir.path(),
        "u1.sql",
        &job(&fake, &input, &out, &settings, prices),
    );
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || run(&d, &job1, "ckpt1"))
        .await
        .unwrap();
    let summary = res.summary("usage run");
    let received = fake.received();
    assert_eq!(
        summary.sinks["usage"].rows,
        received.len() as u64,
        "{summary:?}"
    );

    let rows = table_rows(&usage);
    assert_eq!(
        rows.len(),
        received.len(),
        "one usage row per attempt the endpoint saw"
    );
    let count = |status: &str| rows.iter().filter(|r| r["status"] == status).count();
    let seen = |code: u16| received.iter().filter(|r| r.status == code).count();
    assert_eq!(count("ok"), seen(200));
    assert_eq!(count("throttled"), seen(429));
    assert_eq!(
        count("client_error"),
        seen(400),
        "the invalid prompt: one attempt, not retried"
    );
    assert!(seen(429) > 0 && seen(400) == 1);

    // Tokens as the endpoint counted them (words), costs exact to the last digit.
    let fake_in: u64 = received
        .iter()
        .filter(|r| r.status == 200)
        .map(|r| {
            r.body["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| fake_endpoints::fake_tokens(m["content"].as_str().unwrap()))
                .sum::<u64>()
        })
        .sum();
    let tokens = |col: &str| rows.iter().map(|r| r[col].as_i64().unwrap()).sum::<i64>();
    assert_eq!(tokens("input_tokens") as u64, fake_in);
    let cost = cost_sum(&usage);
    let want =
        (tokens("input_tokens") as i128 * 10 + tokens("output_tokens") as i128 * 20) * 10_000;
    assert_eq!(cost, want, "cost_usd sums to the price times the tokens");
    for r in &rows {
        assert_eq!(r["job"], "u1");
        assert_eq!(r["feature"], "digest");
        assert_eq!(r["model"], "llm");
        assert_eq!(r["model_id"], "fake-chat");
        assert_eq!(r["provider"], "openai");
        assert_eq!(r["operation"], "chat");
        assert_eq!(r["prompt_version"], "summarize-v1");
        assert_eq!(r["cache_hit"], false);
        if r["status"] != "ok" {
            assert_eq!(r["input_tokens"], 0, "a failed attempt records 0 tokens");
            assert_eq!(cost_units(&r["cost_usd"]), 0);
        }
    }
    // Retries of one row share its request id; attempts count up from 1.
    let mut by_request: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &rows {
        by_request
            .entry(r["request_id"].as_str().unwrap().to_string())
            .or_default()
            .push(r["attempt"].as_i64().unwrap());
    }
    assert_eq!(by_request.len(), N, "one request id per row");
    for attempts in by_request.values_mut() {
        attempts.sort();
        assert_eq!(*attempts, (1..=attempts.len() as i64).collect::<Vec<_>>());
    }
    // Partitioned by UTC day and hour; the columns live in the folder names only.
    let files = read_table(&usage);
    assert!(
        files
            .iter()
            .all(|f| f.rel.starts_with("dt=") && f.rel.contains("/hour=")),
        "{:?}",
        files.iter().map(|f| &f.rel).collect::<Vec<_>>()
    );

    // A rerun answered from the cache: one cache-hit row per answered row, no tokens, no cost.
    let usage2 = dir.path().join("usage2");
    let settings2 = settings.replace(s(&usage), s(&usage2));
    let out2 = dir.path().join("out2");
    let job2 = write_job(
        dir.path(),
        "u2.sql",
        &job(&fake, &input, &out2, &settings2, prices),
    );
    let before = fake.received().len();
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || run(&d, &job2, "ckpt2"))
        .await
        .unwrap();
    res.summary("cached rerun");
    let after = fake.received().len();
    let rows2 = table_rows(&usage2);
    let hits: Vec<_> = rows2.iter().filter(|r| r["cache_hit"] == true).collect();
    assert_eq!(hits.len(), N - 1, "every answered row is a hit");
    assert!(hits
        .iter()
        .all(|r| r["input_tokens"] == 0 && cost_units(&r["cost_usd"]) == 0));
    // The invalid row is asked again (errors are not cached): its attempt is a row too.
    assert_eq!(rows2.len() - hits.len(), after - before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_rows_carry_the_tenant_of_their_row() {
    let fake = FakeEndpoint::start().await;
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    let tenant = |i: usize| match i % 3 {
        0 => Some("acme"),
        1 => Some("globex"),
        _ => None,
    };
    write_jsonl(
        &input,
        (0..60).map(|i| json!({"doc_id": i, "org": tenant(i), "body": body(i)})),
    );
    let usage = dir.path().join("usage");
    let out = dir.path().join("out");
    let text = format!(
        "SET epoch.max_rows = '25';
SET usage.path = '{}';
SET job.tenant_column = 'org';
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = '{url}', model = 'fake-chat');
CREATE MODEL emb WITH (provider = 'openai', task = 'embedding', endpoint = '{url}', model = 'fake-embed', dimensions = '8');
CREATE TABLE docs (doc_id BIGINT NOT NULL, org TEXT, body TEXT) WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE out WITH (connector = 'parquet', path = '{}');
INSERT INTO out SELECT doc_id, ai_complete('llm', body), embed('emb', body) FROM docs;
",
        s(&usage),
        s(&input),
        s(&out),
        url = fake.openai_url(),
    );
    let job_path = write_job(dir.path(), "tenants.sql", &text);
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || run(&d, &job_path, "ckpt"))
        .await
        .unwrap();
    res.summary("tenant run");

    // Output columns keep the names the user wrote; every row is answered.
    let rows = table_rows(&out);
    assert_eq!(rows.len(), 60);
    assert!(
        rows[0]
            .get("ai_complete(Utf8(\"llm\"),docs.body)")
            .is_some(),
        "{:?}",
        rows[0]
    );

    let usage_rows = table_rows(&usage);
    let per = |op: &str, t: Option<&str>| {
        usage_rows
            .iter()
            .filter(|r| r["operation"] == op && r["tenant"].as_str() == t)
            .collect::<Vec<_>>()
    };
    // One chat call per row, attributed to that row's tenant (prompts are the row's body).
    for t in [Some("acme"), Some("globex"), None] {
        assert_eq!(per("chat", t).len(), 20, "chat calls of tenant {t:?}");
    }
    // Embedding calls are split per tenant within each batch: the tokens of each tenant's
    // texts are billed to it.
    for t in [Some("acme"), Some("globex"), None] {
        let want: u64 = (0..60)
            .filter(|&i| tenant(i) == t)
            .map(|i| fake_endpoints::fake_tokens(&body(i)))
            .sum();
        let got: i64 = per("embedding", t)
            .iter()
            .map(|r| r["input_tokens"].as_i64().unwrap())
            .sum();
        assert_eq!(got as u64, want, "embedding tokens of tenant {t:?}");
    }
}

#[tokio::test]
async fn a_tenant_column_the_query_cannot_see_is_a_plan_error() {
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_jsonl(&input, [json!({"doc_id": 1, "body": "x"})]);
    let usage = dir.path().join("usage");
    let text = format!(
        "SET usage.path = '{}';
SET job.tenant_column = 'org';
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = 'http://127.0.0.1:9', model = 'm');
CREATE TABLE docs (doc_id BIGINT NOT NULL, body TEXT) WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE out WITH (connector = 'parquet', path = '{}');
INSERT INTO out SELECT doc_id, ai_complete('llm', body) AS answer FROM docs;
",
        s(&usage),
        s(&input),
        s(&dir.path().join("out")),
    );
    let job_path = write_job(dir.path(), "bad.sql", &text);
    let out = strata(dir.path(), &["explain", s(&job_path)]);
    let err = &out.stderr;
    assert!(!out.status.success());
    assert!(
        err.contains("bad.sql:2:")
            && err.contains("no column 'org'")
            && err.contains("doc_id, body"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prices_file_prices_models_without_price_options() {
    let fake = FakeEndpoint::start().await;
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_docs(&input, &[]);
    let usage = dir.path().join("usage");
    let out = dir.path().join("out");
    let prices = dir.path().join("prices.toml");
    std::fs::write(
        &prices,
        "[[price]]\nprovider = \"openai\"\nmodel_id = \"fake-chat\"\ninput_per_1m = \"0.15\"\noutput_per_1m = 0.6\nsource = \"https://example.com/contract\"\ndate = \"2026-11-01\"\n",
    )
    .unwrap();
    let settings = format!("SET usage.path = '{}';", s(&usage));
    let job_path = write_job(
        dir.path(),
        "p.sql",
        &job(&fake, &input, &out, &settings, ""),
    );

    // explain says where each price comes from.
    let ex = strata(
        dir.path(),
        &["explain", s(&job_path), "--prices", s(&prices)],
    );
    ex.expect_code(0, "explain with --prices");
    assert!(
        ex.stdout
            .contains("USD per 1M tokens: input 0.15, output 0.6")
            && ex
                .stdout
                .contains("https://example.com/contract (2026-11-01)"),
        "{}",
        ex.stdout
    );

    let d = dir.path().to_path_buf();
    let (jp, pp) = (job_path.clone(), prices.clone());
    let res = tokio::task::spawn_blocking(move || {
        let ckpt = d.join("ckpt");
        strata(
            &d,
            &["run", s(&jp), "--checkpoint", s(&ckpt), "--prices", s(&pp)],
        )
    })
    .await
    .unwrap();
    res.summary("run with --prices");
    let rows = table_rows(&usage);
    assert_eq!(rows.len(), N, "{:?}", rows.first());
    let tokens = |col: &str| rows.iter().map(|r| r[col].as_i64().unwrap()).sum::<i64>() as i128;
    let cost = cost_sum(&usage);
    // 0.15 and 0.6 USD per 1M tokens = 1500 and 6000 units of 1e-10 USD per token.
    assert_eq!(
        cost,
        tokens("input_tokens") * 1500 + tokens("output_tokens") * 6000
    );
    assert!(cost > 0);

    // A bad catalog is an error naming the file and the entry, before anything runs.
    std::fs::write(&prices, "[[price]]\nprovider = \"openai\"\nmodel_id = \"m\"\ninput_per_1m = \"cheap\"\nsource = \"https://x\"\ndate = \"2026-11-01\"\n").unwrap();
    let bad = strata(
        dir.path(),
        &["explain", s(&job_path), "--prices", s(&prices)],
    );
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--prices")
            && bad.stderr.contains("prices.toml")
            && bad.stderr.contains("input_per_1m")
            && bad.stderr.contains("'cheap'"),
        "{}",
        bad.stderr
    );
}

/// `jobs/bulk_summarize.sql` as shipped, with no `--var LLM`: its model is the local
/// SmolLM2-135M-Instruct (`provider = 'local'`), so a few short documents are summarized end
/// to end in the `strata` process, with no endpoint anywhere. Fails when the model has not
/// been fetched (scripts/fetch_models.sh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_summarize_runs_on_the_local_model_by_default() {
    let gguf = models_dir().join("SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.is_file(),
        "{} is missing: run scripts/fetch_models.sh",
        gguf.display()
    );
    let dir = tempdir();
    let data = dir.path().join("docs.jsonl");
    let docs = [
        (
            "d1",
            "acme",
            "The night shift restarted the billing service twice after memory alarms.",
        ),
        (
            "d2",
            "globex",
            "Quarterly revenue rose 12 percent while support tickets fell by a third.",
        ),
        (
            "d3",
            "acme",
            "The new warehouse in Lyon opens in March with forty staff and two docks.",
        ),
    ];
    write_jsonl(
        &data,
        docs.iter().map(
            |(id, tenant, body)| json!({"doc_id": id, "tenant": tenant, "title": id, "body": body}),
        ),
    );
    let out = dir.path().join("out");
    let job = repo().join("jobs/bulk_summarize.sql");
    let args = [
        "run".to_string(),
        s(&job).to_string(),
        "--var".into(),
        format!("DATA={}", s(&data)),
        "--var".into(),
        format!("OUT={}", s(&out)),
        "--checkpoint".into(),
        s(&dir.path().join("ckpt")).to_string(),
    ];
    let d = dir.path().to_path_buf();
    let res = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        strata(&d, &args)
    })
    .await
    .unwrap();
    let summary = res.summary("bulk_summarize on the local model");
    assert_eq!(summary.sinks["summaries"].rows, docs.len() as u64);
    let rows = table_rows(&out.join("summaries"));
    assert_eq!(rows.len(), docs.len());
    for r in &rows {
        let text = r["summary"]
            .as_str()
            .unwrap_or_else(|| panic!("no summary: {r:?}"));
        assert!(!text.trim().is_empty(), "{r:?}");
        assert!(!text.contains("<|im_end|>"), "{r:?}");
    }
}
