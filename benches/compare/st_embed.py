#!/usr/bin/env python3
"""Baseline for strata's local embedder: sentence-transformers all-MiniLM-L6-v2 on CPU.

Embeds N chunk-sized texts (about 230-254 tokens each, near MiniLM's 256-token limit) with model.encode and reports the best of
--repeats timed passes over the whole corpus (after one untimed warm-up on the first batches).

The corpus is either read from --corpus (JSONL, one object per line, text in --field) or
generated deterministically from --seed (sentences from scripts/gen_corpus.py, each text cut at a
token boundary to a target length drawn from [--min-tokens, --max-tokens]); --corpus-out writes
the texts used as JSONL ({"id": i, "text": ...}) so the Rust bench can embed exactly the same ones.

Prints one JSON line on stdout:
  {"impl": "sentence-transformers", "texts": N, "batch_size": B, "threads": T,
   "seconds_best": s, "texts_per_s": x, "tokens_per_s": y, "tokens": total}
tokens are counted with the model's tokenizer after truncation to max_seq_length (256),
[CLS]/[SEP] included.

Usage (venv with torch + sentence-transformers, e.g. ~/.cache/strata/py-st):
  HF_HUB_OFFLINE=1 python benches/compare/st_embed.py [--n 1024] [--batch-size 64]
      [--threads T] [--seed 1] [--corpus-out FILE | --corpus FILE] [--model DIR]
"""

import argparse
import json
import os
import random
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def gen_texts(tokenizer, n, seed, lo, hi):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from gen_corpus import sentence  # the project's own deterministic prose generator

    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        target = rng.randint(lo, hi)
        text = ""
        while True:
            text = (text + " " + sentence(rng)).strip()
            enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            if len(enc["input_ids"]) >= target:
                break
        # Cut at the end of token number `target` (content tokens, no [CLS]/[SEP]).
        end = enc["offset_mapping"][target - 1][1]
        texts.append(text[:end].rstrip())
    return texts


def main() -> int:
    ap = argparse.ArgumentParser()
    models = os.environ.get("STRATA_MODELS", os.path.join(ROOT, "models"))
    ap.add_argument("--model", default=os.path.join(models, "all-MiniLM-L6-v2"))
    ap.add_argument("--n", type=int, default=1024, help="number of texts to generate")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--min-tokens", type=int, default=230)
    ap.add_argument("--max-tokens", type=int, default=254)
    ap.add_argument("--corpus", help="read texts from this JSONL instead of generating them")
    ap.add_argument("--field", default="text", help="JSON field holding the text (with --corpus)")
    ap.add_argument("--corpus-out", help="write the texts used to this JSONL file")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        print(f"st_embed.py: {e}; install torch and sentence-transformers into a venv "
              "(e.g. python3 -m venv ~/.cache/strata/py-st && "
              "~/.cache/strata/py-st/bin/pip install torch sentence-transformers)", file=sys.stderr)
        return 2
    if not os.path.exists(os.path.join(a.model, "model.safetensors")):
        print(f"st_embed.py: model '{a.model}' not found; run scripts/fetch_models.sh", file=sys.stderr)
        return 2

    torch.set_num_threads(a.threads)
    model = SentenceTransformer(a.model, device="cpu")
    tok = model.tokenizer
    max_len = model.max_seq_length

    if a.corpus:
        with open(a.corpus, encoding="utf-8") as f:
            texts = [json.loads(line)[a.field] for line in f if line.strip()]
    else:
        texts = gen_texts(tok, a.n, a.seed, a.min_tokens, a.max_tokens)
    if not texts:
        print("st_embed.py: empty corpus", file=sys.stderr)
        return 2
    if a.corpus_out:
        os.makedirs(os.path.dirname(os.path.abspath(a.corpus_out)), exist_ok=True)
        with open(a.corpus_out, "w", encoding="utf-8") as f:
            for i, t in enumerate(texts):
                f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")

    tokens = sum(len(ids) for ids in tok(texts, truncation=True, max_length=max_len)["input_ids"])

    def encode(ts):
        return model.encode(ts, batch_size=a.batch_size, show_progress_bar=False, convert_to_numpy=True)

    encode(texts[: 2 * a.batch_size])  # warm-up (untimed)
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        out = encode(texts)
        times.append(time.perf_counter() - t0)
        assert out.shape[0] == len(texts)
    best = min(times)
    print(f"st_embed.py: passes {', '.join(f'{t:.2f}s' for t in times)}; torch {torch.__version__}, "
          f"max_seq_length {max_len}, {tokens / len(texts):.1f} tokens/text", file=sys.stderr)
    print(json.dumps({
        "impl": "sentence-transformers",
        "texts": len(texts),
        "batch_size": a.batch_size,
        "threads": torch.get_num_threads(),
        "seconds_best": round(best, 4),
        "texts_per_s": round(len(texts) / best, 2),
        "tokens_per_s": round(tokens / best, 1),
        "tokens": tokens,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
