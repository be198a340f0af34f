//! `redact_input = true` on a model: PII is masked before a text leaves the process, so the
//! provider (here a fake OpenAI endpoint on 127.0.0.1) never receives it.

#[path = "common/fake_endpoints.rs"]
mod fake_endpoints;

use std::path::PathBuf;

use fake_endpoints::{fake_vector, FakeEndpoint};
use strata_operators::models::{build_model, ModelContext, ModelOptions};
use strata_operators::OperatorError;

fn ctx() -> ModelContext {
    ModelContext::new(PathBuf::from("models"))
}

fn options(fake: &FakeEndpoint, extra: &[(&str, &str)]) -> ModelOptions {
    let mut o = vec![
        ("provider".to_string(), "openai".to_string()),
        ("endpoint".to_string(), fake.openai_url()),
        ("model".to_string(), "fake-embed".to_string()),
        ("dimensions".to_string(), "8".to_string()),
    ];
    o.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ModelOptions::new("guarded", o)
}

const SECRET_TEXTS: [&str; 3] = [
    "Contact jane.doe@example.com about card 4111 1111 1111 1111.",
    "Nothing sensitive in this one.",
    "Server 10.20.30.40 answered; call +1 650 253 0000 if it fails.",
];

#[tokio::test]
async fn the_endpoint_never_receives_the_pii() {
    let fake = FakeEndpoint::start().await;
    let model = build_model(
        "guarded",
        options(&fake, &[("redact_input", "true")]),
        &ctx(),
    )
    .await
    .expect("model");
    let e = model.embedder("embed").expect("embedder");
    let texts: Vec<String> = SECRET_TEXTS.iter().map(|s| s.to_string()).collect();
    let got = e.embed(&texts).await.expect("embed");

    let seen = fake.received();
    assert_eq!(seen.len(), 1);
    let body = seen[0].body.to_string();
    for secret in [
        "jane.doe@example.com",
        "4111 1111 1111 1111",
        "10.20.30.40",
        "253 0000",
    ] {
        assert!(
            !body.contains(secret),
            "the endpoint received '{secret}': {body}"
        );
    }
    let sent: Vec<String> = seen[0].body["input"]
        .as_array()
        .expect("input array")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect();
    assert_eq!(
        sent,
        [
            "Contact {EMAIL} about card {CREDIT_DEBIT_CARD_NUMBER}.",
            "Nothing sensitive in this one.",
            "Server {IP_ADDRESS} answered; call {PHONE} if it fails.",
        ]
    );
    // The vectors are those of the redacted texts, in order.
    let expected: Vec<f32> = sent.iter().flat_map(|t| fake_vector(t, 8)).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn redact_types_limits_what_is_masked() {
    let fake = FakeEndpoint::start().await;
    let model = build_model(
        "guarded",
        options(
            &fake,
            &[
                ("redact_input", "true"),
                ("redact_types", "EMAIL, IP_ADDRESS"),
            ],
        ),
        &ctx(),
    )
    .await
    .expect("model");
    let e = model.embedder("embed").expect("embedder");
    e.embed(&[SECRET_TEXTS[0].to_string(), SECRET_TEXTS[2].to_string()])
        .await
        .expect("embed");
    let sent = fake.received()[0].body["input"].to_string();
    assert!(
        sent.contains("{EMAIL}") && sent.contains("{IP_ADDRESS}"),
        "{sent}"
    );
    assert!(
        sent.contains("4111 1111 1111 1111"),
        "a type not listed stays: {sent}"
    );
}

#[tokio::test]
async fn bad_guardrail_options_are_errors_at_the_option() {
    let fake = FakeEndpoint::start().await;
    let cases: [(&[(&str, &str)], &str, &str); 4] = [
        (&[("redact_input", "maybe")], "redact_input", "redact_input"),
        (
            &[
                ("redact_input", "true"),
                ("redact_types", "EMAIL, SHOE_SIZE"),
            ],
            "redact_types",
            "SHOE_SIZE",
        ),
        (
            &[("redact_input", "true"), ("redact_types", "NAME")],
            "redact_types",
            "NER",
        ),
        (
            &[("redact_types", "EMAIL")],
            "redact_types",
            "redact_input = true",
        ),
    ];
    for (extra, key, needle) in cases {
        let err = build_model("guarded", options(&fake, extra), &ctx())
            .await
            .expect_err("bad option");
        let msg = err.to_string();
        match &err {
            OperatorError::Model { key: Some(k), .. } => assert_eq!(k, key, "{msg}"),
            other => panic!("expected an error at '{key}', got {other:?}"),
        }
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    assert!(fake.received().is_empty());
}
