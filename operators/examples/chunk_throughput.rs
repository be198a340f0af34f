//! One timed pass of `chunk_text`'s splitter over a JSONL corpus, printing MB/s.
//!
//! ```text
//! cargo run --release -p strata-operators --example chunk_throughput -- CORPUS.jsonl [MAX_TOKENS [OVERLAP_TOKENS]]
//! ```
//!
//! Documents are chunked in parallel on rayon's pool with `chunk_texts`, as the UDF does per
//! batch. Only splitting is timed (reading the corpus and loading the tokenizer are not).
//! Prints `strata: <MB> MB in <s> s = <MB/s> MB/s, ...`, the line
//! `benches/compare/chunk_text.sh` reads. Models: `$STRATA_MODELS`, else `./models`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use strata_operators::{chunk_texts, tokenizer_for, ChunkMode, ChunkOptions};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chunk_throughput: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(corpus) = args.first() else {
        return Err("usage: chunk_throughput CORPUS.jsonl [MAX_TOKENS [OVERLAP_TOKENS]]".into());
    };
    let int = |i: usize, default: i64| -> Result<i64, String> {
        args.get(i).map_or(Ok(default), |v| {
            v.parse().map_err(|_| format!("'{v}' is not an integer"))
        })
    };
    let opts = ChunkOptions::new(int(1, 256)?, int(2, 32)?, ChunkMode::Recursive)
        .map_err(|e| e.to_string())?;
    let models =
        std::env::var_os("STRATA_MODELS").map_or_else(|| PathBuf::from("models"), PathBuf::from);
    let tok = tokenizer_for(&models, None).map_err(|e| e.to_string())?;

    let data = std::fs::read_to_string(corpus).map_err(|e| format!("cannot read {corpus}: {e}"))?;
    let mut bodies = Vec::new();
    for (n, line) in data
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{corpus}:{}: {e}", n + 1))?;
        match v.get("body").and_then(|b| b.as_str()) {
            Some(b) => bodies.push(b.to_string()),
            None => return Err(format!("{corpus}:{}: no string field 'body'", n + 1)),
        }
    }
    let texts: Vec<Option<&str>> = bodies.iter().map(|b| Some(b.as_str())).collect();
    let bytes: usize = bodies.iter().map(String::len).sum();

    let t0 = Instant::now();
    let chunks = chunk_texts(&tok, &texts, &opts).map_err(|e| e.to_string())?;
    let secs = t0.elapsed().as_secs_f64();
    let n_chunks: usize = chunks.iter().flatten().map(Vec::len).sum();
    let mb = bytes as f64 / 1e6;
    println!(
        "strata: {mb:.1} MB in {secs:.2} s = {:.2} MB/s, {} docs, {n_chunks} chunks, {} threads",
        mb / secs,
        bodies.len(),
        rayon_threads()
    );
    Ok(())
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
