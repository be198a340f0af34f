#!/usr/bin/env python3
"""Regenerate operators/tests/fixtures/minilm_reference.json.

Reference embeddings of all-MiniLM-L6-v2 computed by sentence-transformers itself, so the
Rust (candle) embedder can be checked against them: same texts, same truncation
(max_seq_length=256 from sentence_bert_config.json), same pooling and normalisation.

Usage (from the repository root, after `bash scripts/fetch_models.sh`):

    python3 -m venv ~/.cache/strata/py-st
    ~/.cache/strata/py-st/bin/pip install torch sentence-transformers
    HF_HUB_OFFLINE=1 ~/.cache/strata/py-st/bin/python scripts/make_embed_fixture.py

Everything here is deterministic: no randomness, texts are built from fixed lists.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MODEL_DIR = "models/all-MiniLM-L6-v2"
OUT = "operators/tests/fixtures/minilm_reference.json"
MAX_SEQ = 256

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Data pipelines move records from sources to sinks, transforming them along the way.",
    "In 2023, the company shipped 1,204 releases across 37 repositories.",
    "Embedding models map text to dense vectors that capture meaning.",
    "She sold sea shells by the sea shore, or so the story goes.",
    "Parquet files store columns together, which makes analytical scans fast.",
    "A retry with exponential backoff avoids hammering an overloaded service.",
    "The museum opens at 9:30 a.m. and closes at 5 p.m. on weekdays.",
    "Rust's borrow checker enforces memory safety without a garbage collector.",
    "Mountains, rivers, and forests covered the northern half of the map.",
    "Tokenizers split words into sub-word pieces such as 'un', '##believ' and '##able'.",
    "Cache invalidation and naming things remain the two hard problems.",
]

MULTI = [
    "Le café est très chaud ce matin, n'est-ce pas ?",
    "Über den Wolken muss die Freiheit wohl grenzenlos sein.",
    "¿Dónde está la biblioteca? Está al lado de la estación.",
    "東京は日本の首都です。人口は約千四百万人です。",
    "我喜欢在周末读书和喝茶。",
    "서울은 대한민국의 수도입니다.",
    "Москва — столица России.",
    "مرحبا بالعالم، كيف حالك اليوم؟",
]


def build_texts(tokenizer):
    texts = []
    # Short English sentences.
    texts += SENTENCES[:8]
    # Multilingual / unicode.
    texts += MULTI
    texts += [
        "naïve café résumé façade coöperate jalapeño",
        "Emoji test 🚀🔥😀 — launch successful! 👍🏽",
        "🙂",
        "Zero\u200bwidth and non\u00a0breaking spaces, plus a tab\tand newline\nhere.",
        "Ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ and ligatures: ﬁ ﬂ",
    ]
    # Punctuation-heavy.
    texts += [
        "!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}}",
        "Wait... what?! No -- really?? (Yes.) [Maybe]; {never}: \"quoted\" 'single' `tick`",
        "https://example.com/path?query=1&x=y#frag user@example.org C:\\Windows\\System32",
        "fn main() { println!(\"{}\", vec![1, 2, 3].iter().sum::<i32>()); }",
    ]
    # Numbers.
    texts += [
        "3.14159265358979 2.71828 1e-10 -42 +7 0x1F 1,000,000 50%",
        "Order #A-1029 shipped on 2024-02-29 at 23:59:59 UTC for $1,234.56.",
        "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20",
    ]
    # Degenerate inputs.
    texts += ["hello", "Embeddings", "", " ", "   \n\t  ", "a"]
    # Case sensitivity (model is uncased: these should match each other).
    texts += ["THE QUICK BROWN FOX", "the quick brown fox"]

    def ntok(t):
        return len(tokenizer(t, truncation=False)["input_ids"])

    # Exactly at the limit: 254 single-token words + [CLS] + [SEP] = 256 tokens, no truncation.
    texts.append(" ".join(["hello"] * (MAX_SEQ - 2)))
    # One token over the limit: 255 words -> truncated to 256.
    texts.append(" ".join(["hello"] * (MAX_SEQ - 1)))
    # Varied prose of about 250 tokens (grown sentence by sentence, then word by word, <= 250).
    prose = ""
    i = 0
    while True:
        cand = (prose + " " + SENTENCES[i % len(SENTENCES)]).strip()
        if ntok(cand) > 250:
            break
        prose = cand
        i += 1
    for w in SENTENCES[i % len(SENTENCES)].split():  # then word by word up to 250
        if ntok(prose + " " + w) > 250:
            break
        prose = prose + " " + w
    texts.append(prose)

    # Three very long texts (2000+ words), truncated at 256 tokens.
    def long_text(start, step, extra):
        parts, words, k = [], 0, 0
        while words < 2100:
            s = SENTENCES[(start + k * step) % len(SENTENCES)]
            if extra and k % 5 == 4:
                s = s + " " + extra[k % len(extra)]
            parts.append(s)
            words += len(s.split())
            k += 1
        return " ".join(parts)

    texts.append(long_text(0, 1, None))
    texts.append(long_text(3, 5, MULTI))
    # Paragraphs with numbers interleaved, newline separated.
    paras = []
    k = 0
    while sum(len(p.split()) for p in paras) < 2100:
        paras.append(f"Section {k + 1}. " + " ".join(SENTENCES[(k * 7 + j) % len(SENTENCES)] for j in range(3)))
        k += 1
    texts.append("\n\n".join(paras))
    return texts


def sig7(x):
    return float(f"{float(x):.7g}")


def main():
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    if not os.path.exists(os.path.join(MODEL_DIR, "model.safetensors")):
        sys.exit(f"{MODEL_DIR}/model.safetensors missing: run `bash scripts/fetch_models.sh` first")

    torch.manual_seed(0)
    model = SentenceTransformer(MODEL_DIR, device="cpu")
    assert model.max_seq_length == MAX_SEQ, model.max_seq_length
    tok = model.tokenizer
    texts = build_texts(tok)

    # Normalisation comes from the model's own Normalize module (modules.json); not repeated here.
    vecs = model.encode(texts, batch_size=16, convert_to_numpy=True, show_progress_bar=False)
    assert vecs.shape == (len(texts), 384), vecs.shape

    cases = []
    for t, v in zip(texts, vecs):
        n = len(tok(t, truncation=True, max_length=MAX_SEQ)["input_ids"])
        cases.append({"text": t, "tokens": n, "vector": [sig7(x) for x in v]})

    how = (
        f"Generated by scripts/make_embed_fixture.py with sentence-transformers "
        f"{sentence_transformers.__version__}, transformers {transformers.__version__}, "
        f"torch {torch.__version__} on CPU (float32), Python {sys.version.split()[0]}: "
        f"SentenceTransformer('{MODEL_DIR}', device='cpu') (max_seq_length={MAX_SEQ} from "
        f"sentence_bert_config.json; mean pooling then the model's own Normalize module), "
        f"model.encode(texts, batch_size=16). 'tokens' is len(model.tokenizer(text, "
        f"truncation=True, max_length={MAX_SEQ})['input_ids']) including [CLS]/[SEP]. "
        f"Vectors rounded to 7 significant digits. Command: HF_HUB_OFFLINE=1 "
        f"~/.cache/strata/py-st/bin/python scripts/make_embed_fixture.py (from the repo root)."
    )
    out = {"model": "all-MiniLM-L6-v2", "how": how, "dimensions": 384, "cases": cases}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        # One case per line: diffable, and small (no per-float indentation).
        f.write("{\n")
        for key in ("model", "how", "dimensions"):
            f.write(f" {json.dumps(key)}: {json.dumps(out[key], ensure_ascii=False)},\n")
        f.write(' "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n ]\n}\n")
    print(f"wrote {OUT}: {len(cases)} cases, {os.path.getsize(OUT)} bytes", file=sys.stderr)
    for c in cases:
        print(f"  tokens={c['tokens']:4d}  {c['text'][:60]!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
