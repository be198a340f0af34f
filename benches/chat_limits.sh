#!/usr/bin/env bash
# Rate-limit efficiency of the chat client stack: a fake OpenAI-compatible endpoint on
# 127.0.0.1 answers after LATENCY_MS and throttles every THROTTLE_EVERY-th response (5 =
# 20%); a chat model limited to RPM requests/minute is kept saturated for SECS seconds.
# Prints attempts/min as a fraction of the limit, successes/min as a fraction of what the
# throttling leaves, the most requests seen in any sliding 60 s window, and rows lost.
#
#   benches/chat_limits.sh                            # 180 s, 1200/min, 50 ms, 20% throttled
#   SECS=60 RPM=600 benches/chat_limits.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

build_release
"$RELEASE_DIR/examples/chat_limits_bench" \
    --secs "${SECS:-180}" --rpm "${RPM:-1200}" --latency-ms "${LATENCY_MS:-50}" \
    --throttle-every "${THROTTLE_EVERY:-5}" --concurrency "${CONCURRENCY:-64}"
