#!/usr/bin/env bash
# Kafka -> Parquet pass-through speed: ROWS JSON documents of ~1 KB over 4 partitions on a
# tansu broker on this machine (scripts/kafka_server.sh), read by strata
# (deploy-style job: kafka source, bounded at the end offsets, parquet sink) and by a bare
# rdkafka consumer loop that polls the same topic and discards the messages (the broker's
# ceiling as librdkafka sees it), in the same run. strata also runs on a topic with half
# the messages, to show that peak memory does not grow with the topic.
#
#   benches/kafka.sh                 # 1M messages
#   ROWS=200000 benches/kafka.sh     # smaller
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ROWS="${ROWS:-1000000}"
BYTES="${BYTES:-1000}"
EPOCH_ROWS="${EPOCH_ROWS:-100000}"
build_release
bin="$RELEASE_DIR/strata"
tool="$RELEASE_DIR/examples/kafka_bench"

eval "$(scripts/kafka_server.sh start)"
trap 'scripts/kafka_server.sh stop "$STRATA_TEST_KAFKA_PID"' EXIT
bs="$STRATA_TEST_KAFKA_BOOTSTRAP"
tansu="$STRATA_CACHE/tools/bin/tansu"
out="$STRATA_CACHE/bench/kafka"
rm -rf "$out"; mkdir -p "$out"

half=$((ROWS / 2))
for t in "full:$ROWS" "half:$half"; do
    name="${t%%:*}"; n="${t##*:}"
    "$tansu" topic create "bench-$name" --partitions 4 --broker "tcp://$bs" >/dev/null \
        || die "cannot create topic bench-$name on $bs"
    log "producing $n messages of ~$BYTES bytes into bench-$name"
    "$tool" produce "$bs" "bench-$name" "$n" "$BYTES"
done

job() { # TOPIC OUT -> job file
    cat >"$out/$1.sql" <<SQL
SET job.name = 'kafka_bench_$1';
SET epoch.max_rows = '$EPOCH_ROWS';
CREATE TABLE src (id BIGINT NOT NULL, tenant TEXT, body TEXT)
WITH (connector = 'kafka', bootstrap_servers = '$bs', topic = '$1', group_id = 'bench-$1',
      'scan.startup.mode' = 'earliest', 'scan.bounded.mode' = 'latest');
CREATE TABLE out WITH (connector = 'parquet', path = '$2/');
INSERT INTO out SELECT id, tenant, body FROM src;
SQL
    echo "$out/$1.sql"
}


r_bare=$(run_timed "$out" bare "$tool" consume "$bs" bench-full "$ROWS")
bare_bytes=$(awk '{print $3}' "$out/bare.log")
r_strata=$(run_timed "$out" strata "$bin" run "$(job bench-full "$out/full")" --checkpoint "$out/ckpt-full")
r_half=$(run_timed "$out" strata_half "$bin" run "$(job bench-half "$out/half")" --checkpoint "$out/ckpt-half")
written=$("$bin" query "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM t" --table t="$out/full/" | grep -Eo '[0-9]+ +\| +[0-9]+' | tr -d ' ')

python3 - "$ROWS" "$bare_bytes" "$r_bare" "$r_strata" "$r_half" "$written" <<'PY'
import sys
rows, nbytes = int(sys.argv[1]), int(sys.argv[2])
def parse(s):
    label, secs, kb = s.split()
    return label, float(secs), int(kb)
b, s, h = (parse(x) for x in sys.argv[3:6])
mb = nbytes / 1e6
print(f"input: {rows} messages, {mb:.0f} MB of values, 4 partitions")
for label, secs, kb in (b, s):
    print(f"{label:8s} {secs:7.2f} s  {rows/secs:10.0f} records/s  {mb/secs:7.1f} MB/s  peak RSS {kb/1024:7.0f} MiB")
print(f"strata output rows|distinct ids: {sys.argv[6]}")
print(f"strata on half the topic: peak RSS {h[2]/1024:.0f} MiB (full topic: {s[2]/1024:.0f} MiB)")
print(f"ratio strata/bare consumer (throughput): {b[1]/s[1]:.2f}x")
PY
