#!/usr/bin/env python3
"""Deterministic generator of realistic JSONL documents for strata's examples and benches.

Each line is one JSON object:
  doc_id  string   "doc-000001"
  tenant  string   one of a handful of tenants
  title   string   a short title
  body    string   multi-paragraph prose: varied vocabulary, markdown headings and lists,
                   some non-ASCII text (accents, CJK, emoji)
  ts      string   ISO-8601 UTC timestamp, e.g. "2026-03-01T12:34:56Z"
  lang    string   "en", "fr", "de", "es" or "ja"

The same options and seed always produce the same bytes (pure stdlib, seeded `random.Random`).

Examples:
  scripts/gen_corpus.py --docs 300 --mean-body-bytes 2000 --out jobs/data/docs.jsonl
  scripts/gen_corpus.py --target-bytes 50000000 --out /tmp/corpus.jsonl
"""

import argparse
import datetime as dt
import json
import random
import sys

TENANTS = ["acme", "globex", "initech", "umbrella", "hooli"]

WORDS = (
    "data pipeline model vector embedding token chunk document query index latency throughput "
    "customer invoice contract policy report summary analysis quarter revenue forecast budget "
    "incident outage recovery deployment cluster partition replica offset consumer producer "
    "schema column table parquet storage bucket object region account billing usage cost "
    "security privacy compliance audit retention encryption access control review approval "
    "engineer analyst manager team meeting roadmap milestone release feature request issue "
    "system service endpoint request response error retry timeout backoff throttle limit "
    "language translation sentiment classification extraction retrieval ranking relevance "
    "quickly carefully reliably efficiently gradually significantly roughly exactly "
    "important critical minor major stable experimental internal external public private "
    "improve reduce increase measure monitor deploy validate migrate archive restore "
    "between across within without during before after because although however therefore "
    "the a an of to in for on with by from as at is are was were be been has have had will "
    "this that these those it its they their we our you your not only also more most less "
    "international interoperability characterization responsibilities misunderstanding "
    "supercalifragilistic antidisestablishmentarianism pneumonoultramicroscopic"
).split()

NAMES = ["Alice", "Bob", "Chloé", "Dmitri", "Élodie", "François", "Günther", "Håkon",
         "Inés", "Jürgen", "Kenji", "Łukasz", "Mårten", "Núñez", "Zoë"]

FOREIGN = {
    "fr": ["Le modèle a été déployé à Genève après une révision détaillée.",
           "Les données sont chiffrées au repos et en transit, conformément à la politique.",
           "Ça marche très bien, même avec des caractères accentués : é, è, ê, ë, ç."],
    "de": ["Die Überprüfung der Datenqualität ergab größere Abweichungen im März.",
           "Straße, Größe und Maß bleiben nach der Normalisierung unverändert.",
           "Wir müssen die Ergebnisse bis Freitag prüfen und übermitteln."],
    "es": ["La migración del clúster terminó sin interrupciones en la región.",
           "¿Cuántos tokens consume cada petición? ¡Muchos más de lo esperado!",
           "El señor Núñez revisó el informe y añadió comentarios."],
    "ja": ["データパイプラインは毎日午前三時に実行されます。",
           "東京リージョンでの遅延は平均十二ミリ秒でした。",
           "このモデルは日本語の文章を正しく分割できますか？"],
    "zh": ["模型部署在北京数据中心，延迟很低。",
           "请检查每个分区的偏移量，并确认没有重复数据。"],
}

EMOJI = ["🚀", "✅", "⚠️", "📈", "🔒", "💡", "🎉", "👩‍💻", "🇫🇷", "❤️"]
LANGS = ["en", "en", "en", "en", "fr", "de", "es", "ja"]


def sentence(rng: random.Random) -> str:
    n = rng.randint(6, 22)
    words = [rng.choice(WORDS) for _ in range(n)]
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words)), rng.choice(NAMES))
    if rng.random() < 0.1:
        words.insert(rng.randrange(len(words)), f"{rng.randint(1, 9999)}.{rng.randint(0, 99):02d}")
    if rng.random() < 0.06:
        words.insert(rng.randrange(len(words)), rng.choice(EMOJI))
    if rng.random() < 0.08:
        i = rng.randrange(len(words))
        words[i] = words[i] + ","
    s = " ".join(words)
    s = s[0].upper() + s[1:]
    return s + rng.choice([".", ".", ".", ".", "!", "?", ";"])


def paragraph(rng: random.Random, lang: str) -> str:
    parts = [sentence(rng) for _ in range(rng.randint(2, 7))]
    if lang != "en" and rng.random() < 0.7:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(FOREIGN[lang]))
    if rng.random() < 0.08:
        parts.append(rng.choice(FOREIGN["zh"]))
    sep = "" if lang == "ja" and rng.random() < 0.3 else " "
    return sep.join(parts)


def block(rng: random.Random, lang: str) -> str:
    r = rng.random()
    if r < 0.12:
        level = rng.choice(["#", "##", "##", "###"])
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 5))).capitalize()
        return f"{level} {title}"
    if r < 0.22:
        bullet = rng.choice(["-", "*", "1."])
        items = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10)))
                 for _ in range(rng.randint(2, 5))]
        return "\n".join(f"{bullet} {it}" for it in items)
    if r < 0.25:
        return "```\n" + "\n".join(
            f"let {rng.choice(WORDS)} = {rng.randint(0, 1000)};" for _ in range(rng.randint(1, 4))
        ) + "\n```"
    return paragraph(rng, lang)


def body(rng: random.Random, lang: str, mean_bytes: int) -> str:
    target = max(200, int(rng.gauss(mean_bytes, mean_bytes * 0.35)))
    blocks = [f"# {rng.choice(WORDS).capitalize()} {rng.choice(WORDS)}"] if rng.random() < 0.5 else []
    size = 0
    while size < target:
        b = block(rng, lang)
        blocks.append(b)
        size += len(b.encode("utf-8")) + 2
    return "\n\n".join(blocks)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=None, help="number of documents (default 300 unless --target-bytes)")
    ap.add_argument("--target-bytes", type=int, default=None, help="stop once the output reaches this many bytes")
    ap.add_argument("--mean-body-bytes", type=int, default=2000, help="mean body size in bytes (default 2000)")
    ap.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    ap.add_argument("--out", default="-", help="output file (default: stdout)")
    a = ap.parse_args()
    if a.docs is None and a.target_bytes is None:
        a.docs = 300
    if (a.docs is not None and a.docs < 0) or (a.target_bytes is not None and a.target_bytes <= 0):
        ap.error("--docs must be >= 0 and --target-bytes > 0")
    if a.mean_body_bytes <= 0:
        ap.error("--mean-body-bytes must be > 0")

    rng = random.Random(a.seed)
    out = sys.stdout if a.out == "-" else open(a.out, "w", encoding="utf-8", newline="\n")
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    written = 0
    i = 0
    try:
        while True:
            if a.docs is not None and i >= a.docs:
                break
            if a.target_bytes is not None and written >= a.target_bytes:
                break
            lang = rng.choice(LANGS)
            ts = start + dt.timedelta(seconds=i * 37 + rng.randint(0, 36))
            title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))).title()
            doc = {
                "doc_id": f"doc-{i + 1:06d}",
                "tenant": rng.choice(TENANTS),
                "title": title,
                "body": body(rng, lang, a.mean_body_bytes),
                "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "lang": lang,
            }
            line = json.dumps(doc, ensure_ascii=False) + "\n"
            out.write(line)
            written += len(line.encode("utf-8"))
            i += 1
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"gen_corpus.py: wrote {i} documents, {written} bytes to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
