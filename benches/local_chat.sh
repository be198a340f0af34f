#!/usr/bin/env bash
# Local chat generation throughput (SmolLM2-135M-Instruct, CPU): DOCS summaries of ~WORDS-word
# documents (jobs/data/docs.jsonl bodies cut to WORDS words, ai_summarize's prompt, greedy,
# at most MAX_TOKENS tokens each), run one at a time and then with CONCURRENCY calls in
# flight (the engine decodes up to MAX_BATCH sequences per step), in the same process.
# Prints generated tokens/s of both and their ratio, and checks that both gave the same
# replies (batching must not change greedy outputs).
#
#   benches/local_chat.sh                             # 100 docs, 200 words, 48 tokens, 16
#   DOCS=20 MAX_BATCH=8 CONCURRENCY=8 benches/local_chat.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

export STRATA_MODELS="${STRATA_MODELS:-$PWD/models}"
[ -f "$STRATA_MODELS/SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf" ] \
    || die "SmolLM2-135M-Instruct is missing under $STRATA_MODELS: run scripts/fetch_models.sh"
need cargo "install the Rust toolchain (https://rustup.rs)"
log "building the local_chat_bench example (release)"
cargo build --release --quiet -p strata-operators --example local_chat_bench
RELEASE_DIR="${CARGO_TARGET_DIR:-target}/release"

OUT="$("$RELEASE_DIR/examples/local_chat_bench" \
    --docs "${DOCS:-100}" --words "${WORDS:-200}" --max-tokens "${MAX_TOKENS:-48}" \
    --max-batch "${MAX_BATCH:-16}" --concurrency "${CONCURRENCY:-16}")"
echo "$OUT"
python3 - "$OUT" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
one, bat = r["one_at_a_time"], r["batched"]
print(f"one at a time: {one['generated_tokens_per_s']:.1f} generated tokens/s "
      f"({one['generated_tokens']} tokens, {one['seconds']:.1f} s)")
print(f"batched (max_batch {r['max_batch']}, {r['concurrency']} in flight): "
      f"{bat['generated_tokens_per_s']:.1f} generated tokens/s "
      f"({bat['generated_tokens']} tokens, {bat['seconds']:.1f} s)")
print(f"ratio: {r['speedup']:.2f}x; identical replies: {r['identical_replies']}/{r['docs']}")
if r["identical_replies"] != r["docs"]:
    sys.exit("batched and one-at-a-time replies differ")
PY
