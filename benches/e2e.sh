#!/usr/bin/env bash
# End-to-end throughput: jobs/passthrough.sql (JSON Lines -> Parquet, ZSTD) against
# DuckDB's COPY (SELECT * FROM read_json('f.jsonl')) TO 'out.parquet', same input,
# same machine, same run. Also runs strata on half of the input to show that
# peak memory does not grow with the input size.
# Memory is bounded by the epoch (jobs/passthrough.sql sets epoch.max_rows = 200000, and
# the Parquet writer holds up to one row group per open file), so both inputs span several
# epochs: on a quarter (250k rows, barely over one epoch) the peak is lower for that reason.
#
#   benches/e2e.sh              # 1M rows of ~1 KB
#   ROWS=200000 benches/e2e.sh  # smaller
#
# Prints rows/s, MB/s and peak RSS for each, and strata/DuckDB ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROWS="${ROWS:-1000000}"
BODY="${BODY_BYTES:-850}"   # ~1 KB per JSON line with the other fields
dir="$STRATA_CACHE/bench"
mkdir -p "$dir"
input="$dir/passthrough-$ROWS.jsonl"
half="$dir/passthrough-$((ROWS / 2)).jsonl"
for f in "$input:$ROWS" "$half:$((ROWS / 2))"; do
    path="${f%%:*}"; n="${f##*:}"
    if [ ! -s "$path" ]; then
        log "generating $n rows -> $path"
        python3 scripts/gen_corpus.py --docs "$n" --mean-body-bytes "$BODY" --seed 7 --out "$path.tmp"
        mv "$path.tmp" "$path"
    fi
done

build_release
bin="$RELEASE_DIR/strata"
py_env bench duckdb

bytes=$(stat -c %s "$input")
out="$dir/out"
rm -rf "$out"; mkdir -p "$out"


strata_run() { # INPUT OUT CHECKPOINT
    "$bin" run jobs/passthrough.sql --var INPUT="$1" --var OUT="$2" --checkpoint "$3"
}
export -f strata_run; export bin

r_strata=$(run_timed "$out" strata bash -c "strata_run '$input' '$out/strata' '$out/ckpt'")
r_half=$(run_timed "$out" strata_half bash -c "strata_run '$half' '$out/strata_h' '$out/ckpt_h'")
r_duck=$(run_timed "$out" duckdb "$PY" -c "
import duckdb, sys
con = duckdb.connect()
con.execute(\"SET threads TO $(nproc)\")
con.execute(\"COPY (SELECT * FROM read_json('$input', format='newline_delimited')) TO '$out/duck.parquet' (FORMAT parquet, COMPRESSION zstd)\")
")

python3 - "$ROWS" "$bytes" "$r_strata" "$r_half" "$r_duck" <<'PY'
import sys
rows, nbytes = int(sys.argv[1]), int(sys.argv[2])
def parse(s):
    label, secs, kb = s.split()
    return label, float(secs), int(kb)
s, q, d = (parse(x) for x in sys.argv[3:6])
mb = nbytes / 1e6
print(f"input: {rows} rows, {mb:.0f} MB")
for label, secs, kb in (s, d):
    print(f"{label:8s} {secs:7.2f} s  {rows/secs:10.0f} rows/s  {mb/secs:7.1f} MB/s  peak RSS {kb/1024:7.0f} MiB")
print(f"strata on half of the input: peak RSS {q[2]/1024:.0f} MiB (full input: {s[2]/1024:.0f} MiB)")
print(f"ratio strata/duckdb (throughput): {d[1]/s[1]:.2f}x")
PY
