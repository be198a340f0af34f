# Shared helpers for the project's scripts (sourced, not run).
# Everything installed goes under $STRATA_CACHE (default ~/.cache/strata), so
# repeated runs and CI on the same machine stay warm; a cold run still works.

export STRATA_CACHE="${STRATA_CACHE:-$HOME/.cache/strata}"
mkdir -p "$STRATA_CACHE"

log() { printf '\033[1m[strata]\033[0m %s\n' "$*" >&2; }
die() { printf '[strata] error: %s\n' "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required: $2"; }

# A Python environment with the given pip packages; prints nothing, sets $PY.
# Uses a venv when the interpreter has one, else pip --target + PYTHONPATH.
py_env() {
    local name="$1"; shift
    local dir="$STRATA_CACHE/py-$name"
    local stamp="$dir/.installed-$(printf '%s ' "$@" | sha256sum | cut -c1-16)"
    need python3 "install Python 3 with pip"
    if [ -x "$dir/venv/bin/python" ]; then
        PY="$dir/venv/bin/python"
    elif [ -d "$dir/lib" ]; then
        PY=python3; export PYTHONPATH="$dir/lib${PYTHONPATH:+:$PYTHONPATH}"
    elif python3 -m venv "$dir/venv" >/dev/null 2>&1; then
        PY="$dir/venv/bin/python"
    else
        rm -rf "$dir/venv"; mkdir -p "$dir/lib"
        PY=python3; export PYTHONPATH="$dir/lib${PYTHONPATH:+:$PYTHONPATH}"
    fi
    if [ ! -f "$stamp" ]; then
        log "installing Python packages for $name: $*"
        if [ "$PY" = python3 ]; then
            python3 -m pip install --quiet --disable-pip-version-check --target "$dir/lib" "$@"
        else
            "$PY" -m pip install --quiet --disable-pip-version-check "$@"
        fi
        touch "$stamp"
    fi
}

# The Python the end-to-end tests check outputs with, using tools that share no code
# with strata: sqlglot parses `strata athena-ddl` as Athena SQL, DuckDB reads the
# Parquet (tests/athena.rs, which names the same pins). Exports STRATA_TEST_PYTHON.
TEST_PY_PACKAGES=(sqlglot==30.30.0 duckdb==2.0.1)
test_py_env() {
    py_env test "${TEST_PY_PACKAGES[@]}"
    STRATA_TEST_PYTHON="$PY"
    export STRATA_TEST_PYTHON
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
    local port="$1" what="$2"
    for _ in $(seq 1 150); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    die "$what did not start on 127.0.0.1:$port"
}

# Release build of everything the benchmark scripts run, in ONE cargo invocation: cargo
# unifies dependency features per invocation (examples pull in dev-dependencies), so
# building the binary and the examples separately would compile DataFusion twice.
build_release() {
    need cargo "install the Rust toolchain (https://rustup.rs)"
    log "building strata and the benchmark examples (release)"
    cargo build --release --quiet -p strata --bin strata \
        -p strata-operators --example embed_bench --example chunk_throughput \
        --example chat_limits_bench \
        -p strata-connectors --example kafka_bench
    RELEASE_DIR="${CARGO_TARGET_DIR:-target}/release"
}

# run_timed DIR LABEL CMD... : runs CMD with its output in DIR/LABEL.log and prints
# "LABEL seconds peak_rss_kb" (GNU time); a failure prints the log and stops.
run_timed() {
    local dir="$1" label="$2"; shift 2
    command -v time >/dev/null 2>&1 || [ -x /usr/bin/time ] || die "GNU time is needed for peak memory: apt-get install time"
    local t0 t1
    t0=$(date +%s.%N)
    /usr/bin/env time -f "%M" -o "$dir/$label.rss" "$@" >"$dir/$label.log" 2>&1 || { cat "$dir/$label.log"; die "$label failed"; }
    t1=$(date +%s.%N)
    echo "$label $(echo "$t1 - $t0" | bc -l) $(cat "$dir/$label.rss")"
}
