//! Remote embedding providers (`openai`, `bedrock`) and their client stack (rate limit ->
//! retry -> provider), against fake endpoints this test starts on 127.0.0.1.

#[path = "common/fake_endpoints.rs"]
mod fake_endpoints;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_endpoints::{fake_vector, FakeEndpoint, Fault};
use strata_operators::models::remote::bedrock::BedrockEmbedder;
use strata_operators::models::remote::limits::RateLimitConfig;
use strata_operators::models::remote::openai::OpenAiEmbedder;
use strata_operators::models::remote::stack::{
    AttemptObserver, AttemptRecord, AttemptStatus, ErrorKind, StackConfig,
};
use strata_operators::models::{build_model, Embedder, ModelContext, ModelOptions};

fn ctx() -> ModelContext {
    ModelContext::new(PathBuf::from("models"))
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn expected(items: &[String], d: usize) -> Vec<f32> {
    items.iter().flat_map(|t| fake_vector(t, d)).collect()
}

async fn embedder(name: &str, options: &[(&str, String)]) -> Arc<dyn Embedder> {
    let opts = ModelOptions::new(
        name,
        options.iter().map(|(k, v)| (k.to_string(), v.clone())),
    );
    let model = build_model(name, opts, &ctx()).await.expect("model builds");
    model.embedder("embed").expect("an embedding model").clone()
}

async fn openai(fake: &FakeEndpoint, extra: &[(&str, &str)]) -> Arc<dyn Embedder> {
    let mut options = vec![
        ("provider", "openai".to_string()),
        ("endpoint", fake.openai_url()),
        ("model", "fake-embed".to_string()),
        ("dimensions", "4".to_string()),
        ("retry.base_ms", "1".to_string()),
        ("retry.max_ms", "5".to_string()),
    ];
    options.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    embedder("emb", &options).await
}

async fn bedrock(fake: &FakeEndpoint, model_id: &str, extra: &[(&str, &str)]) -> Arc<dyn Embedder> {
    fake_endpoints::aws_test_env();
    let mut options = vec![
        ("provider", "bedrock".to_string()),
        ("model_id", model_id.to_string()),
        ("region", "us-east-1".to_string()),
        ("endpoint", fake.base_url()),
        ("retry.base_ms", "1".to_string()),
        ("retry.max_ms", "5".to_string()),
    ];
    options.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    embedder("bed", &options).await
}

#[tokio::test]
async fn openai_vectors_come_back_in_input_order_across_batches() {
    let fake = FakeEndpoint::start().await;
    std::env::set_var("STRATA_TEST_OPENAI_KEY", "sk-test-123");
    let e = openai(
        &fake,
        &[
            ("max_batch", "2"),
            ("api_key_env", "STRATA_TEST_OPENAI_KEY"),
        ],
    )
    .await;
    assert_eq!(e.dimensions(), 4);
    assert_eq!(e.model_id(), "fake-embed");
    let input = texts(&["alpha", "beta gamma", "", "delta", "épsilon ünïcode"]);
    let vectors = e.embed(&input).await.unwrap();
    assert_eq!(vectors, expected(&input, 4));

    let seen = fake.received();
    assert_eq!(seen.len(), 3, "5 texts at max_batch = 2");
    let mut sent: Vec<String> = Vec::new();
    for r in &seen {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/v1/embeddings");
        assert_eq!(r.header("authorization"), Some("Bearer sk-test-123"));
        assert_eq!(r.body["model"], "fake-embed");
        assert_eq!(r.body["dimensions"], 4);
        sent.extend(
            r.body["input"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
    }
    sent.sort();
    let mut want = input.clone();
    want.sort();
    assert_eq!(sent, want);
}

#[tokio::test]
async fn an_empty_batch_makes_no_call() {
    let fake = FakeEndpoint::start().await;
    let e = openai(&fake, &[]).await;
    assert!(e.embed(&[]).await.unwrap().is_empty());
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after() {
    let fake = FakeEndpoint::start().await;
    fake.script([Fault::throttled(Some("1"))]);
    let e = openai(&fake, &[]).await;
    let input = texts(&["one", "two"]);
    assert_eq!(e.embed(&input).await.unwrap(), expected(&input, 4));
    let seen = fake.received();
    assert_eq!(
        seen.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200]
    );
    // Retry-After: 1 is a floor on the wait (base/max backoff are a few ms here).
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(1));
}

#[tokio::test]
async fn server_errors_are_retried() {
    let fake = FakeEndpoint::start().await;
    fake.script([Fault::server_error(), Fault::unavailable()]);
    let e = openai(&fake, &[]).await;
    let input = texts(&["x"]);
    assert_eq!(e.embed(&input).await.unwrap(), expected(&input, 4));
    assert_eq!(
        fake.received().iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 503, 200]
    );
}

#[tokio::test]
async fn validation_errors_are_not_retried() {
    let fake = FakeEndpoint::start().await;
    fake.always(Some(Fault::validation("input is too long for this model")));
    let e = openai(&fake, &[]).await;
    let err = e.embed(&texts(&["x"])).await.unwrap_err().to_string();
    assert_eq!(fake.received().len(), 1);
    assert!(err.contains("model 'emb'"), "{err}");
    assert!(err.contains("HTTP 400"), "{err}");
    assert!(err.contains("not retried"), "{err}");
    assert!(err.contains("input is too long for this model"), "{err}");
    assert!(err.contains(&fake.openai_url()), "{err}");
}

#[tokio::test]
async fn exhausted_retries_say_so() {
    let fake = FakeEndpoint::start().await;
    fake.always(Some(Fault::unavailable()));
    let e = openai(&fake, &[("retry.max_attempts", "3")]).await;
    let err = e.embed(&texts(&["x"])).await.unwrap_err().to_string();
    assert_eq!(fake.received().len(), 3);
    assert!(err.contains("after 3 attempts"), "{err}");
    assert!(
        err.contains("retries exhausted (retry.max_attempts = 3)"),
        "{err}"
    );
    assert!(err.contains("HTTP 503"), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_named() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let e = embedder(
        "emb",
        &[
            ("provider", "openai".into()),
            ("endpoint", endpoint.clone()),
            ("model", "m".into()),
            ("dimensions", "4".into()),
            ("retry.max_attempts", "2".into()),
            ("retry.base_ms", "1".into()),
        ],
    )
    .await;
    let err = e.embed(&texts(&["x"])).await.unwrap_err().to_string();
    assert!(err.contains(&format!("{endpoint}/embeddings")), "{err}");
    assert!(err.contains("connect_error"), "{err}");
    assert!(err.contains("after 2 attempts"), "{err}");
}

#[tokio::test]
async fn vectors_of_the_wrong_length_are_a_clear_error() {
    let fake = FakeEndpoint::start().await;
    fake.always(Some(Fault::WrongDimensions(3)));
    let e = openai(&fake, &[]).await;
    let err = e.embed(&texts(&["x"])).await.unwrap_err().to_string();
    assert!(
        err.contains("has 3 values but the model declares dimensions = 4"),
        "{err}"
    );
    assert_eq!(
        fake.received().len(),
        1,
        "a malformed answer is not retried"
    );
}

#[tokio::test]
async fn send_dimensions_false_leaves_the_parameter_out() {
    let fake = FakeEndpoint::start().await;
    let e = openai(&fake, &[("send_dimensions", "false"), ("dimensions", "8")]).await;
    let input = texts(&["x"]);
    assert_eq!(e.embed(&input).await.unwrap(), expected(&input, 8));
    assert!(fake.received()[0].body.get("dimensions").is_none());
}

#[tokio::test]
async fn bad_options_are_plan_errors() {
    let build = |options: Vec<(&'static str, &'static str)>| async move {
        let opts = ModelOptions::new("m", options);
        build_model("m", opts, &ctx())
            .await
            .unwrap_err()
            .to_string()
    };
    let err = build(vec![
        ("provider", "openai"),
        ("endpoint", "http://127.0.0.1:1/v1"),
        ("model", "x"),
    ])
    .await;
    assert!(
        err.contains("option 'dimensions'") && err.contains("required"),
        "{err}"
    );
    let err = build(vec![
        ("provider", "openai"),
        ("endpoint", "http://127.0.0.1:1/v1"),
        ("model", "x"),
        ("dimensions", "4"),
        ("api_key_env", "STRATA_TEST_SURELY_UNSET_VAR"),
    ])
    .await;
    assert!(
        err.contains("STRATA_TEST_SURELY_UNSET_VAR") && err.contains("not set"),
        "{err}"
    );
    let err = build(vec![
        ("provider", "openai"),
        ("endpoint", "ftp://x"),
        ("model", "x"),
        ("dimensions", "4"),
    ])
    .await;
    assert!(err.contains("option 'endpoint'"), "{err}");
    let err = build(vec![
        ("provider", "openai"),
        ("endpoint", "http://127.0.0.1:1/v1"),
        ("model", "x"),
        ("dimensions", "4"),
        ("retry.max_ms", "1"),
        ("retry.base_ms", "10"),
    ])
    .await;
    assert!(err.contains("retry.max_ms"), "{err}");
    let err = build(vec![
        ("provider", "openai"),
        ("endpoint", "http://127.0.0.1:1/v1"),
        ("model", "x"),
        ("dimensions", "4"),
        ("limits.requests_per_minute", "0"),
    ])
    .await;
    assert!(err.contains("limits.requests_per_minute"), "{err}");
    let err = build(vec![
        ("provider", "openai"),
        ("endpoint", "http://127.0.0.1:1/v1"),
        ("model", "x"),
        ("dimensions", "4"),
        ("retries", "3"),
    ])
    .await;
    assert!(err.contains("unknown option 'retries'"), "{err}");
}

/// What the observer keeps of an attempt: number, status, HTTP status, error code, input tokens.
type Seen = (u32, AttemptStatus, Option<u16>, Option<String>, Option<u64>);

/// Records every attempt the stack reports.
#[derive(Debug, Default)]
struct Attempts(Mutex<Vec<Seen>>);

impl AttemptObserver for Attempts {
    fn on_attempt(&self, r: &AttemptRecord<'_>) {
        self.0.lock().unwrap().push((
            r.attempt,
            r.status,
            r.http_status,
            r.error_code.map(str::to_string),
            r.usage.input_tokens,
        ));
    }
}

/// The largest number of `at` inside any half-open window of length `w`.
fn max_in_window(at: &[std::time::Instant], w: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= w {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_never_sees_more_than_the_request_limit_retries_included() {
    let fake = FakeEndpoint::start().await;
    fake.script([Fault::throttled(Some("0")), Fault::server_error()]);
    let observer = Arc::new(Attempts::default());
    // 3 requests per 300 ms window: the per-minute limit, on a shorter clock.
    let window = Duration::from_millis(300);
    let config = StackConfig {
        limits: RateLimitConfig {
            requests: NonZeroU32::new(3),
            tokens: None,
            window,
        },
        observer: Some(observer.clone()),
        ..StackConfig::default()
    };
    let mut opts = ModelOptions::new(
        "limited",
        [
            ("endpoint", fake.openai_url()),
            ("model", "fake-embed".to_string()),
            ("dimensions", "4".to_string()),
            ("max_batch", "1".to_string()),
            ("max_concurrency", "16".to_string()),
        ],
    );
    let e = OpenAiEmbedder::from_options(&mut opts, config).unwrap();
    opts.finish().unwrap();
    let input: Vec<String> = (0..10).map(|i| format!("text {i}")).collect();
    assert_eq!(e.embed(&input).await.unwrap(), expected(&input, 4));

    let seen = fake.received();
    assert_eq!(seen.len(), 12, "10 texts + 2 retried attempts");
    let arrivals: Vec<_> = seen.iter().map(|r| r.at).collect();
    // The limiter spaces requests 100 ms apart, so 4 requests span at least 300 ms when sent;
    // 60 ms of the window are left for loopback delivery jitter.
    let worst = max_in_window(&arrivals, window - Duration::from_millis(60));
    assert!(worst <= 3, "{worst} requests inside one window");

    let attempts = observer.0.lock().unwrap().clone();
    assert_eq!(attempts.len(), 12);
    let failed: Vec<_> = attempts
        .iter()
        .filter(|a| a.1 != AttemptStatus::Ok)
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(failed
        .iter()
        .any(|a| a.1 == AttemptStatus::Error(ErrorKind::Throttled)
            && a.2 == Some(429)
            && a.3.as_deref() == Some("ThrottlingException")
            && a.4.is_none()));
    assert!(failed
        .iter()
        .any(|a| a.1 == AttemptStatus::Error(ErrorKind::Server) && a.2 == Some(500)));
    // Retries are attempt 2 of their call; usage is what the fake reported (2 words a text).
    assert_eq!(attempts.iter().filter(|a| a.0 == 2).count(), 2);
    assert!(attempts
        .iter()
        .filter(|a| a.1 == AttemptStatus::Ok)
        .all(|a| a.4 == Some(2)));
}

#[tokio::test]
async fn bedrock_titan_through_the_sdk() {
    let fake = FakeEndpoint::start().await;
    let e = bedrock(
        &fake,
        "amazon.titan-embed-text-v2:0",
        &[("dimensions", "256"), ("normalize", "false")],
    )
    .await;
    assert_eq!(e.dimensions(), 256);
    assert_eq!(e.model_id(), "amazon.titan-embed-text-v2:0");
    let input = texts(&["first text", "second", "third one here"]);
    assert_eq!(e.embed(&input).await.unwrap(), expected(&input, 256));

    let seen = fake.received();
    assert_eq!(seen.len(), 3, "Titan takes one text per call");
    for r in &seen {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/model/amazon.titan-embed-text-v2%3A0/invoke");
        assert_eq!(r.body["dimensions"], 256);
        assert_eq!(r.body["normalize"], false);
        let auth = r.header("authorization").expect("SigV4-signed");
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDSTRATATEST/")
                && auth.contains("/us-east-1/bedrock/aws4_request"),
            "{auth}"
        );
        assert!(!auth.contains("strata-test-secret"));
    }
    let mut sent: Vec<&str> = seen
        .iter()
        .map(|r| r.body["inputText"].as_str().unwrap())
        .collect();
    sent.sort();
    assert_eq!(sent, vec!["first text", "second", "third one here"]);
}

#[tokio::test]
async fn bedrock_throttling_is_retried_and_validation_is_not() {
    let fake = FakeEndpoint::start().await;
    fake.script([Fault::throttled(Some("0")), Fault::server_error()]);
    let e = bedrock(
        &fake,
        "amazon.titan-embed-text-v2:0",
        &[("dimensions", "512")],
    )
    .await;
    let input = texts(&["a"]);
    assert_eq!(e.embed(&input).await.unwrap(), expected(&input, 512));
    assert_eq!(
        fake.received().iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 500, 200]
    );
    assert_eq!(
        fake.received()[2].body["normalize"],
        true,
        "normalize defaults to true"
    );

    fake.always(Some(Fault::validation("Malformed input request")));
    let err = e.embed(&input).await.unwrap_err().to_string();
    assert_eq!(fake.received().len(), 4);
    assert!(err.contains("ValidationException"), "{err}");
    assert!(err.contains("Malformed input request"), "{err}");
    assert!(err.contains("not retried"), "{err}");
}

#[tokio::test]
async fn bedrock_cohere_batches_96_texts_a_call() {
    let fake = FakeEndpoint::start().await;
    let e = bedrock(
        &fake,
        "cohere.embed-english-v3",
        &[("dimensions", "1024"), ("input_type", "search_query")],
    )
    .await;
    let input: Vec<String> = (0..100).map(|i| format!("doc {i}")).collect();
    assert_eq!(e.embed(&input).await.unwrap(), expected(&input, 1024));
    let seen = fake.received();
    let mut sizes: Vec<usize> = seen
        .iter()
        .map(|r| r.body["texts"].as_array().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![4, 96]);
    for r in &seen {
        assert_eq!(r.path, "/model/cohere.embed-english-v3/invoke");
        assert_eq!(r.body["input_type"], "search_query");
    }
}

#[tokio::test]
async fn bedrock_reports_usage_to_the_observer() {
    fake_endpoints::aws_test_env();
    let fake = FakeEndpoint::start().await;
    fake.script([Fault::throttled(None)]);
    let observer = Arc::new(Attempts::default());
    let config = StackConfig {
        observer: Some(observer.clone()),
        ..StackConfig::default()
    };
    let mut opts = ModelOptions::new(
        "coh",
        [
            ("model_id", "cohere.embed-multilingual-v3".to_string()),
            ("region", "eu-west-1".to_string()),
            ("endpoint", fake.base_url()),
            ("dimensions", "1024".to_string()),
        ],
    );
    let e = BedrockEmbedder::from_options(&mut opts, config)
        .await
        .unwrap();
    opts.finish().unwrap();
    let input = texts(&["one two three", "four five"]);
    assert_eq!(e.embed(&input).await.unwrap(), expected(&input, 1024));
    let attempts = observer.0.lock().unwrap().clone();
    assert_eq!(
        attempts,
        vec![
            (
                1,
                AttemptStatus::Error(ErrorKind::Throttled),
                Some(429),
                Some("ThrottlingException".to_string()),
                None
            ),
            (2, AttemptStatus::Ok, None, None, Some(5)),
        ]
    );
    assert_eq!(fake.received()[1].body["input_type"], "search_document");
}

#[tokio::test]
async fn bedrock_options_are_checked_when_planned() {
    fake_endpoints::aws_test_env();
    let build = |options: Vec<(&'static str, &'static str)>| async move {
        let opts = ModelOptions::new("m", options);
        build_model("m", opts, &ctx())
            .await
            .unwrap_err()
            .to_string()
    };
    let err = build(vec![
        ("provider", "bedrock"),
        ("model_id", "amazon.titan-embed-text-v1"),
        ("region", "us-east-1"),
        ("dimensions", "1536"),
    ])
    .await;
    assert!(err.contains("not a supported embedding model"), "{err}");
    assert!(
        err.contains("amazon.titan-embed-text-v2:0") && err.contains("cohere.embed-english-v3"),
        "{err}"
    );
    let err = build(vec![
        ("provider", "bedrock"),
        ("model_id", "amazon.titan-embed-text-v2:0"),
        ("region", "us-east-1"),
        ("dimensions", "300"),
    ])
    .await;
    assert!(err.contains("256, 512 or 1024"), "{err}");
    let err = build(vec![
        ("provider", "bedrock"),
        ("model_id", "cohere.embed-multilingual-v3"),
        ("region", "us-east-1"),
        ("dimensions", "1024"),
        ("max_batch", "200"),
    ])
    .await;
    assert!(err.contains("max_batch") && err.contains("96"), "{err}");
    let err = build(vec![
        ("provider", "bedrock"),
        ("model_id", "amazon.titan-embed-text-v2:0"),
        ("region", "us-east-1"),
        ("dimensions", "256"),
        ("input_type", "search_query"),
    ])
    .await;
    assert!(
        err.contains("input_type") && err.contains("Cohere"),
        "{err}"
    );
}
