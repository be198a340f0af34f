#!/usr/bin/env bash
# Starts a Kafka-protocol test broker (tansu, in-memory storage) on a free
# 127.0.0.1 port and prints the environment the tests need.
# Usage: eval "$(scripts/kafka_server.sh start)"
#        scripts/kafka_server.sh stop PID
# tansu is installed with cargo under $STRATA_CACHE/tools on first use (several
# minutes on a small machine; later runs reuse it).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
TOOLS="$STRATA_CACHE/tools"
TANSU="$TOOLS/bin/tansu"

case "${1:-start}" in
start)
    if [ ! -x "$TANSU" ]; then
        need cargo "install the Rust toolchain (https://rustup.rs)"
        log "installing tansu $TANSU_VERSION into $TOOLS (first run only; log: $STRATA_CACHE/tansu-install.log)"
        cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore \
            --root "$TOOLS" --target-dir "$STRATA_CACHE/tansu-target" \
            >"$STRATA_CACHE/tansu-install.log" 2>&1 \
            || die "cargo install tansu failed; see $STRATA_CACHE/tansu-install.log"
    fi
    port="$(free_port)"
    # One cluster id per broker: librdkafka caches metadata by cluster.
    "$TANSU" broker \
        --storage-engine "memory://tansu/" \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        >"$STRATA_CACHE/tansu.log" 2>&1 &
    pid=$!
    wait_port "$port" "the Kafka test broker (tansu; log: $STRATA_CACHE/tansu.log)"
    echo "export STRATA_TEST_KAFKA_PID=$pid"
    echo "export STRATA_TEST_KAFKA_BOOTSTRAP=127.0.0.1:$port"
    ;;
stop)
    kill "${2:?pid}" 2>/dev/null || true
    ;;
*)
    die "usage: $0 start | stop PID"
    ;;
esac
