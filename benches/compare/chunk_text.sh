#!/usr/bin/env bash
# chunk_text vs LangChain's RecursiveCharacterTextSplitter, same corpus, same tokenizer, same run.
#
#   benches/compare/chunk_text.sh
#
# 1. fetches the model (scripts/fetch_models.sh) if needed,
# 2. generates a 50 MB JSONL corpus with scripts/gen_corpus.py (cached under $STRATA_CACHE/bench),
# 3. installs langchain-text-splitters + tokenizers into $STRATA_CACHE/venv,
# 4. runs strata's splitter (release-built chunk_throughput example, one timed pass, all cores) and
#    LangChain (chunk_size/chunk_overlap in tokens, length_function = the same tokenizer.json),
# 5. prints MB/s of each and the ratio.
#
# Env: STRATA_CACHE (default ~/.cache/strata), STRATA_BENCH_CORPUS (use this corpus instead),
#      CORPUS_BYTES (default 52428800), MAX_TOKENS (256), OVERLAP_TOKENS (32).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
. scripts/lib.sh
CACHE="${STRATA_CACHE:-$HOME/.cache/strata}"
VENV="$CACHE/venv"
CORPUS_BYTES="${CORPUS_BYTES:-52428800}"
CORPUS="${STRATA_BENCH_CORPUS:-$CACHE/bench/corpus-$CORPUS_BYTES.jsonl}"
export MAX_TOKENS="${MAX_TOKENS:-256}" OVERLAP_TOKENS="${OVERLAP_TOKENS:-32}"
export STRATA_MODELS="${STRATA_MODELS:-$ROOT/models}"


[ -s "$STRATA_MODELS/all-MiniLM-L6-v2/tokenizer.json" ] || scripts/fetch_models.sh

if [ ! -s "$CORPUS" ]; then
    mkdir -p "$(dirname "$CORPUS")"
    python3 scripts/gen_corpus.py --target-bytes "$CORPUS_BYTES" --mean-body-bytes 3000 --seed 1 --out "$CORPUS.tmp" \
        || die "scripts/gen_corpus.py failed"
    mv "$CORPUS.tmp" "$CORPUS"
fi

if ! "$VENV/bin/python" -c "import langchain_text_splitters, tokenizers" 2>/dev/null; then
    python3 -m venv "$VENV" || die "cannot create a venv at $VENV (apt-get install python3-venv?)"
    "$VENV/bin/pip" install -q --disable-pip-version-check langchain-text-splitters tokenizers \
        || die "pip could not install langchain-text-splitters and tokenizers"
fi

echo "corpus: $CORPUS ($(du -h "$CORPUS" | cut -f1)), max_tokens=$MAX_TOKENS overlap_tokens=$OVERLAP_TOKENS, $(nproc) cores"
build_release
rust_line="$("$RELEASE_DIR/examples/chunk_throughput" "$CORPUS" "$MAX_TOKENS" "$OVERLAP_TOKENS" | grep '^strata:')" \
    || die "$RELEASE_DIR/examples/chunk_throughput failed"
echo "$rust_line"
lc_line="$("$VENV/bin/python" benches/compare/chunk_langchain.py "$CORPUS" --max-tokens "$MAX_TOKENS" --overlap "$OVERLAP_TOKENS" \
    --tokenizer "$STRATA_MODELS/all-MiniLM-L6-v2/tokenizer.json")" || die "benches/compare/chunk_langchain.py failed"
echo "$lc_line"
rust_mbs="$(sed -E 's/.*= ([0-9.]+) MB\/s.*/\1/' <<<"$rust_line")"
lc_mbs="$(sed -E 's/.*= ([0-9.]+) MB\/s.*/\1/' <<<"$lc_line")"
python3 -c "print(f'ratio: strata is {float(\"$rust_mbs\") / float(\"$lc_mbs\"):.1f}x LangChain ($rust_mbs vs $lc_mbs MB/s)')"
