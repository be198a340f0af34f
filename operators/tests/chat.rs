//! Chat models (`task = 'chat'`) and `ai_complete` / `ai_summarize`, against the fake
//! OpenAI-compatible endpoint this test starts on 127.0.0.1: answers in input order under
//! concurrency, retries, the persistent response cache, the cost budget, and the
//! `job.on_model_error` policies through DataFusion.

#[path = "common/fake_endpoints.rs"]
mod fake_endpoints;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::AsArray;
use datafusion::prelude::SessionContext;
use fake_endpoints::{fake_answer, FakeEndpoint, Fault};
use strata_operators::models::chat::{Budget, Money};
use strata_operators::models::{build_model, Chat, ModelContext, ModelOptions, ModelRegistry};
use strata_operators::udfs::ai::summarize_prompt;
use strata_operators::udfs::OnModelError;
use strata_operators::{register_all, OperatorConfig};

fn options(fake: &FakeEndpoint, extra: &[(&str, &str)]) -> ModelOptions {
    let mut o = vec![
        ("provider".to_string(), "openai".to_string()),
        ("task".to_string(), "chat".to_string()),
        ("endpoint".to_string(), fake.openai_url()),
        ("model".to_string(), "fake-chat".to_string()),
        ("retry.base_ms".to_string(), "1".to_string()),
        ("retry.max_ms".to_string(), "5".to_string()),
    ];
    o.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ModelOptions::new("llm", o)
}

async fn chat(fake: &FakeEndpoint, extra: &[(&str, &str)], ctx: &ModelContext) -> Chat {
    let model = build_model("llm", options(fake, extra), ctx)
        .await
        .expect("model builds");
    model.chat("ai_complete").expect("a chat model").clone()
}

fn ctx() -> ModelContext {
    ModelContext::new(PathBuf::from("models"))
}

/// A session with `llm` registered and the ai_* functions under `policy`.
async fn session(
    fake: &FakeEndpoint,
    extra: &[(&str, &str)],
    policy: OnModelError,
) -> SessionContext {
    let model = build_model("llm", options(fake, extra), &ctx())
        .await
        .expect("model builds");
    let mut models = ModelRegistry::default();
    models.insert(model).unwrap();
    let mut cfg = OperatorConfig::from_env();
    cfg.models = Arc::new(models);
    cfg.on_model_error = policy;
    let session = SessionContext::new();
    register_all(&session, &cfg);
    session
}

async fn column(
    session: &SessionContext,
    sql: &str,
) -> datafusion::common::Result<Vec<Option<String>>> {
    let batches = session.sql(sql).await?.collect().await?;
    let mut out = Vec::new();
    for b in batches {
        let c = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8)?;
        out.extend(c.as_string::<i32>().iter().map(|v| v.map(str::to_string)));
    }
    Ok(out)
}

fn values(n: usize) -> String {
    (0..n)
        .map(|i| format!("({i}, 'question number {i}')"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test]
async fn answers_keep_input_order_with_many_in_flight() {
    let fake = FakeEndpoint::start().await;
    // Every answer takes 20 ms, so requests overlap and finish in no fixed order.
    fake.set_latency(Duration::from_millis(20));
    let session = session(
        &fake,
        &[("max_concurrency", "8"), ("system", "be brief")],
        OnModelError::Fail,
    )
    .await;
    let sql = format!(
        "SELECT ai_complete('llm', q, 40) FROM (VALUES {}) AS t(id, q) ORDER BY id",
        values(40)
    );
    let got = column(&session, &sql).await.unwrap();
    let want: Vec<Option<String>> = (0..40)
        .map(|i| Some(fake_answer(&format!("question number {i}"))))
        .collect();
    assert_eq!(got, want);
    let received = fake.received();
    assert_eq!(received.len(), 40, "one request per row");
    let body = &received[0].body;
    assert_eq!(body["max_tokens"], 40);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(body["messages"][0]["content"], "be brief");
    // 40 requests of 20 ms, 8 at a time: the first 8 arrive before any of them is answered.
    let first = received.iter().map(|r| r.at).min().unwrap();
    let early = received
        .iter()
        .filter(|r| r.at.duration_since(first) < Duration::from_millis(15))
        .count();
    assert!(early >= 8, "only {early} requests were in flight at once");
}

#[tokio::test]
async fn summarize_uses_the_versioned_template_and_nulls_stay_null() {
    let fake = FakeEndpoint::start().await;
    let session = session(&fake, &[], OnModelError::Fail).await;
    let got = column(
        &session,
        "SELECT ai_summarize('llm', t, 25) FROM (VALUES ('a long text'), (NULL)) AS v(t)",
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![
            Some(fake_answer(&summarize_prompt("a long text", 25))),
            None
        ]
    );
    let received = fake.received();
    assert_eq!(received.len(), 1, "NULL text makes no call");
    assert_eq!(
        received[0].body["messages"][0]["content"],
        summarize_prompt("a long text", 25)
    );
    // 25 words: 1.5 tokens per word + 16.
    assert_eq!(received[0].body["max_tokens"], 54);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried() {
    let fake = FakeEndpoint::start().await;
    fake.script([Fault::throttled(Some("0")), Fault::server_error()]);
    let chat = chat(&fake, &[], &ctx()).await;
    let reply = chat
        .client
        .complete(&chat.settings.request("hello".into(), None))
        .await
        .unwrap();
    assert_eq!(reply.text, fake_answer("hello"));
    let statuses: Vec<u16> = fake.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 500, 200]);
}

#[tokio::test]
async fn on_model_error_null_gives_null_and_fail_stops() {
    let sql = format!(
        "SELECT ai_complete('llm', q) FROM (VALUES {}) AS t(id, q) ORDER BY id",
        values(3)
    );
    // max_concurrency 1: requests go in row order, so the script's second entry hits row 1.
    // A validation error is not retried.
    let fake = FakeEndpoint::start().await;
    let nulls = session(&fake, &[("max_concurrency", "1")], OnModelError::Null).await;
    fake.script([Fault::Pass, Fault::validation("prompt is too long")]);
    let got = column(&nulls, &sql).await.unwrap();
    assert_eq!(
        got,
        vec![
            Some(fake_answer("question number 0")),
            None,
            Some(fake_answer("question number 2")),
        ]
    );
    assert_eq!(
        fake.received().len(),
        3,
        "the validation error is not retried"
    );

    let fake = FakeEndpoint::start().await;
    let fails = session(&fake, &[("max_concurrency", "1")], OnModelError::Fail).await;
    fake.script([Fault::Pass, Fault::validation("prompt is too long")]);
    let err = column(&fails, &sql).await.unwrap_err().to_string();
    assert!(err.contains("row 1 of the batch"), "{err}");
    assert!(err.contains("prompt is too long"), "{err}");
    assert!(err.contains("job.on_model_error"), "{err}");
}

#[tokio::test]
async fn retries_exhausted_on_a_dead_endpoint_name_the_fix() {
    let fake = FakeEndpoint::start().await;
    fake.always(Some(Fault::unavailable()));
    let chat = chat(&fake, &[("retry.max_attempts", "3")], &ctx()).await;
    let err = chat
        .client
        .complete(&chat.settings.request("hello".into(), None))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("after 3 attempts"), "{err}");
    assert_eq!(fake.received().len(), 3);
}

#[tokio::test]
async fn a_rerun_is_answered_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache").display().to_string();
    let fake = FakeEndpoint::start().await;
    let prompts: Vec<String> = (0..10).map(|i| format!("prompt {i}")).collect();

    let first = chat(&fake, &[("cache.path", &cache)], &ctx()).await;
    for p in &prompts {
        let r = first
            .client
            .complete(&first.settings.request(p.clone(), None))
            .await
            .unwrap();
        assert!(!r.cached);
    }
    assert_eq!(fake.received().len(), 10);

    // A new model (a new run) over the same folder: no calls, same answers, usage kept.
    let second = chat(&fake, &[("cache.path", &cache)], &ctx()).await;
    for p in &prompts {
        let r = second
            .client
            .complete(&second.settings.request(p.clone(), None))
            .await
            .unwrap();
        assert!(r.cached);
        assert_eq!(r.text, fake_answer(p));
        assert!(r.usage.input_tokens.is_some());
    }
    assert_eq!(fake.received().len(), 10, "a rerun makes no model calls");

    // Another parameter is another entry. `SET cache.path` (the context) works the same.
    let mut job_ctx = ctx();
    job_ctx.cache_path = Some(cache.clone());
    let third = chat(&fake, &[("max_tokens", "7")], &job_ctx).await;
    let r = third
        .client
        .complete(&third.settings.request(prompts[0].clone(), None))
        .await
        .unwrap();
    assert!(!r.cached);
    assert_eq!(fake.received().len(), 11);
}

#[tokio::test]
async fn the_budget_stops_calls_before_the_limit() {
    let fake = FakeEndpoint::start().await;
    // Each call: input estimate (bytes/3 or words) + max_tokens 10, at 1 USD per million
    // tokens each way: a few microdollars. Give a budget of 60 µUSD.
    let limit = Money::parse("0.00006").unwrap();
    let budget = Arc::new(Budget::new(limit));
    let mut job_ctx = ctx();
    job_ctx.budget = Some(budget.clone());
    let chat = chat(
        &fake,
        &[
            ("price.input_per_1m", "1"),
            ("price.output_per_1m", "1"),
            ("max_tokens", "10"),
        ],
        &job_ctx,
    )
    .await;
    let mut answered = 0;
    let mut stopped = None;
    for i in 0..100 {
        match chat
            .client
            .complete(&chat.settings.request(format!("question {i}"), None))
            .await
        {
            Ok(_) => answered += 1,
            Err(e) => {
                stopped = Some(e.to_string());
                break;
            }
        }
    }
    let err = stopped.expect("the budget stops the run");
    assert!(err.contains("job.max_cost_usd"), "{err}");
    assert!(answered > 0);
    assert_eq!(
        fake.received().len(),
        answered,
        "no call is sent once the budget refuses"
    );
    assert!(
        budget.spent() <= limit,
        "spent {} of {}",
        budget.spent(),
        limit
    );
    // Nothing more goes out after the stop.
    assert!(chat
        .client
        .complete(&chat.settings.request("late".into(), None))
        .await
        .is_err());
    assert_eq!(fake.received().len(), answered);
}

#[tokio::test]
async fn bad_chat_options_are_named() {
    let fake = FakeEndpoint::start().await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("temperature", "3")], "temperature"),
        (&[("max_tokens", "0")], "max_tokens"),
        (&[("price.input_per_1m", "cheap")], "price.input_per_1m"),
        (&[("dimensions", "4")], "unknown option 'dimensions'"),
    ];
    for (extra, needle) in cases {
        let err = build_model("llm", options(&fake, extra), &ctx())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    let mut job_ctx = ctx();
    job_ctx.budget = Some(Arc::new(Budget::new(Money::parse("1").unwrap())));
    let err = build_model("llm", options(&fake, &[]), &job_ctx)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("price.input_per_1m"), "{err}");
    // An embedding function on a chat model, and the reverse, are clear errors.
    let session = session(&fake, &[], OnModelError::Fail).await;
    let err = session
        .sql("SELECT embed('llm', 'x')")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not 'embedding'"), "{err}");
}

#[tokio::test]
async fn bedrock_converse_with_a_prompt_cache_point() {
    fake_endpoints::aws_test_env();
    let fake = FakeEndpoint::start().await;
    let opts = ModelOptions::new(
        "claude",
        [
            ("provider", "bedrock".to_string()),
            ("task", "chat".to_string()),
            (
                "model_id",
                "anthropic.claude-3-haiku-20240307-v1:0".to_string(),
            ),
            ("region", "us-east-1".to_string()),
            ("endpoint", fake.base_url()),
            (
                "system",
                "You are a careful assistant who answers in one line.".to_string(),
            ),
            ("prompt_cache", "true".to_string()),
            ("max_tokens", "64".to_string()),
            ("temperature", "0.2".to_string()),
            ("retry.base_ms", "1".to_string()),
            ("retry.max_ms", "5".to_string()),
        ],
    );
    let model = build_model("claude", opts, &ctx())
        .await
        .expect("model builds");
    let chat = model.chat("ai_complete").unwrap().clone();
    fake.script([Fault::throttled(None)]);
    let first = chat
        .client
        .complete(&chat.settings.request("first question".into(), None))
        .await
        .unwrap();
    let second = chat
        .client
        .complete(&chat.settings.request("second question".into(), None))
        .await
        .unwrap();
    assert_eq!(first.text, fake_answer("first question"));
    assert_eq!(second.text, fake_answer("second question"));
    // The system prompt (10 words) is written to the prompt cache once, then read.
    assert_eq!(first.usage.cache_write_tokens, Some(10));
    assert_eq!(first.usage.cache_read_tokens, Some(0));
    assert_eq!(second.usage.cache_read_tokens, Some(10));
    assert_eq!(second.usage.input_tokens, Some(2));
    let received = fake.received();
    assert_eq!(received.len(), 3, "the ThrottlingException was retried");
    assert_eq!(received[0].status, 429);
    let body = &received[2].body;
    assert!(
        received[2].path.ends_with("/converse"),
        "{}",
        received[2].path
    );
    assert_eq!(body["system"][1]["cachePoint"]["type"], "default", "{body}");
    assert_eq!(body["inferenceConfig"]["maxTokens"], 64);
    assert_eq!(body["messages"][0]["content"][0]["text"], "second question");

    // A validation error is not retried, and names the model.
    let err = chat
        .client
        .complete(
            &chat
                .settings
                .request(format!("x {}", fake_endpoints::INVALID_PROMPT), None),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ValidationException") && err.contains("claude"),
        "{err}"
    );
    assert_eq!(fake.received().len(), 4);
}

#[tokio::test]
async fn redact_input_keeps_pii_from_the_endpoint_and_lands_in_usage() {
    let fake = FakeEndpoint::start().await;
    let log = Arc::new(strata_operators::models::usage::UsageLog::new("job", None));
    let mut job_ctx = ctx();
    job_ctx.usage = Some(log.clone());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache").display().to_string();
    let chat = chat(
        &fake,
        &[("redact_input", "true"), ("cache.path", &cache)],
        &job_ctx,
    )
    .await;
    let call = |p: &str| {
        let request = chat.settings.request(p.to_string(), None);
        let client = chat.client.clone();
        strata_operators::models::usage::with_call(
            strata_operators::models::usage::CallContext::new("none"),
            async move { client.complete(&request).await },
        )
    };
    let reply = call("write to jane.doe@example.com about card 4111 1111 1111 1111")
        .await
        .unwrap();
    assert_eq!(
        reply.text,
        fake_answer("write to {EMAIL} about card {CREDIT_DEBIT_CARD_NUMBER}")
    );
    call("nothing to hide").await.unwrap();
    let received = fake.received();
    let sent = received[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !sent.contains("jane.doe") && !sent.contains("4111"),
        "{sent}"
    );
    // The cache is keyed by, and stores, the masked prompt only.
    let mut cached = Vec::new();
    for entry in walk(dir.path()) {
        cached.push(std::fs::read_to_string(entry).unwrap());
    }
    assert_eq!(cached.len(), 2, "one cache entry per prompt");
    assert!(cached
        .iter()
        .all(|c| !c.contains("jane.doe") && !c.contains("4111")));
    // A rerun of the raw prompt is a cache hit: the key is over the masked prompt.
    let again = call("write to jane.doe@example.com about card 4111 1111 1111 1111")
        .await
        .unwrap();
    assert!(again.cached);
    assert_eq!(fake.received().len(), 2);
    let batch = log.take_batch().expect("usage rows");
    let col = batch
        .column_by_name("guardrail_action")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect::<Vec<_>>();
    assert_eq!(
        col,
        vec![
            Some("ANONYMIZED".to_string()),
            Some("NONE".to_string()),
            Some("ANONYMIZED".to_string())
        ]
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
