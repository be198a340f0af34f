//! Shared helpers of the operators' integration tests: where the models are.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use strata_operators::TextTokenizer;

/// `$STRATA_MODELS`, else `<workspace>/models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("STRATA_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("models")
        })
}

/// The default tokenizer; fails (never skips) when the model has not been fetched.
pub fn default_tokenizer() -> Arc<TextTokenizer> {
    let dir = models_dir();
    match strata_operators::tokenizer_for(&dir, None) {
        Ok(t) => t,
        Err(e) => panic!(
            "these tests need the all-MiniLM-L6-v2 model under {}: run scripts/fetch_models.sh \
             from the workspace root (or set STRATA_MODELS). Error: {e}",
            dir.display()
        ),
    }
}

/// Bodies of the sample corpus `jobs/data/docs.jsonl`.
pub fn sample_bodies() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../jobs/data/docs.jsonl");
    let data = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (regenerate it with scripts/gen_corpus.py)",
            path.display()
        )
    });
    data.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).expect("docs.jsonl holds JSON lines");
            v["body"]
                .as_str()
                .expect("every document has a string body")
                .to_string()
        })
        .collect()
}
