//! Throughput of the local embedding executor (all-MiniLM-L6-v2, candle on the CPU) on
//! chunk-sized texts of ~250 tokens, one `embed` call of 128 texts at batch size 32 (four
//! batches, run side by side on the executor's pool) and a single-batch call of 32 texts.
//!
//! `cargo bench --bench embed`. The comparison with sentence-transformers on the same texts
//! is `benches/compare/embed.sh`.

use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, Throughput};
use strata_operators::models::{build_model, Embedder, ModelContext, ModelOptions};

/// Deterministic prose of about 250 word pieces per text.
fn texts(n: usize) -> Vec<String> {
    const WORDS: [&str; 24] = [
        "pipeline",
        "throughput",
        "the",
        "invoice",
        "tenant",
        "quickly",
        "model",
        "latency",
        "of",
        "documents",
        "and",
        "retries",
        "budget",
        "vector",
        "a",
        "region",
        "chunk",
        "report",
        "with",
        "analysts",
        "query",
        "cost",
        "stream",
        "token",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            let mut words = Vec::with_capacity(230);
            for k in 0..230 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                words.push(WORDS[(state % WORDS.len() as u64) as usize]);
                if k % 17 == 16 {
                    words.push(".");
                }
            }
            words.join(" ")
        })
        .collect()
}

fn embedder(rt: &tokio::runtime::Runtime, max_batch: usize) -> Arc<dyn Embedder> {
    let models = std::env::var_os("STRATA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    let opts = ModelOptions::new(
        "minilm",
        [
            ("provider".to_string(), "local".to_string()),
            ("device".to_string(), "cpu".to_string()),
            ("max_batch".to_string(), max_batch.to_string()),
        ],
    );
    let model = rt
        .block_on(build_model("minilm", opts, &ModelContext::new(models)))
        .expect("the model loads (run scripts/fetch_models.sh)");
    model.embedder("embed").expect("embedding model").clone()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let e = embedder(&rt, 32);
    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("embed_local_minilm");
    for n in [32usize, 128] {
        let batch = texts(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("{n}_texts_batch_32"), |b| {
            b.iter(|| rt.block_on(e.embed(&batch)).expect("embed"))
        });
    }
    g.finish();
    c.final_summary();
}
