#!/usr/bin/env bash
# Runs every test of the project. Installs what the tests need (model files,
# the S3 test server), starts the services on 127.0.0.1, runs the whole cargo
# test suite, and stops the services again, pass or fail.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need cargo "install the Rust toolchain (https://rustup.rs)"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STRATA_CACHE/target}"
export STRATA_MODELS="${STRATA_MODELS:-$PWD/models}"

scripts/fetch_models.sh

test_py_env
log "test Python: $STRATA_TEST_PYTHON (${TEST_PY_PACKAGES[*]})"

eval "$(scripts/s3_server.sh start)"
trap 'scripts/s3_server.sh stop "$STRATA_TEST_S3_PID"' EXIT
log "S3 test server at $STRATA_TEST_S3_ENDPOINT (bucket $STRATA_TEST_S3_BUCKET)"

eval "$(scripts/kafka_server.sh start)"
trap 'scripts/s3_server.sh stop "$STRATA_TEST_S3_PID"; scripts/kafka_server.sh stop "$STRATA_TEST_KAFKA_PID"' EXIT
log "Kafka test broker (tansu) at $STRATA_TEST_KAFKA_BOOTSTRAP"

log "building and running the test suite (target dir: $CARGO_TARGET_DIR)"
cargo test --workspace --no-fail-fast "$@"
