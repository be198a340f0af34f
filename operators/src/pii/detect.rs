//! The detectors: candidate patterns, validation, context words, overlap resolution.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use memchr::memmem;
use regex::{Regex, RegexBuilder};

use super::validate;
use super::{Detection, EntitySet, EntityType, PiiConfig};
use crate::error::OperatorError;

use EntityType as E;

/// Detects PII in text with the regex-and-checksum detectors.
#[derive(Clone, Debug)]
pub struct PiiDetector {
    min_score: f64,
}

impl Default for PiiDetector {
    fn default() -> Self {
        Self::new(&PiiConfig::default())
    }
}

/// A span before validation and resolution; offsets are bytes.
#[derive(Clone, Debug)]
struct Candidate {
    entity: EntityType,
    start: usize,
    end: usize,
    score: f64,
    /// Confirmed by a checksum, a number plan or a parser (beats unvalidated candidates).
    validated: bool,
}

impl PiiDetector {
    /// A detector keeping detections that score at least `cfg.min_score`.
    pub fn new(cfg: &PiiConfig) -> Self {
        LazyLock::force(&PATTERNS);
        Self {
            min_score: cfg.min_score,
        }
    }

    /// The entities of `types` found in `text`, sorted by position, never overlapping.
    ///
    /// NAME and ADDRESS need the NER model, which is not available yet: asking for them
    /// is an error rather than a silent empty answer.
    pub fn detect(&self, text: &str, types: EntitySet) -> Result<Vec<Detection>, OperatorError> {
        if let Some(e) = types.iter().find(|e| e.needs_ner()) {
            return Err(OperatorError::PiiSetting {
                key: "pii.ner",
                message: format!(
                    "{e} needs the NER model, which this build does not have yet; leave {e} out \
                     of the types"
                ),
            });
        }
        if types.is_empty() || text.is_empty() {
            return Ok(Vec::new());
        }
        let mut cands = Vec::new();
        scan(text, &mut cands);
        let kept = resolve(cands, self.min_score);
        Ok(to_detections(text, kept, types))
    }
}

struct Patterns {
    email: Regex,
    url: Regex,
    ipv4: Regex,
    ipv6: Regex,
    mac: Regex,
    mac_dotted: Regex,
    number: Regex,
    aws_access: Regex,
    aws_secret: Regex,
    iban: Regex,
    vin: Regex,
    swift: Regex,
    nino: Regex,
    keywords: AhoCorasick,
    keyword_kinds: Vec<Keyword>,
    /// Words and punctuation between a context word and its value ("number:", "is", "#").
    filler: Regex,
    values: Values,
}

struct Values {
    password: Regex,
    username: Regex,
    cvv: Regex,
    expiry: Regex,
    account: Regex,
    passport: Regex,
    nine: Regex,
    ten: Regex,
    aws_secret: Regex,
}

/// What a context word announces.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Keyword {
    Password,
    Username,
    Cvv,
    Expiry,
    Account,
    Passport,
    Ssn,
    Itin,
    Sin,
    Routing,
    Nhs,
    AwsSecret,
}

const KEYWORDS: &[(&str, Keyword)] = &[
    ("password", Keyword::Password),
    ("passwd", Keyword::Password),
    ("pwd", Keyword::Password),
    ("passcode", Keyword::Password),
    ("passphrase", Keyword::Password),
    ("pass phrase", Keyword::Password),
    ("mot de passe", Keyword::Password),
    ("contraseña", Keyword::Password),
    ("passwort", Keyword::Password),
    ("kennwort", Keyword::Password),
    ("username", Keyword::Username),
    ("user name", Keyword::Username),
    ("user id", Keyword::Username),
    ("userid", Keyword::Username),
    ("user", Keyword::Username),
    ("login", Keyword::Username),
    ("handle", Keyword::Username),
    ("benutzername", Keyword::Username),
    ("nom d'utilisateur", Keyword::Username),
    ("usuario", Keyword::Username),
    ("cvv", Keyword::Cvv),
    ("cvv2", Keyword::Cvv),
    ("cvc", Keyword::Cvv),
    ("cvc2", Keyword::Cvv),
    ("csc", Keyword::Cvv),
    ("security code", Keyword::Cvv),
    ("card verification value", Keyword::Cvv),
    ("card verification code", Keyword::Cvv),
    ("exp", Keyword::Expiry),
    ("exp.", Keyword::Expiry),
    ("expiry", Keyword::Expiry),
    ("expires", Keyword::Expiry),
    ("expiration", Keyword::Expiry),
    ("expiry date", Keyword::Expiry),
    ("expiration date", Keyword::Expiry),
    ("exp date", Keyword::Expiry),
    ("valid thru", Keyword::Expiry),
    ("valid through", Keyword::Expiry),
    ("good thru", Keyword::Expiry),
    ("valid until", Keyword::Expiry),
    ("account", Keyword::Account),
    ("acct", Keyword::Account),
    ("acct.", Keyword::Account),
    ("a/c", Keyword::Account),
    ("bank account", Keyword::Account),
    ("checking account", Keyword::Account),
    ("savings account", Keyword::Account),
    ("account number", Keyword::Account),
    ("passport", Keyword::Passport),
    ("passport number", Keyword::Passport),
    ("ssn", Keyword::Ssn),
    ("social security", Keyword::Ssn),
    ("social security number", Keyword::Ssn),
    ("ss#", Keyword::Ssn),
    ("itin", Keyword::Itin),
    ("taxpayer identification number", Keyword::Itin),
    ("sin", Keyword::Sin),
    ("social insurance number", Keyword::Sin),
    ("routing", Keyword::Routing),
    ("routing number", Keyword::Routing),
    ("aba", Keyword::Routing),
    ("rtn", Keyword::Routing),
    ("nhs", Keyword::Nhs),
    ("nhs number", Keyword::Nhs),
    ("aws_secret_access_key", Keyword::AwsSecret),
    ("secret_access_key", Keyword::AwsSecret),
    ("secret access key", Keyword::AwsSecret),
    ("aws secret", Keyword::AwsSecret),
    ("secretaccesskey", Keyword::AwsSecret),
    ("secret key", Keyword::AwsSecret),
];

fn re(pattern: &str) -> Regex {
    // Patterns are constants of this file; a bad one is caught by the first test run.
    match RegexBuilder::new(pattern).size_limit(1 << 24).build() {
        Ok(r) => r,
        Err(e) => panic!("PII pattern {pattern:?} does not compile: {e}"),
    }
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let keywords = match AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostLongest)
        .kind(Some(AhoCorasickKind::DFA))
        .build(KEYWORDS.iter().map(|(k, _)| k))
    {
        Ok(a) => a,
        Err(e) => panic!("PII keywords do not compile: {e}"),
    };
    Patterns {
        email: re(
            r"[\p{Latin}0-9.%+\-_]+@[\p{Latin}0-9\-]+(?:\.[\p{Latin}0-9\-]+)*\.\p{Latin}{2,24}",
        ),
        url: re(r"(?i)(?:(?:https?|ftp|sftp|wss?)://|www\.)[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+"),
        ipv4: re(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"),
        ipv6: re(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}"),
        mac: re(r"[0-9A-Fa-f]{2}(?:[:\-][0-9A-Fa-f]{2}){5}"),
        mac_dotted: re(r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}"),
        number: re(r"\+?\(?[0-9]+(?:(?:\) ?|[ .\-/]\(?|\()[0-9]+)*"),
        aws_access: re(
            r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z2-7]{16}",
        ),
        aws_secret: re(r"[A-Za-z0-9/+]{40}"),
        iban: re(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{1,4}){3,9}"),
        vin: re(r"[A-HJ-NPR-Z0-9]{17}"),
        swift: re(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?"),
        nino: re(r"[A-Z]{2} ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]"),
        keywords,
        keyword_kinds: KEYWORDS.iter().map(|(_, k)| *k).collect(),
        filler: re(
            r#"^[\s:=#"'(\-]*(?:(?i:number|num|no|nr|code|date|is|was|id|of|the|on|file|card|key|details)(?-u:\b)\.?[\s:=#"'\-]*){0,3}"#,
        ),
        values: Values {
            password: re(r"^\S{1,128}"),
            username: re(r"^[\p{L}\p{N}._\-@+]{2,64}"),
            cvv: re(r"^[0-9]{3,4}"),
            expiry: re(r"^(?:0[1-9]|1[0-2]) ?[/\-] ?(?:20)?[0-9]{2}"),
            account: re(r"^[0-9]{2,}(?:-[0-9]{2,}){0,3}"),
            passport: re(r"^(?:[0-9]{9}|[A-Z][0-9]{8})"),
            nine: re(r"^[0-9]{3}[ \-]?[0-9]{2,3}[ \-]?[0-9]{3,4}"),
            ten: re(r"^[0-9]{3}[ \-]?[0-9]{3}[ \-]?[0-9]{4}"),
            aws_secret: re(r"^[A-Za-z0-9/+]{40}"),
        },
    }
});

// ---------------------------------------------------------------------------------------
// Small text helpers (byte offsets, always on char boundaries).

fn prev_char(text: &str, i: usize) -> Option<char> {
    text.get(..i).and_then(|s| s.chars().next_back())
}

fn next_char(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

/// A character that glues to an identifier: ASCII letters and digits, `_`, and letters of
/// the alphabetic scripts. CJK and kana are not: those languages write no spaces, so an
/// e-mail or a number may touch them directly.
fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| {
        c.is_ascii_alphanumeric() || c == '_' || (c.is_alphanumeric() && u32::from(c) < 0x2E80)
    })
}

/// Nothing word-like touches `[start, end)` on either side.
fn bounded(text: &str, start: usize, end: usize) -> bool {
    !is_word(prev_char(text, start)) && !is_word(next_char(text, end))
}

/// `text[start..end]` is followed by `.`/`,`/`:` and a digit (a longer number: a version,
/// a price, a time).
fn continues_numerically(text: &str, end: usize) -> bool {
    let b = text.as_bytes();
    end + 1 < b.len() && matches!(b[end], b'.' | b',' | b':') && b[end + 1].is_ascii_digit()
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Up to 48 bytes before `start`, lowercased.
fn window_before(text: &str, start: usize) -> String {
    let from = floor_boundary(text, start.saturating_sub(48));
    text[from..start].to_lowercase()
}

/// Does `window` hold one of `words` as a whole word?
fn has_word(window: &str, words: &[&str]) -> bool {
    words.iter().any(|w| {
        window.match_indices(w).any(|(i, m)| {
            !is_word(prev_char(window, i)) && !is_word(next_char(window, i + m.len()))
        })
    })
}

fn context_words(e: EntityType) -> &'static [&'static str] {
    match e {
        E::Phone => &[
            "phone",
            "tel",
            "tel.",
            "call",
            "mobile",
            "cell",
            "fax",
            "contact",
            "reach",
            "whatsapp",
            "sms",
            "text",
            "telefon",
            "téléphone",
            "tél",
            "teléfono",
            "número",
        ],
        E::CreditDebitCardNumber => &[
            "card",
            "visa",
            "mastercard",
            "amex",
            "credit",
            "debit",
            "cc",
            "pan",
        ],
        E::UsSocialSecurityNumber => &["ssn", "social security", "ss#"],
        E::UsIndividualTaxIdentificationNumber => &["itin", "taxpayer", "tax id"],
        E::UkNationalHealthServiceNumber => &["nhs", "health service", "patient"],
        E::CaSocialInsuranceNumber => &["sin", "social insurance", "nas"],
        E::InternationalBankAccountNumber => &["iban", "account", "bank", "transfer"],
        E::SwiftCode => &["swift", "bic", "swift/bic", "bank", "transfer", "wire"],
        E::IpAddress => &["ip", "address", "host", "server", "client"],
        E::MacAddress => &[
            "mac", "hardware", "ethernet", "wifi", "wi-fi", "device", "nic",
        ],
        E::AwsAccessKey => &["aws", "access key", "key id", "access_key_id"],
        E::AwsSecretKey => &[
            "secret",
            "aws_secret_access_key",
            "secret_access_key",
            "secret key",
        ],
        E::VehicleIdentificationNumber => &["vin", "vehicle", "chassis"],
        E::UkNationalInsuranceNumber => &["national insurance", "nino", "ni number", "ni no"],
        _ => &[],
    }
}

fn push(
    text: &str,
    out: &mut Vec<Candidate>,
    entity: EntityType,
    (start, end): (usize, usize),
    base: f64,
    validated: bool,
) {
    let score = if context_words(entity).is_empty()
        || !has_word(&window_before(text, start), context_words(entity))
    {
        base
    } else {
        (base + 0.3).min(1.0)
    };
    out.push(Candidate {
        entity,
        start,
        end,
        score,
        validated,
    });
}

// ---------------------------------------------------------------------------------------
// The scan.

fn scan(text: &str, out: &mut Vec<Candidate>) {
    let p = &*PATTERNS;
    let bytes = text.as_bytes();
    let has_digit = bytes.iter().any(u8::is_ascii_digit);
    let has_upper = bytes.iter().any(u8::is_ascii_uppercase);

    if memchr::memchr(b'@', bytes).is_some() {
        emails(text, p, out);
    }
    if memmem::find(bytes, b"://").is_some()
        || memmem::find(bytes, b"www.").is_some()
        || memmem::find(bytes, b"WWW.").is_some()
    {
        urls(text, p, out);
    }
    if has_digit {
        if memchr::memchr(b'.', bytes).is_some() {
            ipv4(text, p, out);
        }
        numbers(text, p, out);
    }
    let colons = memchr::memchr_iter(b':', bytes).count();
    if memmem::find(bytes, b"::").is_some() || colons >= 7 {
        ipv6(text, p, out);
    }
    if colons >= 5 || memchr::memchr(b'-', bytes).is_some() || memchr::memchr(b'.', bytes).is_some()
    {
        macs(text, p, out);
    }
    if has_upper {
        for (ws, we) in id_regions(text) {
            uppercase_ids(text, p, ws, we, out);
            aws_secret(text, p, ws, we, out);
        }
    }
    keywords(text, p, out);
}

fn emails(text: &str, p: &Patterns, out: &mut Vec<Candidate>) {
    for m in p.email.find_iter(text) {
        let (mut s, e) = (m.start(), m.end());
        // A local part does not start with a dot.
        while text.as_bytes().get(s) == Some(&b'.') {
            s += 1;
        }
        let span = &text[s..e];
        let Some((local, domain)) = span.split_once('@') else {
            continue;
        };
        let labels_ok = domain
            .split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'));
        if local.is_empty()
            || local.ends_with('.')
            || local.contains("..")
            || !labels_ok
            || is_word(next_char(text, e))
        {
            continue;
        }
        push(text, out, E::Email, (s, e), 0.95, true);
    }
}

fn urls(text: &str, p: &Patterns, out: &mut Vec<Candidate>) {
    for m in p.url.find_iter(text) {
        let s = m.start();
        // "xhttps://" is not a URL start; "awww." neither.
        if is_word(prev_char(text, s)) {
            continue;
        }
        let mut e = m.end();
        // Trailing sentence punctuation and unbalanced closing brackets are not part of it.
        loop {
            let span = &text[s..e];
            let Some(last) = span.chars().next_back() else {
                break;
            };
            let unbalanced = |open: char, close: char| {
                last == close && span.matches(open).count() < span.matches(close).count()
            };
            if matches!(last, '.' | ',' | ';' | ':' | '!' | '?' | '*')
                || unbalanced('(', ')')
                || unbalanced('[', ']')
            {
                e -= last.len_utf8();
            } else {
                break;
            }
        }
        let span = &text[s..e];
        let rest = match span.find("://") {
            Some(i) => &span[i + 3..],
            None => span,
        };
        let host_port = rest
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default()
            .rsplit('@')
            .next()
            .unwrap_or_default();
        let host = if host_port.starts_with('[') {
            host_port
        } else {
            host_port.split(':').next().unwrap_or_default()
        };
        let host_ok = host.eq_ignore_ascii_case("localhost")
            || host.starts_with('[')
            || (host.contains('.')
                && !host.starts_with('.')
                && !host.ends_with('.')
                && host
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '.' || c == '-'));
        if host_ok {
            push(text, out, E::Url, (s, e), 0.9, true);
        }
    }
}

fn ipv4(text: &str, p: &Patterns, out: &mut Vec<Candidate>) {
    for m in p.ipv4.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        let before = prev_char(text, s);
        if is_word(before)
            || before == Some('.')
            || continues_numerically(text, e)
            || is_word(next_char(text, e))
        {
            continue;
        }
        // "v1.2.3.4", "version 10.0.0.1": the word right before says it is a version.
        let w = window_before(text, s);
        let last_word = w
            .trim_end()
            .rsplit([' ', '\n', '\t'])
            .next()
            .unwrap_or_default();
        if w.ends_with('v')
            || matches!(
                last_word,
                "version" | "ver" | "ver." | "release" | "build" | "v."
            )
        {
            continue;
        }
        if m.as_str().parse::<Ipv4Addr>().is_ok() {
            push(text, out, E::IpAddress, (s, e), 0.9, true);
        }
    }
}

fn ipv6(text: &str, p: &Patterns, out: &mut Vec<Candidate>) {
    for m in p.ipv6.find_iter(text) {
        let (s, mut e) = (m.start(), m.end());
        let before = prev_char(text, s);
        if is_word(before) || matches!(before, Some(':' | '.')) {
            continue;
        }
        let mut span = &text[s..e];
        if span.parse::<Ipv6Addr>().is_err() && span.ends_with(':') && !span.ends_with("::") {
            e -= 1;
            span = &text[s..e];
        }
        if is_word(next_char(text, e)) || (next_char(text, e) == Some(':')) {
            continue;
        }
        let hex_groups = span.split(':').filter(|g| !g.is_empty()).count();
        if hex_groups >= 2 && span.parse::<Ipv6Addr>().is_ok() {
            push(text, out, E::IpAddress, (s, e), 0.9, true);
        }
    }
}

fn macs(text: &str, p: &Patterns, out: &mut Vec<Candidate>) {
    for m in p.mac.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        let b = m.as_str().as_bytes();
        let sep = b[2];
        let consistent = (2..b.len()).step_by(3).all(|i| b[i] == sep);
        let before = prev_char(text, s);
        let after = next_char(text, e);
        if consistent
            && !is_word(before)
            && !is_word(after)
            && !matches!(before, Some(':' | '-'))
            && !matches!(after, Some(':' | '-'))
        {
            push(text, out, E::MacAddress, (s, e), 0.9, true);
        }
    }
    for m in p.mac_dotted.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        if bounded(text, s, e) && prev_char(text, s) != Some('.') && next_char(text, e) != Some('.')
        {
            push(text, out, E::MacAddress, (s, e), 0.85, true);
        }
    }
}

/// One group of digits inside a number run.
#[derive(Clone, Copy, Debug)]
struct Group {
    start: usize,
    end: usize,
}

fn numbers(text: &str, p: &Patterns, out: &mut Vec<Candidate>) {
    for m in p.number.find_iter(text) {
        let (s, e) = (m.start(), m.end());
        // Runs glued to words, currency amounts, decimals and times are not identifiers.
        let before = prev_char(text, s);
        if is_word(before)
            || matches!(
                before,
                Some('$' | '€' | '£' | '¥' | '₹' | '.' | ',' | ':' | '/' | '-' | '#' | '@')
            )
            || is_word(next_char(text, e))
            || continues_numerically(text, e)
            || matches!(next_char(text, e), Some('%' | '€' | '$'))
        {
            continue;
        }
        let run = &text[s..e];
        let mut groups = Vec::new();
        let mut in_digits = false;
        for (i, c) in run.char_indices() {
            if c.is_ascii_digit() {
                if !in_digits {
                    groups.push(Group {
                        start: s + i,
                        end: s + i + 1,
                    });
                    in_digits = true;
                } else if let Some(g) = groups.last_mut() {
                    g.end = s + i + 1;
                }
            } else {
                in_digits = false;
            }
        }
        classify_run(text, s, e, &groups, out);
    }
}

/// Try the whole run and its sub-runs that split at spaces (a run may hold two numbers
/// written side by side); sub-runs never split a dashed or dotted token.
fn classify_run(
    text: &str,
    run_start: usize,
    run_end: usize,
    groups: &[Group],
    out: &mut Vec<Candidate>,
) {
    let n = groups.len();
    let space_between = |i: usize| -> bool {
        // Separator between group i-1 and group i holds a space.
        text[groups[i - 1].end..groups[i].start].contains(' ')
    };
    for i in 0..n {
        if i > 0 && !space_between(i) {
            continue;
        }
        for j in i..n.min(i + 8) {
            if j + 1 < n && !space_between(j + 1) {
                continue;
            }
            let digits: usize = groups[i..=j].iter().map(|g| g.end - g.start).sum();
            if !(3..=19).contains(&digits) {
                continue;
            }
            // Extend over a leading "+" / "(" and a closing ")".
            let mut s = groups[i].start;
            if i == 0 {
                s = run_start;
            } else if text[..s].ends_with('(') {
                s -= 1;
            }
            let mut e = groups[j].end;
            let span_has_open = text[s..e].contains('(') && !text[s..e].contains(')');
            if span_has_open && text[e..run_end.max(e)].starts_with(')') {
                e += 1;
            }
            classify(text, s, e, &groups[i..=j], out);
        }
    }
}

fn classify(text: &str, s: usize, e: usize, groups: &[Group], out: &mut Vec<Candidate>) {
    let span = &text[s..e];
    let digits: String = span.chars().filter(char::is_ascii_digit).collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.end - g.start).collect();
    let seps: Vec<&str> = groups
        .windows(2)
        .map(|w| &text[w[0].end..w[1].start])
        .collect();
    let plus = span.starts_with('+');
    let paren = span.contains('(');
    let one_sep = |allowed: &[&str]| -> bool {
        seps.first()
            .is_some_and(|f| allowed.contains(f) && seps.iter().all(|x| x == f))
    };
    let n = digits.len();

    // Payment cards: 4-digit first group, one kind of separator (or none), Luhn, issuer.
    if (13..=19).contains(&n)
        && !plus
        && !paren
        && (lens.len() == 1
            || (lens[0] == 4 && one_sep(&[" ", "-"]) && lens.iter().all(|l| *l <= 6)))
        && validate::card_number(&digits)
    {
        push(text, out, E::CreditDebitCardNumber, (s, e), 0.9, true);
    }
    // SSN / ITIN: 3-2-4.
    if lens == [3, 2, 4] && !plus && !paren && one_sep(&["-", " "]) {
        if validate::us_itin(&digits) {
            push(
                text,
                out,
                E::UsIndividualTaxIdentificationNumber,
                (s, e),
                0.85,
                true,
            );
        } else if validate::us_ssn(&digits) {
            push(text, out, E::UsSocialSecurityNumber, (s, e), 0.85, true);
        }
    }
    // Canadian SIN: 3-3-3.
    if lens == [3, 3, 3] && !plus && !paren && one_sep(&["-", " "]) && validate::ca_sin(&digits) {
        push(text, out, E::CaSocialInsuranceNumber, (s, e), 0.6, true);
    }
    // NHS: 3-3-4 with spaces (dashes only next to "NHS": 3-3-4 with dashes is a US phone).
    if lens == [3, 3, 4] && !plus && !paren && validate::nhs_number(&digits) {
        let nhs_ctx = has_word(
            &window_before(text, s),
            context_words(E::UkNationalHealthServiceNumber),
        );
        if one_sep(&[" "]) || (nhs_ctx && one_sep(&["-"])) {
            push(
                text,
                out,
                E::UkNationalHealthServiceNumber,
                (s, e),
                0.6,
                true,
            );
        }
    }
    // Phones.
    if (7..=15).contains(&n) {
        phone(text, s, e, &digits, &lens, &seps, plus, paren, out);
    }
}

#[allow(clippy::too_many_arguments)]
fn phone(
    text: &str,
    s: usize,
    e: usize,
    digits: &str,
    lens: &[usize],
    seps: &[&str],
    plus: bool,
    paren: bool,
    out: &mut Vec<Candidate>,
) {
    use phonenumber::country::Id;
    if seps.iter().any(|x| x.contains('/')) {
        return;
    }
    // Dates and times written with dashes or dots: 2024-01-15, 15.01.2024, 01-15-24.
    let dotted_or_dashed = seps.iter().all(|x| *x == "-" || *x == ".");
    // Dotted phone numbers are written 3.3.4 (415.555.0100); other dotted runs are IPs,
    // versions or dates.
    if seps.iter().any(|x| *x == ".") && lens != [3, 3, 4] {
        return;
    }
    if !plus
        && !paren
        && dotted_or_dashed
        && matches!(
            lens,
            [4, 2, 2] | [2, 2, 4] | [2, 2, 2] | [1, 2, 4] | [2, 1, 4]
        )
    {
        return;
    }
    let context = has_word(&window_before(text, s), context_words(E::Phone));
    if !plus && !paren && seps.is_empty() && !context {
        return;
    }
    let span = &text[s..e];
    let valid = |region: Option<Id>| {
        phonenumber::parse(region, span).is_ok_and(|n| phonenumber::is_valid(&n))
    };
    let ok = if plus {
        valid(None)
    } else if digits.starts_with('0') {
        // National formats: French numbers are written in pairs; otherwise try the UK and
        // Germany (each parse costs microseconds, so the list stays short).
        if lens.len() == 5 && lens.iter().all(|l| *l == 2) {
            valid(Some(Id::FR))
        } else {
            [Id::GB, Id::DE].into_iter().any(|r| valid(Some(r)))
        }
    } else {
        (digits.len() == 10 || (digits.len() == 11 && digits.starts_with('1')))
            && valid(Some(Id::US))
    };
    if ok {
        push(text, out, E::Phone, (s, e), 0.7, true);
    }
}

/// Where identifiers made of capitals and digits can be: around each run of
/// `[A-Za-z0-9/+]` that is 8+ long with two capitals (or a capital and a digit), or starts with two capitals and a digit or
/// a spaced digit ("DE89 ...", "AB 12 34 56 C"). One byte loop instead of a regex pass per
/// identifier type over the whole text; the regexes then run on these windows only.
fn id_regions(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let tok = |c: u8| c.is_ascii_alphanumeric() || c == b'/' || c == b'+';
    let mut regions: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !tok(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        let (mut upper, mut digit) = (0usize, false);
        while i < b.len() && tok(b[i]) {
            upper += usize::from(b[i].is_ascii_uppercase());
            digit |= b[i].is_ascii_digit();
            i += 1;
        }
        let len = i - start;
        let caps2 = len >= 2 && b[start].is_ascii_uppercase() && b[start + 1].is_ascii_uppercase();
        let spaced_digit = i + 1 < b.len() && b[i] == b' ' && b[i + 1].is_ascii_digit();
        // A capitalised word ("Throughput") has one capital and no digit: never an id.
        let qualifies = (len >= 8 && (upper >= 2 || (upper == 1 && digit)))
            || (caps2 && len >= 3 && b[start + 2].is_ascii_digit())
            || (caps2 && len == 2 && spaced_digit);
        if qualifies {
            let we = floor_boundary(text, (i + 48).min(b.len()));
            match regions.last_mut() {
                Some(last) if last.1 >= start => last.1 = last.1.max(we),
                _ => regions.push((start, we)),
            }
        }
    }
    regions
}

/// Matches of `re` that start in `[ws, we)` and end by `we`, with absolute offsets.
fn matches_in<'t>(re: &Regex, text: &'t str, ws: usize, we: usize) -> Vec<regex::Match<'t>> {
    let hay = &text[..we];
    let mut out = Vec::new();
    let mut pos = ws;
    while pos < we {
        let Some(m) = re.find_at(hay, pos) else { break };
        pos = if m.end() > m.start() {
            m.end()
        } else {
            m.end() + 1
        };
        out.push(m);
    }
    out
}

fn uppercase_ids(text: &str, p: &Patterns, ws: usize, we: usize, out: &mut Vec<Candidate>) {
    for m in matches_in(&p.aws_access, text, ws, we) {
        if bounded(text, m.start(), m.end()) {
            push(text, out, E::AwsAccessKey, (m.start(), m.end()), 0.9, true);
        }
    }
    for m in matches_in(&p.iban, text, ws, we) {
        let s = m.start();
        if is_word(prev_char(text, s)) {
            continue;
        }
        let Some(len) = validate::iban_length(&text[s..s + 2]) else {
            continue;
        };
        // Take exactly the country's number of characters, spaces skipped.
        let mut compact = String::with_capacity(len);
        let mut end = s;
        for (i, c) in m.as_str().char_indices() {
            if c == ' ' {
                continue;
            }
            compact.push(c);
            end = s + i + 1;
            if compact.len() == len {
                break;
            }
        }
        if compact.len() == len && !is_word(next_char(text, end)) && validate::iban(&compact) {
            push(
                text,
                out,
                E::InternationalBankAccountNumber,
                (s, end),
                0.95,
                true,
            );
        }
    }
    for m in matches_in(&p.vin, text, ws, we) {
        let v = m.as_str();
        if bounded(text, m.start(), m.end())
            && v.bytes().any(|c| c.is_ascii_uppercase())
            && v.bytes().filter(u8::is_ascii_digit).count() >= 3
            && validate::vin(v)
        {
            push(
                text,
                out,
                E::VehicleIdentificationNumber,
                (m.start(), m.end()),
                0.85,
                true,
            );
        }
    }
    for m in matches_in(&p.swift, text, ws, we) {
        let v = m.as_str();
        if !bounded(text, m.start(), m.end()) || !validate::iso_country(&v[4..6]) {
            continue;
        }
        let has_digit = v.bytes().any(|c| c.is_ascii_digit());
        // All-letter 8/11-letter words ("CUSTOMER") need a context word to count.
        let base = if has_digit { 0.55 } else { 0.3 };
        push(text, out, E::SwiftCode, (m.start(), m.end()), base, false);
    }
    for m in matches_in(&p.nino, text, ws, we) {
        let compact: String = m.as_str().chars().filter(|c| *c != ' ').collect();
        let spaces = m.as_str().matches(' ').count();
        if bounded(text, m.start(), m.end())
            && matches!(spaces, 0 | 4)
            && validate::uk_nino(&compact)
        {
            push(
                text,
                out,
                E::UkNationalInsuranceNumber,
                (m.start(), m.end()),
                0.7,
                true,
            );
        }
    }
}

fn secret_like(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 40
        && b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_digit)
        && !b.iter().all(u8::is_ascii_hexdigit)
        && validate::entropy(v) >= 4.2
}

fn aws_secret(text: &str, p: &Patterns, ws: usize, we: usize, out: &mut Vec<Candidate>) {
    let in_set = |c: Option<char>| {
        c.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '+' | '='))
    };
    for m in matches_in(&p.aws_secret, text, ws, we) {
        let (s, e) = (m.start(), m.end());
        if in_set(prev_char(text, s)) || in_set(next_char(text, e)) || !secret_like(m.as_str()) {
            continue;
        }
        push(text, out, E::AwsSecretKey, (s, e), 0.55, false);
    }
}

fn keywords(text: &str, p: &Patterns, out: &mut Vec<Candidate>) {
    for m in p.keywords.find_iter(text) {
        let kw = p.keyword_kinds[m.pattern().as_usize()];
        let (ks, ke) = (m.start(), m.end());
        let last_is_word = text[..ke]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric());
        if is_word(prev_char(text, ks)) || (last_is_word && is_word(next_char(text, ke))) {
            continue;
        }
        let limit = floor_boundary(text, (ke + 96).min(text.len()));
        let after = &text[ke..limit];
        let Some(f) = p.filler.find(after) else {
            continue;
        };
        let filler = f.as_str();
        let vs = ke + f.end();
        let rest = &text[vs..limit];
        let assigned = filler.contains(':') || filler.contains('=') || {
            let l = filler.to_ascii_lowercase();
            has_word(&l, &["is", "was"])
        };
        let v = &p.values;
        let take = |r: &Regex| r.find(rest).map(|m| (vs, vs + m.end()));
        let ended = |(s, e): (usize, usize)| !is_word(next_char(text, e)) && s < e;
        match kw {
            Keyword::Password if assigned => {
                if let Some((s, mut e)) = take(&v.password) {
                    // Sentence punctuation and closing quotes after the secret are not part of it.
                    while e > s && text[..e].ends_with(['.', ',', ';', '"', '\'', ')', '`']) {
                        e -= 1;
                    }
                    if e > s {
                        push(text, out, E::Password, (s, e), 0.85, false);
                    }
                }
            }
            Keyword::Username => {
                // Without ":"/"=" ("login jdoe_42 / ..."), only a handle-like value counts.
                let handle = |t: &str| {
                    t.len() >= 3
                        && t.bytes()
                            .any(|c| c.is_ascii_digit() || c == b'_' || c == b'.')
                };
                let found = take(&v.username).filter(|(s, e)| assigned || handle(&text[*s..*e]));
                if let Some((s, mut e)) = found {
                    while e > s && text[..e].ends_with(['.', '-']) {
                        e -= 1;
                    }
                    if e > s {
                        push(text, out, E::Username, (s, e), 0.8, false);
                    }
                }
            }
            Keyword::Cvv => {
                if let Some(sp) = take(&v.cvv).filter(|sp| ended(*sp)) {
                    push(text, out, E::CreditDebitCardCvv, sp, 0.85, false);
                }
            }
            Keyword::Expiry => {
                let date_goes_on = |e: usize| {
                    let b = text.as_bytes();
                    e + 1 < b.len()
                        && matches!(b[e], b'/' | b'-' | b'.')
                        && b[e + 1].is_ascii_digit()
                };
                if let Some(sp) = take(&v.expiry).filter(|sp| ended(*sp) && !date_goes_on(sp.1)) {
                    push(text, out, E::CreditDebitCardExpiry, sp, 0.85, false);
                }
            }
            Keyword::Account => {
                if let Some(sp) = take(&v.account).filter(|sp| ended(*sp)) {
                    let n = text[sp.0..sp.1].bytes().filter(u8::is_ascii_digit).count();
                    if (6..=17).contains(&n) && !continues_numerically(text, sp.1) {
                        push(text, out, E::UsBankAccountNumber, sp, 0.75, false);
                    }
                }
            }
            Keyword::Passport => {
                if let Some(sp) = take(&v.passport).filter(|sp| ended(*sp)) {
                    push(text, out, E::UsPassportNumber, sp, 0.85, false);
                }
            }
            Keyword::Ssn | Keyword::Itin => {
                if let Some(sp) = take(&v.nine).filter(|sp| ended(*sp)) {
                    let d: String = text[sp.0..sp.1]
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect();
                    if d.len() == 9 && validate::us_itin(&d) {
                        push(
                            text,
                            out,
                            E::UsIndividualTaxIdentificationNumber,
                            sp,
                            0.95,
                            true,
                        );
                    } else if d.len() == 9 && validate::us_ssn(&d) {
                        push(text, out, E::UsSocialSecurityNumber, sp, 0.95, true);
                    }
                }
            }
            Keyword::Sin => {
                if let Some(sp) = take(&v.nine).filter(|sp| ended(*sp)) {
                    let d: String = text[sp.0..sp.1]
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect();
                    if d.len() == 9 && validate::ca_sin(&d) {
                        push(text, out, E::CaSocialInsuranceNumber, sp, 0.95, true);
                    }
                }
            }
            Keyword::Routing => {
                if let Some(sp) = take(&v.nine).filter(|sp| ended(*sp)) {
                    let d = &text[sp.0..sp.1];
                    if validate::aba_routing(d) {
                        push(text, out, E::UsBankRoutingNumber, sp, 0.95, true);
                    }
                }
            }
            Keyword::Nhs => {
                if let Some(sp) = take(&v.ten).filter(|sp| ended(*sp)) {
                    let d: String = text[sp.0..sp.1]
                        .chars()
                        .filter(char::is_ascii_digit)
                        .collect();
                    if validate::nhs_number(&d) {
                        push(text, out, E::UkNationalHealthServiceNumber, sp, 0.95, true);
                    }
                }
            }
            Keyword::AwsSecret => {
                if let Some(sp) = take(&v.aws_secret) {
                    let after = next_char(text, sp.1);
                    let clean = !after
                        .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '+' | '='));
                    if clean && secret_like(&text[sp.0..sp.1]) {
                        push(text, out, E::AwsSecretKey, sp, 0.95, false);
                    }
                }
            }
            Keyword::Password => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Resolution and offsets.

/// Drop low scores, then keep one span per overlap: validated first, then longer, then
/// higher score, then earlier.
fn resolve(mut cands: Vec<Candidate>, min_score: f64) -> Vec<Candidate> {
    cands.retain(|c| c.score >= min_score && c.end > c.start);
    cands.sort_by(|a, b| {
        b.validated
            .cmp(&a.validated)
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(b.score.total_cmp(&a.score))
            .then(a.start.cmp(&b.start))
            .then(a.entity.cmp(&b.entity))
    });
    // Accepted spans by start; they never overlap, so only the last one starting before a
    // candidate's end can overlap it.
    let mut taken: BTreeMap<usize, Candidate> = BTreeMap::new();
    for c in cands {
        let overlaps = taken
            .range(..c.end)
            .next_back()
            .is_some_and(|(_, t)| t.end > c.start);
        if !overlaps {
            taken.insert(c.start, c);
        }
    }
    taken.into_values().collect()
}

fn to_detections(text: &str, kept: Vec<Candidate>, types: EntitySet) -> Vec<Detection> {
    let mut out = Vec::with_capacity(kept.len());
    let (mut byte, mut chars) = (0usize, 0usize);
    let mut count_to = |b: usize| {
        chars += text[byte..b].chars().count();
        byte = b;
        chars
    };
    for c in kept {
        if !types.contains(c.entity) {
            continue;
        }
        let start_char = count_to(c.start);
        let end_char = count_to(c.end);
        out.push(Detection {
            entity_type: c.entity,
            start_char,
            end_char,
            start_byte: c.start,
            end_byte: c.end,
            score: (c.score * 100.0).round() / 100.0,
        });
    }
    out
}
