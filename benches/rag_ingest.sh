#!/usr/bin/env bash
# End to end jobs/rag_ingest.sql (documents -> chunk_text -> embed on the local executor ->
# Parquet by tenant and day) on DOCS generated documents, with the release binary.
#
#   benches/rag_ingest.sh                       # 20 000 documents of ~600 bytes
#   DOCS=2000 BODY_BYTES=3000 benches/rag_ingest.sh
#
# Prints documents/s, chunks/s, tokens/s and where the time goes, from the run's own
# Prometheus metrics (scraped every second while it runs; the last scrape can miss up to
# a second of work): tokenization and forward passes
# in the executor (summed over the batches that ran side by side, so they can exceed the
# wall time), and the Parquet sink's encode / finish / publish stages.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DOCS="${DOCS:-20000}"
BODY="${BODY_BYTES:-600}"
PORT="${PORT:-9477}"
export STRATA_MODELS="${STRATA_MODELS:-$PWD/models}"
[ -s "$STRATA_MODELS/all-MiniLM-L6-v2/model.safetensors" ] || scripts/fetch_models.sh

dir="$STRATA_CACHE/bench"
mkdir -p "$dir"
input="$dir/rag-$DOCS-$BODY.jsonl"
if [ ! -s "$input" ]; then
    log "generating $DOCS documents -> $input"
    python3 scripts/gen_corpus.py --docs "$DOCS" --mean-body-bytes "$BODY" --seed 11 --out "$input.tmp"
    mv "$input.tmp" "$input"
fi

build_release
bin="$RELEASE_DIR/strata"

out="$dir/rag-out"
rm -rf "$out"; mkdir -p "$out"
metrics="$out/metrics.txt"
( while sleep 1; do curl -sf "http://127.0.0.1:$PORT/metrics" -o "$metrics.tmp" && mv "$metrics.tmp" "$metrics"; done ) &
scraper=$!
trap 'kill $scraper 2>/dev/null || true' EXIT

log "running jobs/rag_ingest.sql on $DOCS documents"
t0=$(date +%s.%N)
/usr/bin/env time -f "%M" -o "$out/rss" \
    "$bin" run jobs/rag_ingest.sql --var DATA="$input" --var OUT="$out" --checkpoint "$out/ckpt" \
    --metrics-addr "127.0.0.1:$PORT" > "$out/run.log" 2>&1 || { cat "$out/run.log"; die "strata run failed"; }
t1=$(date +%s.%N)
kill $scraper 2>/dev/null || true

python3 - "$metrics" "$(echo "$t1 - $t0" | bc -l)" "$DOCS" "$out/run.log" <<'PY'
import re, sys
path, wall, docs, log = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
vals = {}
for line in open(path):
    if line.startswith("#"):
        continue
    m = re.match(r'([a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)', line)
    if m:
        key = m.group(1) + (m.group(2) or "")
        vals[key] = float(m.group(3))
def total(prefix, where=""):
    return sum(v for k, v in vals.items() if k.startswith(prefix) and where in k)
# Rows from the run's summary: the last epoch is published after the last scrape.
m = re.search(r"sink vectors: (\d+) rows", open(log).read())
rows = float(m.group(1)) if m else total("strata_sink_rows_total")
tokens = total("strata_executor_tokens_total")
print(f"wall {wall:.1f} s: {docs / wall:.1f} documents/s, {rows / wall:.1f} chunks/s, "
      f"{tokens / wall:.0f} tokens/s ({int(rows)} chunks, {int(tokens)} tokens)")
print("time (seconds, summed over concurrent work):")
print(f"  executor tokenize   {total('strata_executor_tokenize_seconds_sum'):8.1f}")
print(f"  executor forward    {total('strata_executor_forward_seconds_sum'):8.1f}")
print(f"  executor queue wait {total('strata_executor_queue_seconds_sum'):8.1f}")
for stage in ("encode", "finish", "publish"):
    label = 'stage="%s"' % stage
    print(f"  parquet {stage:<11} {total('strata_sink_write_seconds_sum', label):8.1f}")
print("  (the final epoch's Parquet finish/publish happen after the last scrape; see run.log)")
PY
echo "peak RSS of strata: $(( $(cat "$out/rss") / 1024 )) MB"

# The vectors are Parquet lists of floats (the Arrow schema in the file says fixed-size): DuckDB reads them as FLOAT[].
py_env bench duckdb
"$PY" - "$out/vectors" <<'PY'
import duckdb, sys
con = duckdb.connect()
t, n, dims, model = con.execute(
    f"SELECT typeof(embedding), count(*), min(len(embedding)), min(embedding_model) "
    f"FROM read_parquet('{sys.argv[1]}/**/*.parquet', hive_partitioning = true) GROUP BY 1").fetchone()
print(f"DuckDB reads {n} vectors as {t} (length {dims}, model {model})")
PY
