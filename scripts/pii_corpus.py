#!/usr/bin/env python3
"""Labelled PII corpus generator for strata's detect_pii evaluation (issue 6).

Writes JSON Lines, one document per line:
  {"id": 0, "text": "...", "entities": [{"type": "EMAIL", "start": 12, "end": 30}, ...]}
Offsets are Unicode code points, end exclusive (as detect_pii reports them). Entity names
are Bedrock Guardrails names. Each document mixes prose (several languages), entities in
several formats and locales, and look-alikes that are *not* PII (order numbers failing Luhn,
timestamps, versions, UUIDs, commit hashes, prices, invalid IPs, invalid SSNs, ISBNs).

Valid values are generated from the same rules the real identifiers follow (Luhn, ABA,
IBAN mod-97, NHS mod-11, VIN check digit, SSA rules, real numbering-plan ranges), so the
corpus does not depend on the detector under test. Seeded: the same seed gives the same file.

  python3 scripts/pii_corpus.py --seed 20261124 --docs 2000 > corpus.jsonl
"""
import argparse
import json
import random
import string
import sys

# ---------------------------------------------------------------------------- values

def luhn_complete(prefix_digits, length, r):
    body = prefix_digits + "".join(r.choice(string.digits) for _ in range(length - len(prefix_digits) - 1))
    for check in string.digits:
        cand = body + check
        total = 0
        for i, c in enumerate(reversed(cand)):
            d = int(c)
            if i % 2 == 1:
                d *= 2
                if d > 9:
                    d -= 9
            total += d
        if total % 10 == 0:
            return cand
    raise AssertionError


def luhn_ok(s):
    total = 0
    for i, c in enumerate(reversed(s)):
        d = int(c)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def group(s, sizes, sep):
    out, i = [], 0
    for n in sizes:
        out.append(s[i:i + n])
        i += n
    return sep.join(out)


def card(r):
    kind = r.choice(["visa", "mc", "amex", "disc", "mc2"])
    if kind == "visa":
        num, sizes = luhn_complete("4", 16, r), [4, 4, 4, 4]
    elif kind == "mc":
        num, sizes = luhn_complete(str(r.randint(51, 55)), 16, r), [4, 4, 4, 4]
    elif kind == "mc2":
        num, sizes = luhn_complete(str(r.randint(2221, 2720)), 16, r), [4, 4, 4, 4]
    elif kind == "amex":
        num, sizes = luhn_complete(r.choice(["34", "37"]), 15, r), [4, 6, 5]
    else:
        num, sizes = luhn_complete("6011", 16, r), [4, 4, 4, 4]
    return group(num, sizes, r.choice([" ", "-", ""]))


def bad_luhn_number(r):
    """A 16-digit order number that fails Luhn."""
    while True:
        s = r.choice("456") + "".join(r.choice(string.digits) for _ in range(15))
        if not luhn_ok(s):
            return s


def ssn(r):
    while True:
        a, g, s = r.randint(1, 899), r.randint(1, 99), r.randint(1, 9999)
        if a != 666 and f"{a:03d}{g:02d}{s:04d}" not in ("123456789", "078051120", "219099999"):
            sep = r.choice(["-", "-", " "])
            return f"{a:03d}{sep}{g:02d}{sep}{s:04d}"


def itin(r):
    g = r.choice(list(range(50, 66)) + list(range(70, 89)) + [90, 91, 92] + list(range(94, 100)))
    return f"9{r.randint(0, 99):02d}-{g:02d}-{r.randint(0, 9999):04d}"


def aba(r):
    while True:
        prefix = r.choice(["0", "1", "2", "3", "6", "7"]) + r.choice(string.digits)
        p = int(prefix)
        if not (0 <= p <= 12 or 21 <= p <= 32 or 61 <= p <= 72):
            continue
        body = prefix + "".join(r.choice(string.digits) for _ in range(6))
        d = [int(c) for c in body]
        for c in range(10):
            s = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + c)
            if s % 10 == 0:
                return body + str(c)


IBAN_FORMATS = {"DE": "8n10n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c",
                "NL": "4a10n", "BE": "12n", "CH": "5n12c", "PL": "24n", "AT": "16n", "SE": "20n",
                "IE": "4a14n", "PT": "21n", "NO": "11n", "DK": "14n"}


def iban(r):
    cc = r.choice(list(IBAN_FORMATS))
    fmt, bban, i = IBAN_FORMATS[cc], "", 0
    while i < len(fmt):
        j = i
        while fmt[j].isdigit():
            j += 1
        n, kind = int(fmt[i:j]), fmt[j]
        pool = {"n": string.digits, "a": string.ascii_uppercase, "c": string.ascii_uppercase + string.digits}[kind]
        bban += "".join(r.choice(pool) for _ in range(n))
        i = j + 1
    rearranged = bban + cc + "00"
    num = int("".join(str(int(c, 36)) for c in rearranged))
    check = 98 - num % 97
    s = f"{cc}{check:02d}{bban}"
    if r.random() < 0.6:
        s = " ".join(s[k:k + 4] for k in range(0, len(s), 4))
    return s


SWIFT_BANKS = ["DEUT", "COBA", "BNPA", "BARC", "HSBC", "CITI", "CHAS", "UBSW", "INGB", "RABO", "BOFA", "SOGE"]
SWIFT_COUNTRIES = ["DE", "FR", "GB", "US", "CH", "NL", "IT", "ES", "JP", "SG"]


def swift(r):
    code = r.choice(SWIFT_BANKS) + r.choice(SWIFT_COUNTRIES) + r.choice(["FF", "2L", "22", "33", "XX", "MM", "3N"])
    if r.random() < 0.4:
        code += r.choice(["XXX", "100", "A1B", "500"])
    return code


def ipv4(r):
    return ".".join(str(r.randint(1, 254)) for _ in range(4))


def ipv6(r):
    groups = [f"{r.randint(0, 0xffff):x}" for _ in range(8)]
    style = r.random()
    if style < 0.4:
        return ":".join(groups)
    if style < 0.8:
        return "2001:db8:" + f"{r.randint(1, 0xffff):x}" + "::" + f"{r.randint(1, 0xffff):x}"
    return "fe80::" + ":".join(groups[:3])


def mac(r):
    b = [f"{r.randint(0, 255):02x}" for _ in range(6)]
    if r.random() < 0.5:
        b = [x.upper() for x in b]
    sep = r.choice([":", "-"])
    return sep.join(b)


DOMAINS = ["example.com", "mail.example.org", "acme.co.uk", "globex.io", "umbrella-corp.net", "correo.es", "firma.de"]
FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "kenji", "ines", "zoe"]


def email(r):
    local = r.choice(FIRST) + r.choice([".", "_", ""]) + r.choice(["smith", "ng", "garcia", "muller", "tanaka", "o"]) + (str(r.randint(1, 99)) if r.random() < 0.3 else "")
    return local + "@" + r.choice(DOMAINS)


def url(r):
    host = r.choice(["www.example.com", "docs.globex.io", "portal.acme.co.uk", "shop.umbrella-corp.net", "api.example.org"])
    path = "/".join(r.choice(["account", "reset", "v2", "orders", "docs", "search", "profile"]) for _ in range(r.randint(0, 3)))
    q = f"?id={r.randint(1, 99999)}" if r.random() < 0.3 else ""
    if r.random() < 0.15:
        return f"www.{host.split('.', 1)[1]}/{path}"
    return f"{r.choice(['https', 'http'])}://{host}/{path}{q}"


B32 = string.ascii_uppercase + "234567"
B64 = string.ascii_letters + string.digits + "/+"


def aws_access(r):
    return r.choice(["AKIA", "ASIA"]) + "".join(r.choice(B32) for _ in range(16))


def aws_secret(r):
    while True:
        s = "".join(r.choice(B64) for _ in range(40))
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
            return s


def password(r):
    return "".join(r.choice(string.ascii_letters + string.digits + "!#$%&*?@") for _ in range(r.randint(8, 16)))


def username(r):
    return r.choice(FIRST) + r.choice(["_", ".", ""]) + r.choice(["dev", "ops", "x", "admin", "42", "99"]) + str(r.randint(0, 999))


def nino(r):
    first = r.choice("ABCEGHJKLMNPRSTWXYZ")
    second = r.choice("ABCEGHJKLMNPRSTWXYZ")
    while first + second in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
        second = r.choice("ABCEGHJKLMNPRSTWXYZ")
    digits = "".join(r.choice(string.digits) for _ in range(6))
    suffix = r.choice("ABCD")
    if r.random() < 0.5:
        return f"{first}{second} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{first}{second}{digits}{suffix}"


def nhs(r):
    while True:
        d = [r.randint(0, 9) for _ in range(9)]
        d[0] = r.randint(4, 9)
        s = sum(x * (10 - i) for i, x in enumerate(d))
        c = 11 - s % 11
        if c == 11:
            c = 0
        if c == 10:
            continue
        n = "".join(map(str, d)) + str(c)
        return f"{n[:3]} {n[3:6]} {n[6:]}"


def sin(r):
    n = luhn_complete(str(r.choice([1, 2, 3, 4, 5, 6, 7, 9])), 9, r)
    sep = r.choice([" ", "-"])
    return f"{n[:3]}{sep}{n[3:6]}{sep}{n[6:]}"


VIN_VALUES = {**{str(i): i for i in range(10)}, **dict(zip("ABCDEFGH", range(1, 9))), **dict(zip("JKLMN", range(1, 6))),
              "P": 7, "R": 9, **dict(zip("STUVWXYZ", range(2, 10)))}
VIN_WEIGHTS = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2]
VIN_CHARS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"


def vin(r):
    while True:
        v = [r.choice(["1HG", "JHM", "WVW", "5YJ", "2T1", "3FA", "WBA"])[i] for i in range(3)]
        v += [r.choice(VIN_CHARS) for _ in range(5)] + ["0"] + [r.choice(VIN_CHARS) for _ in range(2)] + [r.choice(string.digits) for _ in range(6)]
        total = sum(VIN_VALUES[c] * w for c, w in zip(v, VIN_WEIGHTS))
        rem = total % 11
        v[8] = "X" if rem == 10 else str(rem)
        s = "".join(v)
        if sum(c.isdigit() for c in s) >= 3:
            return s


US_AREAS = [201, 202, 206, 212, 213, 214, 303, 305, 312, 404, 415, 503, 512, 602, 617, 646, 702, 718, 773, 808, 917]


def phone(r):
    style = r.random()
    if style < 0.45:
        a, x, n = r.choice(US_AREAS), r.randint(201, 989), r.randint(1000, 9999)
        while str(x)[1:] == "11" or x == 555:
            x = r.randint(201, 989)
        return r.choice([f"({a}) {x}-{n}", f"{a}-{x}-{n}", f"{a}.{x}.{n}", f"+1 {a} {x} {n}", f"+1-{a}-{x}-{n}", f"{a} {x} {n}"])
    if style < 0.6:
        return f"+44 20 7{r.randint(100, 999)} {r.randint(1000, 9999)}" if r.random() < 0.5 else f"020 7{r.randint(100, 999)} {r.randint(1000, 9999)}"
    if style < 0.72:
        # UK mobiles: 74xx-75xx and 77xx-79xx (76xx are pagers and personal numbers).
        return f"+44 7{r.choice([r.randint(400, 599), r.randint(700, 999)])} {r.randint(100000, 999999)}"
    if style < 0.82:
        d = [f"{r.randint(10, 99)}" for _ in range(4)]
        return f"+33 1 {' '.join(d)}" if r.random() < 0.5 else f"01 {' '.join(d)}"
    if style < 0.92:
        return f"+49 30 {r.randint(1000000, 99999999)}"
    return f"+91 9{r.randint(1000, 9999)} {r.randint(10000, 99999)}"


def expiry(r):
    m, y = r.randint(1, 12), r.randint(25, 32)
    return r.choice([f"{m:02d}/{y:02d}", f"{m:02d}/20{y:02d}", f"{m:02d}-{y:02d}"])


GIVEN = ["Alice", "Bob", "Carol", "Günther", "Élodie", "Håkon", "Kenji", "Inés", "François", "Priya", "Mohammed", "Olga"]
SURN = ["Smith", "Johnson", "García", "Müller", "Tanaka", "Dubois", "Nowak", "Rossi", "O'Brien", "Nguyen"]
STREETS = ["Main Street", "Oak Avenue", "Baker Street", "Rue de Rivoli", "Hauptstraße", "Elm Road", "Market St"]
CITIES = ["Springfield", "London", "Paris", "Berlin", "Austin", "Toronto", "Madrid"]


def name(r):
    return f"{r.choice(GIVEN)} {r.choice(SURN)}"


def address(r):
    return f"{r.randint(1, 999)} {r.choice(STREETS)}, {r.choice(CITIES)}"

# ---------------------------------------------------------------------------- templates

# Each template: text with {TYPE} slots (entities) and [kind] slots (look-alikes, unlabelled).
TEMPLATES = [
    "Please contact {EMAIL} or call {PHONE} before Friday.",
    "Reach me on {PHONE}; my backup address is {EMAIL}.",
    "Card {CREDIT_DEBIT_CARD_NUMBER} exp {CREDIT_DEBIT_CARD_EXPIRY} CVV {CREDIT_DEBIT_CARD_CVV} was declined.",
    "The customer paid with {CREDIT_DEBIT_CARD_NUMBER} (expiry date: {CREDIT_DEBIT_CARD_EXPIRY}, security code {CREDIT_DEBIT_CARD_CVV}).",
    "Order [order] for [price] shipped on [timestamp].",
    "SSN: {US_SOCIAL_SECURITY_NUMBER}. Employee record updated [date].",
    "Her social security number is {US_SOCIAL_SECURITY_NUMBER} and her ITIN is {US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER}.",
    "Wire to routing number {US_BANK_ROUTING_NUMBER}, account number {US_BANK_ACCOUNT_NUMBER}.",
    "ABA {US_BANK_ROUTING_NUMBER} / acct {US_BANK_ACCOUNT_NUMBER} — reference [order].",
    "Passport number {US_PASSPORT_NUMBER} expires [date].",
    "Transfer EUR [price] to IBAN {INTERNATIONAL_BANK_ACCOUNT_NUMBER}, SWIFT {SWIFT_CODE}.",
    "Überweisung an {INTERNATIONAL_BANK_ACCOUNT_NUMBER} (BIC: {SWIFT_CODE}) bis [date].",
    "Virement sur le compte {INTERNATIONAL_BANK_ACCOUNT_NUMBER}, merci.",
    "Server {IP_ADDRESS} rejected the login; fallback host {IP_ADDRESS}.",
    "Client connected from {IP_ADDRESS} at [timestamp] running [version].",
    "Device MAC {MAC_ADDRESS} got lease {IP_ADDRESS}.",
    "See {URL} for the reset form.",
    "Docs moved to {URL} (build [commit]).",
    "aws_access_key_id = {AWS_ACCESS_KEY}\naws_secret_access_key = {AWS_SECRET_KEY}",
    "Rotate key {AWS_ACCESS_KEY} now; secret key: {AWS_SECRET_KEY}",
    "username: {USERNAME} password: {PASSWORD}",
    "Login {USERNAME} / pwd={PASSWORD} for the staging box.",
    "Your temporary password is {PASSWORD} — change it at first login.",
    "National Insurance number {UK_NATIONAL_INSURANCE_NUMBER}, NHS number {UK_NATIONAL_HEALTH_SERVICE_NUMBER}.",
    "Patient NHS no. {UK_NATIONAL_HEALTH_SERVICE_NUMBER} seen on [date]; NI {UK_NATIONAL_INSURANCE_NUMBER}.",
    "SIN {CA_SOCIAL_INSURANCE_NUMBER} on file for the Toronto office.",
    "Vehicle VIN {VEHICLE_IDENTIFICATION_NUMBER} was recalled (campaign [order]).",
    "Registered vehicle {VEHICLE_IDENTIFICATION_NUMBER}, owner contacted via {EMAIL}.",
    "{NAME} lives at {ADDRESS} and can be reached at {PHONE}.",
    "Ship to {NAME}, {ADDRESS}.",
    "Release [version] fixes bug [uuid]; commit [commit].",
    "Invoice total [price], paid [timestamp], ref [uuid].",
    "Bad IP [badip] was ignored; tracking [order].",
    "ISBN [isbn] costs [price]. Meeting at [time] on [date].",
    "Invalid SSN [badssn] flagged by the form.",
    "東京オフィスの連絡先は {EMAIL} です。電話 {PHONE}。",
    "Café crème for Zoë 🎉 — paiement par carte {CREDIT_DEBIT_CARD_NUMBER} 👍",
    "请联系 {EMAIL}，或者访问 {URL}。",
    "Épinglé: l'adresse IP {IP_ADDRESS} est bloquée, réessayez à [time].",
    "¿Cuál es tu contraseña? contraseña: {PASSWORD} 🙈",
]

PROSE = [
    "The quarterly review covered latency, cost and retention.",
    "Nothing in this paragraph is sensitive; it only talks about throughput.",
    "La migración del clúster terminó sin interrupciones en la región.",
    "模型部署在北京数据中心，延迟很低。",
    "Emoji test 👩‍💻 🇫🇷 done.",
    "We shipped 3 releases in 12 weeks with 99.9% uptime.",
    "Die Besprechung wurde auf nächste Woche verschoben.",
]

GEN = {
    "EMAIL": email, "PHONE": phone, "CREDIT_DEBIT_CARD_NUMBER": card, "CREDIT_DEBIT_CARD_CVV": lambda r: str(r.randint(100, 9999) if r.random() < 0.2 else r.randint(100, 999)),
    "CREDIT_DEBIT_CARD_EXPIRY": expiry, "US_SOCIAL_SECURITY_NUMBER": ssn, "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER": itin,
    "US_BANK_ROUTING_NUMBER": aba, "US_BANK_ACCOUNT_NUMBER": lambda r: str(r.randint(10 ** 7, 10 ** 12)),
    "US_PASSPORT_NUMBER": lambda r: r.choice([str(r.randint(100000000, 999999999)), r.choice("ACEFGHJKLMN") + str(r.randint(10000000, 99999999))]),
    "INTERNATIONAL_BANK_ACCOUNT_NUMBER": iban, "SWIFT_CODE": swift, "IP_ADDRESS": lambda r: ipv4(r) if r.random() < 0.7 else ipv6(r),
    "MAC_ADDRESS": mac, "URL": url, "AWS_ACCESS_KEY": aws_access, "AWS_SECRET_KEY": aws_secret, "PASSWORD": password,
    "USERNAME": username, "UK_NATIONAL_INSURANCE_NUMBER": nino, "UK_NATIONAL_HEALTH_SERVICE_NUMBER": nhs,
    "CA_SOCIAL_INSURANCE_NUMBER": sin, "VEHICLE_IDENTIFICATION_NUMBER": vin, "NAME": name, "ADDRESS": address,
}

LOOKALIKE = {
    "order": lambda r: bad_luhn_number(r),
    "price": lambda r: r.choice(["$", "€", "£"]) + f"{r.randint(1, 9999):,}.{r.randint(0, 99):02d}",
    "timestamp": lambda r: r.choice([f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:00Z", str(r.randint(1600000000, 1800000000))]),
    "date": lambda r: r.choice([f"{r.randint(1, 28):02d}/{r.randint(1, 12):02d}/2026", f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}", f"{r.randint(1, 28)}.{r.randint(1, 12)}.2025"]),
    "time": lambda r: f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
    "version": lambda r: r.choice([f"v{r.randint(0, 12)}.{r.randint(0, 30)}.{r.randint(0, 99)}", f"version {r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 99)}"]),
    "uuid": lambda r: "-".join("".join(r.choice("0123456789abcdef") for _ in range(n)) for n in (8, 4, 4, 4, 12)),
    "commit": lambda r: "".join(r.choice("0123456789abcdef") for _ in range(40)),
    "badip": lambda r: f"{r.randint(256, 999)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(0, 255)}",
    "isbn": lambda r: f"978-{r.randint(0, 9)}-{r.randint(10, 99)}-{r.randint(100000, 999999)}-{r.randint(0, 9)}",
    "badssn": lambda r: r.choice([f"000-{r.randint(10, 99)}-{r.randint(1000, 9999)}", f"666-{r.randint(10, 99)}-{r.randint(1000, 9999)}", f"{r.randint(100, 599)}-00-{r.randint(1000, 9999)}"]),
}


def render(template, r):
    text, ents, i = "", [], 0
    while i < len(template):
        c = template[i]
        if c in "{[":
            close = "}" if c == "{" else "]"
            j = template.index(close, i)
            key = template[i + 1:j]
            if c == "{":
                value = GEN[key](r)
                start = len(text)
                text += value
                ents.append({"type": key, "start": start, "end": len(text)})
            else:
                text += LOOKALIKE[key](r)
            i = j + 1
        else:
            text += c
            i += 1
    return text, ents


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--sentences", type=int, default=4, help="templates per document")
    args = ap.parse_args()
    r = random.Random(args.seed)
    out = sys.stdout
    for doc in range(args.docs):
        text, ents = "", []
        for _ in range(args.sentences):
            if r.random() < 0.5:
                text += r.choice(PROSE) + " "
            t, e = render(r.choice(TEMPLATES), r)
            base = len(text)
            ents += [{**x, "start": x["start"] + base, "end": x["end"] + base} for x in e]
            text += t + r.choice([" ", "\n", "\n\n"])
        out.write(json.dumps({"id": doc, "text": text, "entities": ents}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
