//! Local embedding throughput of the batch executor, for comparison with
//! `benches/compare/st_embed.py` (sentence-transformers) on the same corpus and batch size.
//! `benches/compare/embed.sh` runs both in one go and prints the ratio.
//!
//! ```text
//! cargo run --release -p strata-operators --example embed_bench -- \
//!     --corpus /tmp/corpus.jsonl [--batch-size 64] [--threads N] [--rounds 3]
//! ```
//!
//! The corpus is JSON Lines with a `text` field. Prints one JSON object: texts/s, tokens/s
//! (tokens after truncation, `[CLS]`/`[SEP]` included, as sentence-transformers counts
//! them), the model FLOP rate the executor reached, and the machine's measured peak FP32
//! FLOP rate (see [`peak_flops`]) with the fraction of it.

use std::io::BufRead;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use strata_operators::models::local::{resolve_model_dir, BertEmbedding};
use strata_operators::models::{build_model, Embedder, ModelContext, ModelOptions};

struct Args {
    corpus: PathBuf,
    batch_size: usize,
    threads: usize,
    rounds: usize,
    models: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        corpus: PathBuf::new(),
        batch_size: 64,
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        rounds: 3,
        models: std::env::var_os("STRATA_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("models")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--corpus" => a.corpus = PathBuf::from(v()),
            "--batch-size" => a.batch_size = v().parse().expect("--batch-size N"),
            "--threads" => a.threads = v().parse().expect("--threads N"),
            "--rounds" => a.rounds = v().parse().expect("--rounds N"),
            "--models" => a.models = PathBuf::from(v()),
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        !a.corpus.as_os_str().is_empty(),
        "--corpus FILE is required"
    );
    a
}

/// Multiply-adds of one BERT encoder pass over a sequence of `l` tokens, times two
/// (FLOPs): per layer the Q, K, V and output projections (4·l·h·h), attention scores and
/// the weighted sum (2·l·l·h), and the feed-forward block (2·l·h·i).
fn bert_flops(l: usize, layers: usize, h: usize, i: usize) -> f64 {
    let (l, h, i) = (l as f64, h as f64, i as f64);
    2.0 * layers as f64 * (4.0 * l * h * h + 2.0 * l * l * h + 2.0 * l * h * i)
}

/// Peak FP32 rate of this machine, measured: every thread runs a loop of independent
/// 256-bit fused multiply-adds (10 accumulators, enough to cover FMA latency on two FMA
/// pipes) for half a second; the sum over threads is the peak. This is what the cores
/// can issue, an upper bound no real kernel reaches.
fn peak_flops(threads: usize) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx2") {
            let handles: Vec<_> = (0..threads)
                .map(|_| std::thread::spawn(|| unsafe { fma_loop() }))
                .collect();
            return handles
                .into_iter()
                .map(|h| h.join().expect("fma thread"))
                .sum();
        }
    }
    f64::NAN
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop() -> f64 {
    use std::arch::x86_64::*;
    let mul = _mm256_set1_ps(0.999_999);
    let add = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(1.0); 10];
    let start = Instant::now();
    let mut iters = 0u64;
    while start.elapsed().as_secs_f64() < 0.5 {
        for _ in 0..10_000 {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, mul, add);
            }
        }
        iters += 10_000;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut sink = 0.0f32;
    for a in acc {
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), a);
        sink += out.iter().sum::<f32>();
    }
    std::hint::black_box(sink);
    // 10 accumulators x 8 lanes x 2 FLOPs per FMA.
    (iters * 10 * 8 * 2) as f64 / secs
}

#[tokio::main]
async fn main() {
    let a = args();
    let file = std::fs::File::open(&a.corpus).expect("open corpus");
    let texts: Vec<String> = std::io::BufReader::new(file)
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(&l.expect("read line")).expect("JSON line");
            v["text"].as_str().expect("a text field").to_string()
        })
        .collect();

    let ctx = ModelContext::new(a.models.clone());
    let opts = ModelOptions::new(
        "minilm",
        [
            ("provider", "local".to_string()),
            ("device", "cpu".to_string()),
            ("max_batch", a.batch_size.to_string()),
            ("threads", a.threads.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    let model = build_model("minilm", opts, &ctx).await.expect("model");
    let e: Arc<dyn Embedder> = model.embedder("embed").expect("embedder").clone();

    // Token counts and FLOPs of the corpus, as the model sees it.
    let dir = resolve_model_dir(&a.models, "all-MiniLM-L6-v2");
    let counter = BertEmbedding::load("count", &dir, candle_core::Device::Cpu).expect("model");
    let lens: Vec<usize> = texts
        .iter()
        .map(|t| counter.tokenize(t).expect("tokenize").len())
        .collect();
    let tokens: usize = lens.iter().sum();
    // all-MiniLM-L6-v2: 6 layers, hidden 384, intermediate 1536. FLOPs of the padded
    // batches the executor runs (sorted by length, `batch_size` at a time).
    let mut sorted = lens.clone();
    sorted.sort_unstable();
    let flops: f64 = sorted
        .chunks(a.batch_size)
        .map(|c| c.len() as f64 * bert_flops(*c.last().expect("non-empty"), 6, 384, 1536))
        .sum();

    // Warm up (weights paged in, pools started).
    let warm: Vec<String> = texts.iter().take(a.batch_size * 2).cloned().collect();
    e.embed(&warm).await.expect("warm-up");

    let mut best = f64::INFINITY;
    for _ in 0..a.rounds {
        let t0 = Instant::now();
        let v = e.embed(&texts).await.expect("embed");
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(v.len(), texts.len() * e.dimensions());
        best = best.min(secs);
    }
    let peak = peak_flops(a.threads);
    let achieved = flops / best;
    println!(
        "{}",
        serde_json::json!({
            "impl": "strata",
            "texts": texts.len(),
            "batch_size": a.batch_size,
            "threads": a.threads,
            "seconds_best": best,
            "texts_per_s": texts.len() as f64 / best,
            "tokens_per_s": tokens as f64 / best,
            "mean_tokens": tokens as f64 / texts.len() as f64,
            "model_gflops_per_s": achieved / 1e9,
            "peak_gflops_per_s": peak / 1e9,
            "fraction_of_peak": achieved / peak,
        })
    );
}
