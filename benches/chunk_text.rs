//! Throughput of `chunk_text`'s splitter (strata_operators::chunk_text) on a JSONL corpus.
//!
//! Corpus: `$STRATA_BENCH_CORPUS` (JSONL with a `body` field), else a small one generated
//! with `scripts/gen_corpus.py` into the target directory. Chunk sizes: `$MAX_TOKENS`
//! (default 256) and `$OVERLAP_TOKENS` (default 32), recursive mode.
//!
//! `cargo bench --bench chunk_text` runs criterion: documents in parallel with `chunk_texts`
//! on rayon's pool (as the UDF does per batch) and on one thread. For one timed pass over a
//! large corpus, and the comparison with LangChain, see `benches/compare/chunk_text.sh` (it
//! uses the `chunk_throughput` example of strata-operators).

use std::path::PathBuf;

use criterion::{Criterion, Throughput};
use strata_operators::{
    chunk_text, chunk_texts, tokenizer_for, ChunkMode, ChunkOptions, TextTokenizer,
};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_i64(name: &str, default: i64) -> i64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not an integer")),
        Err(_) => default,
    }
}

fn corpus_path() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_BENCH_CORPUS") {
        return PathBuf::from(p);
    }
    let out = workspace().join("target").join("bench-corpus-small.jsonl");
    if !out.exists() {
        let status = std::process::Command::new("python3")
            .arg(workspace().join("scripts/gen_corpus.py"))
            .args([
                "--docs",
                "500",
                "--mean-body-bytes",
                "3000",
                "--seed",
                "7",
                "--out",
            ])
            .arg(&out)
            .status()
            .expect("python3 runs scripts/gen_corpus.py (or set STRATA_BENCH_CORPUS)");
        assert!(
            status.success(),
            "scripts/gen_corpus.py failed; set STRATA_BENCH_CORPUS to a JSONL corpus"
        );
    }
    out
}

fn load_bodies() -> Vec<String> {
    let path = corpus_path();
    let data = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read corpus {}: {e}", path.display()));
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("body").and_then(|b| b.as_str()).map(str::to_string))
        .collect()
}

fn tokenizer() -> std::sync::Arc<TextTokenizer> {
    let models = std::env::var_os("STRATA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"));
    tokenizer_for(&models, None).unwrap_or_else(|e| panic!("{e}"))
}

fn run_parallel(tok: &TextTokenizer, bodies: &[String], opts: &ChunkOptions) -> usize {
    let texts: Vec<Option<&str>> = bodies.iter().map(|b| Some(b.as_str())).collect();
    let chunks = chunk_texts(tok, &texts, opts).unwrap_or_else(|e| panic!("{e}"));
    chunks.iter().flatten().map(Vec::len).sum()
}

fn run_serial(tok: &TextTokenizer, bodies: &[String], opts: &ChunkOptions) -> usize {
    bodies
        .iter()
        .map(|b| {
            chunk_text(tok, b, opts)
                .map(|c| c.len())
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .sum()
}

fn main() {
    let opts = ChunkOptions::new(
        env_i64("MAX_TOKENS", 256),
        env_i64("OVERLAP_TOKENS", 32),
        ChunkMode::Recursive,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let tok = tokenizer();
    let bodies = load_bodies();
    let bytes: usize = bodies.iter().map(String::len).sum();
    assert!(bytes > 0, "the corpus has no bodies");

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("chunk_text");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("parallel_256_32", |b| {
        b.iter(|| run_parallel(&tok, &bodies, &opts))
    });
    g.bench_function("one_thread_256_32", |b| {
        b.iter(|| run_serial(&tok, &bodies, &opts))
    });
    g.finish();
    c.final_summary();
}
