#!/usr/bin/env bash
# Local embedding throughput: strata's batch executor (candle, CPU) against
# sentence-transformers (PyPI, CPU torch) on the same texts, the same model directory
# and the same batch size, in the same run.
#
#   benches/compare/embed.sh                 # 1024 texts of ~230-254 tokens, batch 64, all cores
#   N=256 BATCH=32 benches/compare/embed.sh  # smaller
#
# 1. installs torch + sentence-transformers into $STRATA_CACHE/py-embed-bench (once;
#    PyPI's torch wheel pulls the CUDA libraries, ~6 GB, but runs on the CPU),
# 2. sentence-transformers generates the corpus (benches/compare/st_embed.py, seed 1,
#    written to $STRATA_CACHE/bench) and times model.encode(texts, batch_size=BATCH),
# 3. strata's embed_bench example (release) embeds the same file through the executor,
# 4. prints both JSON lines, the ratio, and the fraction of the measured FP32 peak.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

N="${N:-1024}"
BATCH="${BATCH:-64}"
THREADS="${THREADS:-$(nproc)}"
export STRATA_MODELS="${STRATA_MODELS:-$PWD/models}"
[ -s "$STRATA_MODELS/all-MiniLM-L6-v2/model.safetensors" ] || scripts/fetch_models.sh

py_env embed-bench "sentence-transformers==6.2.0" "torch"
corpus="$STRATA_CACHE/bench/embed-corpus-$N-seed1-256.jsonl"
mkdir -p "$(dirname "$corpus")"

build_release
bin="$RELEASE_DIR/examples/embed_bench"

log "sentence-transformers: $N texts, batch $BATCH, $THREADS threads"
if [ -s "$corpus" ]; then src=(--corpus "$corpus"); else src=(--n "$N" --corpus-out "$corpus"); fi
st=$(HF_HUB_OFFLINE=1 "$PY" benches/compare/st_embed.py "${src[@]}" --batch-size "$BATCH" \
    --threads "$THREADS" --model "$STRATA_MODELS/all-MiniLM-L6-v2" | tail -1)
echo "$st"

log "strata: same corpus, batch $BATCH, $THREADS threads"
ours=$("$bin" --corpus "$corpus" --batch-size "$BATCH" --threads "$THREADS" | tail -1)
echo "$ours"

python3 - "$st" "$ours" <<'PY'
import json, sys
st, us = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"strata / sentence-transformers: {us['texts_per_s'] / st['texts_per_s']:.2f}x chunks/s "
      f"({us['texts_per_s']:.1f} vs {st['texts_per_s']:.1f}), "
      f"{us['tokens_per_s'] / st['tokens_per_s']:.2f}x tokens/s "
      f"({us['tokens_per_s']:.0f} vs {st['tokens_per_s']:.0f})")
print(f"strata reaches {us['model_gflops_per_s']:.1f} GFLOP/s of model FLOPs = "
      f"{100 * us['fraction_of_peak']:.1f}% of the measured FP32 peak "
      f"({us['peak_gflops_per_s']:.1f} GFLOP/s on {us['threads']} threads)")
PY
