#!/usr/bin/env bash
# The README's first command: installs what is missing (model files, a release
# build of strata) and runs jobs/quickstart.sql end to end into ./out/.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need cargo "install the Rust toolchain (https://rustup.rs)"

scripts/fetch_models.sh
log "building strata (release)"
cargo build --release --quiet --bin strata
bin="${CARGO_TARGET_DIR:-target}/release/strata"

out="${OUT:-out}"
log "running jobs/quickstart.sql -> $out/"
"$bin" run jobs/quickstart.sql --var OUT="$out"

cat <<MSG

Done. Chunks are in $out/chunks/ (Parquet, partitioned by tenant and dt).
Look at them with:

  $bin query "SELECT tenant, count(*) AS chunks, sum(tokens) AS tokens FROM chunks GROUP BY tenant ORDER BY tenant" --table chunks=$out/chunks/

MSG
