//! Rate-limit efficiency of the chat client stack (issue: "LLM batch inference", speed).
//!
//! Starts the fake OpenAI-compatible endpoint of the tests on 127.0.0.1 with a fixed
//! latency and every n-th response throttled (HTTP 429, no Retry-After), declares a chat
//! model with `'limits.requests_per_minute'`, and keeps it saturated with `ai_complete`-style
//! calls for a fixed time. Reports, from what the fake received:
//!
//! - attempts per minute (every request the endpoint saw, throttled ones included) as a
//!   fraction of the limit,
//! - successful requests per minute as a fraction of what the throttling leaves
//!   ((1 - throttled share) x limit),
//! - the most requests in any sliding 60-second window (must not exceed the limit),
//! - rows submitted, answered and lost.
//!
//! ```text
//! cargo run --release -p strata-operators --example chat_limits_bench -- \
//!     --secs 180 --rpm 1200 --latency-ms 50 --throttle-every 5
//! ```

#[path = "../tests/common/fake_endpoints.rs"]
mod fake_endpoints;

use std::time::{Duration, Instant};

use fake_endpoints::{fake_answer, FakeEndpoint};
use futures::StreamExt;
use strata_operators::models::{build_model, ModelContext, ModelOptions};

struct Args {
    secs: u64,
    rpm: u64,
    latency_ms: u64,
    throttle_every: u64,
    concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        secs: 180,
        rpm: 1200,
        latency_ms: 50,
        throttle_every: 5,
        concurrency: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: u64 = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--secs" => a.secs = value,
            "--rpm" => a.rpm = value,
            "--latency-ms" => a.latency_ms = value,
            "--throttle-every" => a.throttle_every = value,
            "--concurrency" => a.concurrency = value as usize,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

#[tokio::main]
async fn main() {
    let a = args();
    let fake = FakeEndpoint::start().await;
    fake.set_latency(Duration::from_millis(a.latency_ms));
    fake.throttle_every(a.throttle_every);
    let opts = ModelOptions::new(
        "llm",
        [
            ("provider", "openai".to_string()),
            ("task", "chat".to_string()),
            ("endpoint", fake.openai_url()),
            ("model", "fake-chat".to_string()),
            ("max_tokens", "64".to_string()),
            ("limits.requests_per_minute", a.rpm.to_string()),
            ("retry.max_attempts", "30".to_string()),
        ],
    );
    let model = build_model("llm", opts, &ModelContext::new("models".into()))
        .await
        .expect("model builds");
    let chat = model.chat("ai_complete").expect("chat").clone();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.secs);
    // Rows are submitted until the deadline; each is awaited to its answer (or error).
    let prompts =
        (0u64..).map_while(|i| (Instant::now() < deadline).then(|| format!("request {i}")));
    let results: Vec<(String, Result<String, String>)> = futures::stream::iter(prompts)
        .map(|p| {
            let chat = &chat;
            async move {
                let r = chat
                    .client
                    .complete(&chat.settings.request(p.clone(), None))
                    .await
                    .map(|r| r.text)
                    .map_err(|e| e.to_string());
                (p, r)
            }
        })
        .buffer_unordered(a.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();

    let submitted = results.len();
    let wrong = results
        .iter()
        .filter(|(p, r)| r.as_deref().ok() != Some(fake_answer(p).as_str()))
        .count();
    let received = fake.received();
    let t0 = received.iter().map(|r| r.at).min().expect("requests");
    let mut at: Vec<Duration> = received.iter().map(|r| r.at.duration_since(t0)).collect();
    at.sort();
    let window = Duration::from_secs(60);
    let mut max_in_window = 0;
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= window {
            lo += 1;
        }
        max_in_window = max_in_window.max(hi - lo + 1);
    }
    let attempts = received.len();
    let ok = received.iter().filter(|r| r.status == 200).count();
    let throttled = received.iter().filter(|r| r.status == 429).count();
    let minutes = elapsed.as_secs_f64() / 60.0;
    let limit = a.rpm as f64;
    let throttle_share = if a.throttle_every == 0 {
        0.0
    } else {
        1.0 / a.throttle_every as f64
    };
    let attempts_per_min = attempts as f64 / minutes;
    let ok_per_min = ok as f64 / minutes;
    println!(
        "chat_limits_bench: {:.1} s, limit {} req/min, latency {} ms, {:.0}% throttled, concurrency {}",
        elapsed.as_secs_f64(),
        a.rpm,
        a.latency_ms,
        throttle_share * 100.0,
        a.concurrency
    );
    println!("  attempts: {attempts} ({throttled} throttled) = {attempts_per_min:.1}/min = {:.3} of the limit", attempts_per_min / limit);
    println!(
        "  successes: {ok} = {ok_per_min:.1}/min = {:.3} of what the throttling leaves ({:.0}/min)",
        ok_per_min / ((1.0 - throttle_share) * limit),
        (1.0 - throttle_share) * limit
    );
    println!(
        "  most requests in any 60 s window: {max_in_window} (limit {})",
        a.rpm
    );
    println!(
        "  rows: {submitted} submitted, {} answered correctly, {wrong} lost or wrong",
        submitted - wrong
    );
    if max_in_window as u64 > a.rpm || wrong > 0 {
        eprintln!("FAILED: over the limit or rows lost");
        std::process::exit(1);
    }
}
