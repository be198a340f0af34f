#!/usr/bin/env bash
# Starts an S3-protocol test server (moto) on 127.0.0.1 with a bucket, and
# prints the environment the tests need. Usage: eval "$(scripts/s3_server.sh start)"
#                                              scripts/s3_server.sh stop PID
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

case "${1:-start}" in
start)
    py_env s3 'moto[server]==5.*' boto3
    port="$(free_port)"
    "$PY" -m moto.server -H 127.0.0.1 -p "$port" >"$STRATA_CACHE/moto.log" 2>&1 &
    pid=$!
    wait_port "$port" "the S3 test server (moto; log: $STRATA_CACHE/moto.log)"
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "$PY" - "$port" <<'PY'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{sys.argv[1]}", region_name="us-east-1")
s3.create_bucket(Bucket="strata-test")
PY
    echo "export STRATA_TEST_S3_PID=$pid"
    echo "export STRATA_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
    echo "export STRATA_TEST_S3_BUCKET=strata-test"
    ;;
stop)
    kill "${2:?pid}" 2>/dev/null || true
    ;;
esac
