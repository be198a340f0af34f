#!/usr/bin/env bash
# The README's first command: installs what is missing (model files, a release
# build of strata) and runs jobs/quickstart.sql (chunks) and jobs/rag_ingest.sql
# (chunks embedded with the local all-MiniLM-L6-v2 model) end to end into ./out/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need cargo "install the Rust toolchain (https://rustup.rs)"

scripts/fetch_models.sh
log "building strata (release)"
cargo build --release --quiet --bin strata
bin="${CARGO_TARGET_DIR:-target}/release/strata"

out="${OUT:-out}"
log "running jobs/quickstart.sql -> $out/chunks/"
"$bin" run jobs/quickstart.sql --var OUT="$out"
log "running jobs/rag_ingest.sql -> $out/vectors/ (local embeddings on the CPU)"
"$bin" run jobs/rag_ingest.sql --var OUT="$out"

cat <<MSG

Done. Chunks are in $out/chunks/ and embedded chunks in $out/vectors/ (Parquet,
partitioned by tenant and dt). Look at them with:

  $bin query "SELECT tenant, count(*) AS chunks, sum(tokens) AS tokens FROM chunks GROUP BY tenant ORDER BY tenant" --table chunks=$out/chunks/

and ask the vectors a question:

  $bin query "CREATE MODEL minilm WITH (provider = 'local'); SELECT doc_id, substr(text, 1, 60) AS text, cosine_similarity(embedding, embed('minilm', 'how do refunds work?')) AS score FROM v ORDER BY score DESC LIMIT 5" --table v=$out/vectors/

MSG
