//! PII detectors and the `detect_pii` / `redact_pii` functions: each detector with a
//! valid value, a failing checksum and a look-alike; code-point offsets over multi-byte
//! text; overlaps; every redaction operator; NULL, empty and 1 MB inputs; plan errors.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::SessionContext;
use strata_operators::pii::{
    redact, EntitySet, EntityType, PiiConfig, PiiDetector, RedactOperator,
};
use strata_operators::{register_all, OperatorConfig};

fn found(text: &str) -> Vec<(String, String)> {
    PiiDetector::default()
        .detect(text, EntitySet::structured())
        .expect("detect")
        .into_iter()
        .map(|d| {
            let s: String = text
                .chars()
                .skip(d.start_char)
                .take(d.end_char - d.start_char)
                .collect();
            (d.entity_type.name().to_string(), s)
        })
        .collect()
}

/// `text` holds exactly one entity, of type `ty` and text `value`.
fn assert_one(text: &str, ty: &str, value: &str) {
    assert_eq!(
        found(text),
        vec![(ty.to_string(), value.to_string())],
        "in {text:?}"
    );
}

/// Nothing is found in `text`.
fn assert_none(text: &str) {
    assert_eq!(found(text), vec![], "in {text:?}");
}

#[test]
fn email_url_ip_mac() {
    assert_one(
        "write to jane.doe+tag@mail.example.org today",
        "EMAIL",
        "jane.doe+tag@mail.example.org",
    );
    assert_none("x@y is not an address, nor is a@b.c1");
    assert_one(
        "see https://portal.example.com/reset?id=7.",
        "URL",
        "https://portal.example.com/reset?id=7",
    );
    assert_one(
        "(docs at www.example.org/guide)",
        "URL",
        "www.example.org/guide",
    );
    assert_none("the file is report.final.txt");
    assert_one(
        "host 192.168.10.254 refused",
        "IP_ADDRESS",
        "192.168.10.254",
    );
    assert_none("bad host 256.1.1.300 refused");
    assert_none("running version 1.2.3.4 now, build 10.0.19045");
    assert_one(
        "addr 2001:db8:85a3::8a2e:370:7334 up",
        "IP_ADDRESS",
        "2001:db8:85a3::8a2e:370:7334",
    );
    assert_none("use std::io::Read; meeting 10:30:45");
    assert_one(
        "nic 00:1A:2b:3C:4d:5E online",
        "MAC_ADDRESS",
        "00:1A:2b:3C:4d:5E",
    );
    assert_none("mixed 00:1A-2b:3C:4d:5E separators");
}

#[test]
fn cards_cvv_expiry() {
    assert_one(
        "card 4111 1111 1111 1111 ok",
        "CREDIT_DEBIT_CARD_NUMBER",
        "4111 1111 1111 1111",
    );
    assert_one(
        "amex 3782-822463-10005",
        "CREDIT_DEBIT_CARD_NUMBER",
        "3782-822463-10005",
    );
    // Luhn fails: an order number, not a card.
    assert_none("order 4111 1111 1111 1112 shipped");
    assert_none("order #4111111111111112 shipped");
    assert_one("CVV: 123", "CREDIT_DEBIT_CARD_CVV", "123");
    assert_none("we have 123 users");
    assert_one("exp 09/27", "CREDIT_DEBIT_CARD_EXPIRY", "09/27");
    assert_none("on 09/27 we met");
}

#[test]
fn us_identifiers() {
    assert_one(
        "SSN 536-22-5784.",
        "US_SOCIAL_SECURITY_NUMBER",
        "536-22-5784",
    );
    assert_one(
        "social security number 536225784",
        "US_SOCIAL_SECURITY_NUMBER",
        "536225784",
    );
    assert_none("SSN 666-22-5784 and 000-12-3456 and 536-00-5784");
    assert_one(
        "ITIN 912-70-1234",
        "US_INDIVIDUAL_TAX_IDENTIFICATION_NUMBER",
        "912-70-1234",
    );
    assert_none("ITIN 912-40-1234");
    assert_one(
        "routing number: 021000021",
        "US_BANK_ROUTING_NUMBER",
        "021000021",
    );
    assert_none("routing number: 021000022");
    assert_none("ticket 021000021 closed");
    assert_one(
        "account number 000123456789",
        "US_BANK_ACCOUNT_NUMBER",
        "000123456789",
    );
    assert_none("the account was closed in 2019");
    assert_one("passport no. C12345678", "US_PASSPORT_NUMBER", "C12345678");
    assert_none("passport photos cost $12");
}

#[test]
fn international_identifiers() {
    assert_one(
        "IBAN DE89 3704 0044 0532 0130 00.",
        "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
        "DE89 3704 0044 0532 0130 00",
    );
    assert_one(
        "to GB82WEST12345698765432 now",
        "INTERNATIONAL_BANK_ACCOUNT_NUMBER",
        "GB82WEST12345698765432",
    );
    assert_none("to GB82WEST12345698765433 now");
    assert_one("SWIFT: DEUTDEFF", "SWIFT_CODE", "DEUTDEFF");
    assert_none("CUSTOMER ACCOUNTS ARE REVIEWED");
    assert_one(
        "NI number AB 12 34 56 C",
        "UK_NATIONAL_INSURANCE_NUMBER",
        "AB 12 34 56 C",
    );
    assert_none("code GB 12 34 56 C");
    assert_one(
        "NHS number 943 476 5919",
        "UK_NATIONAL_HEALTH_SERVICE_NUMBER",
        "943 476 5919",
    );
    // The checksum fails: not an NHS number (it is still a valid US phone number).
    assert!(!found("NHS number 943 476 5918")
        .iter()
        .any(|(t, _)| t == "UK_NATIONAL_HEALTH_SERVICE_NUMBER"));
    assert_one(
        "SIN 130 692 544",
        "CA_SOCIAL_INSURANCE_NUMBER",
        "130 692 544",
    );
    assert_none("SIN 130 692 545");
    assert_one(
        "VIN 1HGCM82633A004352 recalled",
        "VEHICLE_IDENTIFICATION_NUMBER",
        "1HGCM82633A004352",
    );
    assert_none("VIN 1HGCM82634A004352 recalled");
}

#[test]
fn phones() {
    assert_one("call (415) 867-5309 now", "PHONE", "(415) 867-5309");
    assert_one(
        "London office +44 20 7946 0958.",
        "PHONE",
        "+44 20 7946 0958",
    );
    assert_one("tél. 01 42 68 53 00", "PHONE", "01 42 68 53 00");
    assert_none("released 2024-01-15 at 10:30");
    assert_none("timestamp 1700000000 and 20240115103000");
    assert_none("+1 (000) 000-0000 is not a number");
}

#[test]
fn secrets_and_credentials() {
    assert_one(
        "key AKIAIOSFODNN7EXAMPLE leaked",
        "AWS_ACCESS_KEY",
        "AKIAIOSFODNN7EXAMPLE",
    );
    assert_none("key AKIAIOSFODNN7EXAMPLE1 is too long");
    assert_one(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SECRET_KEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    );
    // A commit hash is 40 hex digits: not a secret.
    assert_none("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 merged");
    assert_one("password: hunter2!", "PASSWORD", "hunter2!");
    assert_none("reset your password from the settings page");
    assert_one("username = jdoe_42", "USERNAME", "jdoe_42");
    assert_none("the user logged out");
}

#[test]
fn look_alikes() {
    assert_none("uuid 123e4567-e89b-12d3-a456-426614174000 and price $1,234.56 and €99.99");
    assert_none("v2.14.3, ISBN 978-3-16-148410-0, at 2026-11-24T10:30:00Z");
}

#[test]
fn multibyte_offsets() {
    let text = "Café 東京 👩‍💻 mail zoë@example.com, IP 10.0.0.1 🎉";
    let ds = PiiDetector::default()
        .detect(text, EntitySet::structured())
        .expect("detect");
    let chars: Vec<char> = text.chars().collect();
    let got: Vec<(EntityType, String)> = ds
        .iter()
        .map(|d| {
            (
                d.entity_type,
                chars[d.start_char..d.end_char].iter().collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (EntityType::Email, "zoë@example.com".to_string()),
            (EntityType::IpAddress, "10.0.0.1".to_string())
        ]
    );
    for d in &ds {
        assert_eq!(
            &text[d.start_byte..d.end_byte],
            chars[d.start_char..d.end_char].iter().collect::<String>()
        );
    }
    // CJK directly around an e-mail (no spaces in the language).
    assert_one("请联系alice@example.com谢谢", "EMAIL", "alice@example.com");
}

#[test]
fn overlaps_resolve_to_one_span() {
    // An e-mail inside a URL: the longer validated span wins.
    assert_one(
        "https://example.com/u/bob@example.com",
        "URL",
        "https://example.com/u/bob@example.com",
    );
    // A card number after "account number": the validated card beats the context-only account.
    assert_one(
        "account number 4111111111111111",
        "CREDIT_DEBIT_CARD_NUMBER",
        "4111111111111111",
    );
    // An SSN after "SSN": found by two detectors, reported once.
    assert_one(
        "SSN: 536-22-5784",
        "US_SOCIAL_SECURITY_NUMBER",
        "536-22-5784",
    );
}

#[test]
fn context_raises_score_and_min_score_filters() {
    let d = PiiDetector::default();
    let score = |t: &str| d.detect(t, EntitySet::structured()).expect("detect")[0].score;
    let plain = score("id 130 692 544");
    let ctx = score("SIN 130 692 544");
    assert!(ctx > plain, "{ctx} > {plain}");
    let strict = PiiDetector::new(&PiiConfig {
        min_score: 0.9,
        ..PiiConfig::default()
    });
    assert!(strict
        .detect("id 130 692 544", EntitySet::structured())
        .expect("detect")
        .is_empty());
    assert_eq!(
        strict
            .detect("SIN 130 692 544", EntitySet::structured())
            .expect("detect")
            .len(),
        1
    );
}

#[test]
fn types_filter_and_ner_types() {
    let text = "mail a@example.com or call (415) 867-5309";
    let only_email = EntitySet::parse(["email"]).expect("known");
    let ds = PiiDetector::default()
        .detect(text, only_email)
        .expect("detect");
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0].entity_type, EntityType::Email);
    assert!(EntitySet::parse(["EMAIL", "SOCIAL"]).is_err());
    let err = PiiDetector::default()
        .detect(text, EntitySet::empty().with(EntityType::Name))
        .expect_err("NAME needs NER");
    assert!(err.to_string().contains("NER"), "{err}");
}

#[test]
fn redaction_operators() {
    let text = "mail bob@example.com, call (415) 867-5309.";
    let ds = PiiDetector::default()
        .detect(text, EntitySet::structured())
        .expect("detect");
    assert_eq!(
        redact(text, &ds, RedactOperator::Mask, None).expect("mask"),
        "mail {EMAIL}, call {PHONE}."
    );
    assert_eq!(
        redact(text, &ds, RedactOperator::Remove, None).expect("remove"),
        "mail , call ."
    );
    let key = b"0123456789abcdef-secret";
    let h1 = redact(text, &ds, RedactOperator::Hash, Some(key)).expect("hash");
    let h2 = redact(
        "bob@example.com",
        &PiiDetector::default()
            .detect("bob@example.com", EntitySet::structured())
            .expect("detect"),
        RedactOperator::Hash,
        Some(key),
    )
    .expect("hash");
    assert!(
        h1.starts_with("mail {EMAIL:") && !h1.contains("bob@"),
        "{h1}"
    );
    // Same value, same token: joins on hashed values still work.
    assert!(h1.contains(&h2), "{h1} contains {h2}");
    let other = redact(
        "bob@example.com",
        &PiiDetector::default()
            .detect("bob@example.com", EntitySet::structured())
            .expect("detect"),
        RedactOperator::Hash,
        Some(b"another-key-0123456"),
    )
    .expect("hash");
    assert_ne!(h2, other, "the key matters");
    assert!(redact(text, &ds, RedactOperator::Hash, None).is_err());
    assert!("shred".parse::<RedactOperator>().is_err());
}

#[test]
fn empty_and_megabyte_texts() {
    assert!(PiiDetector::default()
        .detect("", EntitySet::structured())
        .expect("detect")
        .is_empty());
    let unit = "Le déploiement 東京 est terminé 🎉; contact ops@example.com or 10.1.2.3. ";
    let mut big = String::new();
    while big.len() < 1 << 20 {
        big.push_str(unit);
    }
    let n = big.len() / unit.len();
    let ds = PiiDetector::default()
        .detect(&big, EntitySet::structured())
        .expect("detect");
    assert_eq!(ds.len(), 2 * n);
    let masked = redact(&big, &ds, RedactOperator::Mask, None).expect("mask");
    assert_eq!(masked.matches("{EMAIL}").count(), n);
    assert!(!masked.contains("ops@example.com"));
}

// ------------------------------------------------------------------------- SQL surface

fn ctx(pii: PiiConfig) -> SessionContext {
    let ctx = SessionContext::new();
    let mut cfg = OperatorConfig::from_env();
    cfg.pii = pii;
    register_all(&ctx, &cfg);
    let schema = Arc::new(Schema::new(vec![Field::new("body", DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(vec![
            Some("mail bob@example.com or call (415) 867-5309"),
            None,
            Some(""),
            Some("Zoë 👩‍💻 IP 10.0.0.1"),
        ]))],
    )
    .expect("batch");
    ctx.register_batch("docs", batch).expect("register");
    ctx
}

async fn strings(ctx: &SessionContext, sql: &str) -> Vec<Option<String>> {
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let mut out = Vec::new();
    for b in batches {
        let col = arrow::compute::cast(b.column(0), &DataType::Utf8).expect("cast");
        out.extend(col.as_string::<i32>().iter().map(|s| s.map(str::to_string)));
    }
    out
}

#[tokio::test]
async fn sql_detect_and_redact() {
    let ctx = ctx(PiiConfig::default());
    let masked = strings(&ctx, "SELECT redact_pii(body) FROM docs").await;
    assert_eq!(
        masked,
        vec![
            Some("mail {EMAIL} or call {PHONE}".to_string()),
            None,
            Some(String::new()),
            Some("Zoë 👩‍💻 IP {IP_ADDRESS}".to_string())
        ]
    );
    let only = strings(
        &ctx,
        "SELECT redact_pii(body, ['PHONE'], 'remove') FROM docs",
    )
    .await;
    assert_eq!(only[0].as_deref(), Some("mail bob@example.com or call "));
    let rows = strings(
        &ctx,
        "SELECT concat(d.entity_type, ':', d.start_char, '-', d.end_char) FROM \
         (SELECT unnest(detect_pii(body)) AS d FROM docs)",
    )
    .await;
    assert_eq!(
        rows,
        vec![
            Some("EMAIL:5-20".to_string()),
            Some("PHONE:29-43".to_string()),
            Some("IP_ADDRESS:11-19".to_string())
        ]
    );
    let counts = ctx
        .sql("SELECT detect_pii(body) FROM docs")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let list = counts[0].column(0).as_list::<i32>();
    assert!(list.is_null(1), "NULL text gives NULL");
    assert_eq!(list.value(2).len(), 0, "empty text gives an empty list");
}

#[tokio::test]
async fn sql_hash_uses_the_key_from_the_environment() {
    // Only this test reads or writes this variable.
    std::env::set_var("STRATA_TEST_PII_KEY", "a-test-key-of-32-bytes-0123456789");
    let ctx = ctx(PiiConfig {
        hash_key_env: Some("STRATA_TEST_PII_KEY".into()),
        ..PiiConfig::default()
    });
    let hashed = strings(&ctx, "SELECT redact_pii(body, ['EMAIL'], 'hash') FROM docs").await;
    let h = hashed[0].clone().expect("row");
    assert!(
        h.starts_with("mail {EMAIL:") && h.ends_with("} or call (415) 867-5309"),
        "{h}"
    );
    let again = strings(
        &ctx,
        "SELECT redact_pii('bob@example.com', ['EMAIL'], 'hash')",
    )
    .await;
    assert!(h.contains(again[0].as_deref().expect("row")));
}

#[tokio::test]
async fn sql_plan_errors() {
    let ctx = ctx(PiiConfig::default());
    for (sql, needle) in [
        (
            "SELECT detect_pii(body, ['EMAIL', 'SOCIAL_SECURITY']) FROM docs",
            "unknown PII entity type 'SOCIAL_SECURITY'",
        ),
        (
            "SELECT redact_pii(body, ['EMAIL'], 'shred') FROM docs",
            "unknown redaction operator 'shred'",
        ),
        (
            "SELECT redact_pii(body, ['EMAIL'], 'hash') FROM docs",
            "pii.hash_key_env",
        ),
        ("SELECT detect_pii(body, ['NAME']) FROM docs", "NER"),
        ("SELECT detect_pii(body, body) FROM docs", "constant"),
        ("SELECT detect_pii(42)", "string"),
    ] {
        let err = match ctx.sql(sql).await {
            Err(e) => e,
            Ok(df) => df.into_optimized_plan().expect_err(sql),
        };
        let msg = err.to_string();
        assert!(msg.contains(needle), "{sql}: {msg}");
        assert!(
            msg.contains("Error during planning"),
            "{sql} is a plan error: {msg}"
        );
    }
}
