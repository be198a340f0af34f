#!/usr/bin/env python3
"""Baseline for strata's chunk_text: LangChain's RecursiveCharacterTextSplitter on a JSONL corpus.

The splitter is configured like `chunk_text(body, MAX_TOKENS, OVERLAP)`: chunk_size and
chunk_overlap in tokens, with a length_function counting tokens (no special tokens) with the
same tokenizer.json through the `tokenizers` Python package, padding and truncation off.
Only splitting is timed (the corpus is read and the tokenizer loaded before the clock starts).
Prints one line: `langchain: <MB> MB in <s> s = <MB/s> MB/s, <docs> docs, <chunks> chunks`.

Usage: chunk_langchain.py CORPUS.jsonl [--tokenizer PATH] [--max-tokens 256] [--overlap 32]
"""

import argparse
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus")
    models = os.environ.get("STRATA_MODELS", "models")
    ap.add_argument("--tokenizer", default=os.path.join(models, "all-MiniLM-L6-v2", "tokenizer.json"))
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--field", default="body")
    a = ap.parse_args()

    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter
        from tokenizers import Tokenizer
    except ImportError as e:
        print(f"chunk_langchain.py: {e}; run benches/compare/chunk_text.sh (it installs "
              "langchain-text-splitters and tokenizers into a venv)", file=sys.stderr)
        return 2
    if not os.path.exists(a.tokenizer):
        print(f"chunk_langchain.py: tokenizer '{a.tokenizer}' not found; run scripts/fetch_models.sh",
              file=sys.stderr)
        return 2

    tok = Tokenizer.from_file(a.tokenizer)
    tok.no_padding()
    tok.no_truncation()

    def n_tokens(s: str) -> int:
        return len(tok.encode(s, add_special_tokens=False).ids)

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=a.max_tokens, chunk_overlap=a.overlap, length_function=n_tokens)

    with open(a.corpus, encoding="utf-8") as f:
        texts = [json.loads(line)[a.field] for line in f if line.strip()]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)

    t0 = time.perf_counter()
    chunks = 0
    for t in texts:
        chunks += len(splitter.split_text(t))
    secs = time.perf_counter() - t0
    mb = nbytes / 1e6
    print(f"langchain: {mb:.1f} MB in {secs:.2f} s = {mb / secs:.2f} MB/s, {len(texts)} docs, {chunks} chunks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
