#!/usr/bin/env bash
# Tumbling-window aggregation speed: 10M usage rows read from Parquet, grouped by hour,
# model, feature and tenant, through strata (jobs/cost_rollup.sql: event-time windows
# with a watermark, emitted as the watermark passes each hour, Decimal(38,10) money) and
# through DuckDB running the same GROUP BY on the same files, same machine, same run.
#
#   benches/window_rollup.sh              # 10M rows
#   ROWS=1000000 benches/window_rollup.sh # smaller
#
# Prints rows/s and peak RSS for each and the strata/DuckDB throughput ratio, and checks
# that both give the same number of windows and the same total cost to the last digit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROWS="${ROWS:-10000000}"
FILES="${FILES:-10}"
dir="$STRATA_CACHE/bench/window-$ROWS"
mkdir -p "$dir"

build_release
bin="$RELEASE_DIR/strata"
py_env bench duckdb

# Usage rows in the schema `SET usage.path` writes, one file per slice of time (sorted by
# ts, as a usage stream is), ~1.6 s apart: 10M rows cover ~6 months of hours.
if [ ! -s "$dir/usage/.complete" ]; then
    log "generating $ROWS usage rows in $FILES Parquet files -> $dir/usage"
    rm -rf "$dir/usage"; mkdir -p "$dir/usage"
    "$PY" - "$ROWS" "$FILES" "$dir/usage" <<'PY'
import sys, duckdb
rows, files, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
con = duckdb.connect()
per = rows // files
for f in range(files):
    lo, hi = f * per, (f + 1) * per if f < files - 1 else rows
    con.execute(f"""
    COPY (
      SELECT
        printf('%032x', i) AS request_id,
        TIMESTAMPTZ '2026-01-01 00:00:00+00' + to_microseconds(i * 1600000 + (hash(i) % 900000)::BIGINT) AS ts,
        'bulk_summarize' AS job,
        ['digest', 'search', 'bulk', 'triage'][1 + i % 4] AS feature,
        'tenant-' || (hash(i * 7) % 50)::VARCHAR AS tenant,
        ['summarizer', 'embedder', 'local-llm'][1 + i % 3] AS model,
        ['anthropic.claude-3-5-haiku-20241022-v1:0', 'amazon.titan-embed-text-v2:0', 'SmolLM2-135M-Instruct'][1 + i % 3] AS model_id,
        ['bedrock', 'bedrock', 'local'][1 + i % 3] AS provider,
        CASE WHEN i % 3 = 1 THEN 'embedding' ELSE 'chat' END AS operation,
        'summarize-v1' AS prompt_version,
        1::INTEGER AS attempt,
        CASE WHEN i % 23 = 0 THEN 'throttled' ELSE 'ok' END AS status,
        CASE WHEN i % 23 = 0 THEN 'ThrottlingException' END AS error_code,
        i % 11 = 0 AS cache_hit,
        (200 + hash(i) % 1600)::BIGINT AS input_tokens,
        (hash(i * 3) % 160)::BIGINT AS output_tokens,
        0::BIGINT AS cache_read_tokens,
        0::BIGINT AS cache_write_tokens,
        (40 + hash(i * 5) % 2400)::BIGINT AS latency_ms,
        -- An integer number of 1e-7 USD, exact as DECIMAL(38, 10) (a DECIMAL division
        -- would give a DOUBLE).
        CAST(((200 + hash(i) % 1600) * 8 + (hash(i * 3) % 160) * 40) / 10000000.0 AS DECIMAL(38, 10)) AS cost_usd,
        NULL::VARCHAR AS guardrail_action
      FROM range({lo}, {hi}) t(i)
      ORDER BY ts
    ) TO '{out}/part-{f}.parquet' (FORMAT parquet, COMPRESSION zstd)
    """)
PY
    touch "$dir/usage/.complete"
fi
bytes=$(cat "$dir"/usage/*.parquet | wc -c)
out="$dir/out"
rm -rf "$out"; mkdir -p "$out"


r_strata=$(run_timed "$out" strata "$bin" run jobs/cost_rollup.sql \
    --var USAGE="$dir/usage/*.parquet" --var USAGE_FORMAT=parquet \
    --var OUT="$out/strata" --checkpoint "$out/ckpt")
r_duck=$(run_timed "$out" duckdb "$PY" -c "
import duckdb
con = duckdb.connect()
con.execute(\"SET threads TO $(nproc)\")
con.execute('''
COPY (
  SELECT time_bucket(INTERVAL 1 HOUR, ts) AS ChargePeriodStart,
         time_bucket(INTERVAL 1 HOUR, ts) + INTERVAL 1 HOUR AS ChargePeriodEnd,
         SUM(cost_usd) AS BilledCost, SUM(cost_usd) AS EffectiveCost, SUM(cost_usd) AS ListCost,
         'USD' AS BillingCurrency,
         SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens) AS ConsumedQuantity,
         'Token' AS ConsumedUnit, '1M Tokens' AS PricingUnit,
         CASE provider WHEN 'bedrock' THEN 'Amazon Bedrock' WHEN 'openai' THEN 'OpenAI-compatible API' ELSE 'strata local executor' END AS ServiceName,
         'AI and Machine Learning' AS ServiceCategory,
         CASE provider WHEN 'bedrock' THEN 'AWS' WHEN 'openai' THEN 'OpenAI-compatible endpoint' ELSE 'strata' END AS ProviderName,
         model_id AS ResourceId,
         MAP(['strata:job', 'strata:model', 'strata:feature', 'strata:tenant'], [job, model, coalesce(feature, ''), coalesce(tenant, '')]) AS Tags,
         model AS x_model, feature AS x_feature, tenant AS x_tenant,
         SUM(input_tokens) AS x_input_tokens, SUM(output_tokens) AS x_output_tokens,
         SUM(cache_read_tokens) AS x_cache_read_tokens, SUM(cache_write_tokens) AS x_cache_write_tokens,
         COUNT(*) AS x_attempts, SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END) AS x_errors,
         SUM(CASE WHEN cache_hit THEN 1 ELSE 0 END) AS x_cache_hits,
         median(latency_ms) AS x_latency_p50_ms, approx_quantile(latency_ms, 0.95) AS x_latency_p95_ms
  FROM read_parquet('$dir/usage/*.parquet')
  GROUP BY ALL
) TO '$out/duck.parquet' (FORMAT parquet)
''')
")

# Same windows, same money.
check=$("$PY" -c "
import duckdb
con = duckdb.connect()
s = con.execute(\"SELECT COUNT(*), SUM(BilledCost)::VARCHAR, SUM(x_attempts) FROM read_parquet('$out/strata/cost_rollup/**/*.parquet')\").fetchone()
d = con.execute(\"SELECT COUNT(*), SUM(BilledCost)::VARCHAR, SUM(x_attempts) FROM read_parquet('$out/duck.parquet')\").fetchone()
print('same' if s == d else f'DIFFERENT strata={s} duckdb={d}', s)
")

"$PY" - "$ROWS" "$bytes" "$r_strata" "$r_duck" "$check" <<'PY'
import sys
rows, nbytes = int(sys.argv[1]), int(sys.argv[2])
def parse(s):
    label, secs, kb = s.split()
    return label, float(secs), int(kb)
s, d = parse(sys.argv[3]), parse(sys.argv[4])
print(f"input: {rows} usage rows, {nbytes / 1e6:.0f} MB of Parquet")
for label, secs, kb in (s, d):
    print(f"{label:8s} {secs:7.2f} s  {rows / secs:10.0f} rows/s  peak RSS {kb / 1024:7.0f} MiB")
print(f"results: {sys.argv[5]}")
print(f"ratio strata/duckdb (throughput): {d[1] / s[1]:.2f}x")
PY
