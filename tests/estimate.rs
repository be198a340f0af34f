//! `strata explain` estimates what a bounded job's model calls will be and cost before any
//! is made: it reads the input in full, builds every request the run would send, and
//! prints per model the calls, input tokens, the output bound and the cost range. Checked
//! against the fake OpenAI-compatible endpoint: explain sends it nothing, and the real run
//! then makes the estimated number of calls and costs no more than the estimate's top.

mod common;
#[path = "../operators/tests/common/fake_endpoints.rs"]
mod fake_endpoints;

use serde_json::json;

use common::*;
use fake_endpoints::FakeEndpoint;
use strata_operators::models::chat::Money;
use strata_operators::models::remote::limits::estimate_tokens;
use strata_operators::udfs::ai::summarize_prompt;

const N: usize = 120;

fn body(i: usize) -> Option<String> {
    (i % 10 != 3).then(|| {
        format!(
            "Report {i}: the pump at site {} failed {} times this week.",
            i % 7,
            i % 5
        )
    })
}

/// The part of explain's estimate line for `model` between `prefix` and `suffix`.
fn field<'a>(line: &'a str, prefix: &str, suffix: &str) -> &'a str {
    let start = line
        .find(prefix)
        .unwrap_or_else(|| panic!("'{prefix}' in {line}"))
        + prefix.len();
    let rest = &line[start..];
    &rest[..rest
        .find(suffix)
        .unwrap_or_else(|| panic!("'{suffix}' in {line}"))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_estimates_calls_tokens_and_cost_before_any_call() {
    let fake = FakeEndpoint::start().await;
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_jsonl(&input, (0..N).map(|i| json!({"id": i, "body": body(i)})));
    let usage = dir.path().join("usage");
    let text = format!(
        "SET usage.path = '{}';
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = '{url}', model = 'fake-chat',
  system = 'Be brief.', 'price.input_per_1m' = '0.8', 'price.output_per_1m' = '4');
CREATE MODEL emb WITH (provider = 'openai', task = 'embedding', endpoint = '{url}', model = 'fake-embed',
  dimensions = '8', 'price.input_per_1m' = '0.02');
CREATE TABLE docs (id BIGINT NOT NULL, body TEXT) WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE out WITH (connector = 'parquet', path = '{}');
INSERT INTO out SELECT id, ai_summarize('llm', body, 30) AS summary, embed('emb', body) AS v FROM docs;
",
        s(&usage),
        s(&input),
        s(&dir.path().join("out")),
        url = fake.openai_url(),
    );
    let job = write_job(dir.path(), "est.sql", &text);
    let ex = strata(dir.path(), &["explain", s(&job)]);
    ex.expect_code(0, "explain");
    assert!(fake.received().is_empty(), "explain calls no model");
    assert!(
        ex.stdout
            .contains(&format!("estimate ({N} input records read")),
        "{}",
        ex.stdout
    );

    // The requests the run will send: one per non-NULL body.
    let tokenizer = strata_operators::tokenizer::tokenizer_for(&models_dir(), None).unwrap();
    let prompts: Vec<String> = (0..N)
        .filter_map(body)
        .map(|b| summarize_prompt(&b, 30))
        .collect();
    let calls = prompts.len() as u64;
    let counted: u64 = prompts
        .iter()
        .map(|p| (tokenizer.count(p).unwrap() + tokenizer.count("Be brief.").unwrap()) as u64)
        .sum();
    let reserved: u64 = prompts
        .iter()
        .map(|p| estimate_tokens(p) + estimate_tokens("Be brief."))
        .sum();
    // ai_summarize's bound for 30 words: 1.5 tokens a word + 16 = 61.
    let output = calls * 61;
    let per_million = |tokens: u64, price: &str| {
        let p = Money::parse(price).unwrap().0;
        (tokens as i128 * p + 999_999) / 1_000_000
    };
    let low = Money(per_million(counted, "0.8"));
    let high = Money(per_million(reserved, "0.8") + per_million(output, "4"));

    // The estimate section follows the plan.
    let estimate = &ex.stdout[ex.stdout.find("estimate (").unwrap()..];
    let line = estimate
        .lines()
        .find(|l| l.trim_start().starts_with("llm (openai, chat):"))
        .unwrap_or_else(|| panic!("no estimate for llm in\n{estimate}"));
    assert_eq!(
        field(line, "chat): ", " calls"),
        calls.to_string(),
        "{line}"
    );
    assert_eq!(
        field(line, "input ", " tokens"),
        counted.to_string(),
        "{line}"
    );
    assert_eq!(
        field(line, "tokenizer; ", " reserved"),
        reserved.to_string(),
        "{line}"
    );
    assert_eq!(
        field(line, "output at most ", " tokens"),
        output.to_string(),
        "{line}"
    );
    assert_eq!(field(line, "cost ", " to"), low.to_string(), "{line}");
    assert_eq!(field(line, " to ", " USD"), high.to_string(), "{line}");
    let emb = estimate
        .lines()
        .find(|l| l.trim_start().starts_with("emb (openai, embedding):"))
        .unwrap_or_else(|| panic!("no estimate for emb in\n{estimate}"));
    assert_eq!(
        field(emb, "embedding): ", " texts"),
        calls.to_string(),
        "{emb}"
    );

    // --no-estimate skips it.
    let quick = strata(dir.path(), &["explain", s(&job), "--no-estimate"]);
    quick.expect_code(0, "explain --no-estimate");
    assert!(!quick.stdout.contains("estimate ("), "{}", quick.stdout);

    // The run makes the estimated calls and costs no more than the estimate's top.
    let d = dir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || strata(&d, &["run", s(&job)]))
        .await
        .unwrap();
    run.summary("the estimated run");
    let chat_calls = fake
        .received()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .count() as u64;
    assert_eq!(chat_calls, calls);
    let mut spent = 0i128;
    for f in read_table(&usage) {
        for b in &f.batches {
            let cost = b
                .column_by_name("cost_usd")
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::Decimal128Array>()
                .unwrap()
                .clone();
            let op = b.column_by_name("operation").unwrap();
            let op = op
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            for i in 0..b.num_rows() {
                if op.value(i) == "chat" {
                    spent += cost.value(i);
                }
            }
        }
    }
    // cost_usd has 10 decimals, Money 16.
    let spent = Money(spent * 1_000_000);
    assert!(
        spent.0 > 0 && spent <= high,
        "spent {spent}, estimated at most {high}"
    );
}
