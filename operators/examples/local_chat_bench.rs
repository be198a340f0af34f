//! Generation throughput of the local chat model (SmolLM2-135M-Instruct by default):
//! `--docs` summaries of ~`--words`-word documents (the bodies of `jobs/data/docs.jsonl`, cut
//! to that many words), `ai_summarize`'s prompt, greedy decoding, at most `--max-tokens`
//! tokens each. The same documents run twice through one loaded model, in the same process:
//!
//! - **one at a time**: each call waits for the previous one (every decode step carries one
//!   sequence);
//! - **batched**: `--concurrency` calls in flight, as `ai_summarize` keeps `max_concurrency`
//!   rows in flight; the engine decodes up to `--max-batch` of them per step.
//!
//! ```text
//! cargo run --release -p strata-operators --example local_chat_bench -- \
//!     [--docs 100] [--words 200] [--max-tokens 48] [--max-batch 16] [--concurrency 16]
//! ```
//!
//! Prints one JSON object: per mode, generated tokens, prompt tokens, seconds and generated
//! tokens/s; the batched/one-at-a-time ratio; and how many replies were identical in both
//! modes (greedy decoding: batching must not change them).

use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use strata_operators::models::chat::{ChatModel, ChatReply, ChatRequest};
use strata_operators::models::local_chat::LocalChat;
use strata_operators::models::{ModelContext, ModelOptions};
use strata_operators::udfs::ai::summarize_prompt;

struct Args {
    docs: usize,
    words: usize,
    max_tokens: u32,
    max_batch: usize,
    concurrency: usize,
    corpus: PathBuf,
    models: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        docs: 100,
        words: 200,
        max_tokens: 48,
        max_batch: 16,
        concurrency: 16,
        corpus: PathBuf::from("jobs/data/docs.jsonl"),
        models: std::env::var_os("STRATA_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("models")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--docs" => a.docs = v().parse().expect("--docs N"),
            "--words" => a.words = v().parse().expect("--words N"),
            "--max-tokens" => a.max_tokens = v().parse().expect("--max-tokens N"),
            "--max-batch" => a.max_batch = v().parse().expect("--max-batch N"),
            "--concurrency" => a.concurrency = v().parse().expect("--concurrency N"),
            "--corpus" => a.corpus = PathBuf::from(v()),
            "--models" => a.models = PathBuf::from(v()),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The first `docs` bodies of the corpus, each cut to `words` words (bodies are reused
/// when the corpus is shorter).
fn documents(a: &Args) -> Vec<String> {
    let text = std::fs::read_to_string(&a.corpus)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", a.corpus.display()));
    let bodies: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let body = v["body"].as_str().unwrap_or_default();
            body.split_whitespace()
                .take(a.words)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|b| b.split_whitespace().count() >= a.words / 2)
        .collect();
    assert!(!bodies.is_empty(), "no documents in {}", a.corpus.display());
    (0..a.docs)
        .map(|i| bodies[i % bodies.len()].clone())
        .collect()
}

struct Run {
    replies: Vec<ChatReply>,
    secs: f64,
}

impl Run {
    fn json(&self) -> serde_json::Value {
        let generated: u64 = self
            .replies
            .iter()
            .map(|r| r.usage.output_tokens.unwrap_or(0))
            .sum();
        let prompt: u64 = self
            .replies
            .iter()
            .map(|r| r.usage.input_tokens.unwrap_or(0))
            .sum();
        serde_json::json!({
            "summaries": self.replies.len(),
            "generated_tokens": generated,
            "prompt_tokens": prompt,
            "seconds": (self.secs * 1000.0).round() / 1000.0,
            "generated_tokens_per_s": (self.tokens_per_s() * 10.0).round() / 10.0,
        })
    }

    fn tokens_per_s(&self) -> f64 {
        let generated: u64 = self
            .replies
            .iter()
            .map(|r| r.usage.output_tokens.unwrap_or(0))
            .sum();
        generated as f64 / self.secs
    }
}

async fn run(model: &LocalChat, requests: &[ChatRequest], concurrency: usize) -> Run {
    let t = Instant::now();
    let replies: Vec<ChatReply> = futures::stream::iter(requests)
        .map(|r| async move { model.complete(r).await.expect("generation") })
        .buffered(concurrency.max(1))
        .collect()
        .await;
    Run {
        replies,
        secs: t.elapsed().as_secs_f64(),
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let docs = documents(&a);
    let mut opts = ModelOptions::new(
        "bench",
        [
            ("path", "SmolLM2-135M-Instruct".to_string()),
            ("device", "cpu".to_string()),
            ("max_batch", a.max_batch.to_string()),
        ],
    );
    let model = LocalChat::load(&mut opts, &ModelContext::new(a.models.clone()), None)
        .unwrap_or_else(|e| panic!("{e}"));
    opts.finish().expect("every option read");
    let requests: Vec<ChatRequest> = docs
        .iter()
        .map(|d| ChatRequest {
            system: None,
            prompt: summarize_prompt(d, 30),
            max_tokens: a.max_tokens,
            temperature: None,
        })
        .collect();

    let single = run(&model, &requests, 1).await;
    let batched = run(&model, &requests, a.concurrency).await;
    let identical = single
        .replies
        .iter()
        .zip(&batched.replies)
        .filter(|(x, y)| x.text == y.text)
        .count();
    let out = serde_json::json!({
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF), CPU",
        "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "docs": a.docs,
        "words_per_doc": a.words,
        "max_tokens": a.max_tokens,
        "max_batch": a.max_batch,
        "concurrency": a.concurrency,
        "one_at_a_time": single.json(),
        "batched": batched.json(),
        "peak_batch": model.engine().peak_batch(),
        "speedup": ((batched.tokens_per_s() / single.tokens_per_s()) * 100.0).round() / 100.0,
        "identical_replies": identical,
        "sample_summary": batched.replies.first().map(|r| r.text.clone()),
    });
    println!("{}", serde_json::to_string_pretty(&out).expect("json"));
}
