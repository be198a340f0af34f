//! `embed(...)` end to end through the `strata` binary: a job with 10 000 chunks embedded by
//! the local model into Parquet (vector type, `embedding_model` column, identical texts get
//! identical vectors), the retrieval check with `strata query`, `explain`, and plan errors
//! for bad models.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float32Type};
use serde_json::json;

use common::*;

/// Distinct topics, so a question has one clearly best answer.
const SENTENCES: [&str; 10] = [
    "Cats purr when they are content and relaxed.",
    "The invoice is due thirty days after delivery.",
    "GPUs multiply large matrices in parallel.",
    "Refunds are issued to the original payment method within five business days.",
    "The Eiffel Tower is in Paris.",
    "Photosynthesis turns sunlight into chemical energy in plants.",
    "Our office is closed on public holidays.",
    "Rust prevents data races at compile time.",
    "A marathon is a little over forty-two kilometres long.",
    "Espresso is brewed by forcing hot water through finely ground coffee.",
];

const N: usize = 10_000;

fn job(input: &Path, out: &Path) -> String {
    format!(
        "CREATE MODEL minilm WITH (provider = 'local', task = 'embedding', max_batch = '64');
CREATE TABLE docs (doc_id BIGINT NOT NULL, tenant TEXT NOT NULL, body TEXT)
  WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE vectors WITH (connector = 'parquet', path = '{}', partition_by = 'tenant', 'rollover.rows' = '4000');
INSERT INTO vectors
SELECT doc_id, tenant, c['text'] AS text, embed('minilm', c['text']) AS embedding
FROM (SELECT doc_id, tenant, unnest(chunk_text(body, 64)) AS c FROM docs);
",
        s(input),
        s(out)
    )
}

#[test]
fn ten_thousand_chunks_become_vectors_and_a_question_finds_its_answer() {
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_jsonl(
        &input,
        (0..N).map(|i| {
            json!({
                "doc_id": i,
                "tenant": if i % 2 == 0 { "acme" } else { "globex" },
                "body": SENTENCES[i % SENTENCES.len()],
            })
        }),
    );
    let out = dir.path().join("vectors");
    let job_path = write_job(dir.path(), "embed.sql", &job(&input, &out));

    let explain = strata(dir.path(), &["explain", s(&job_path)]);
    explain.expect_code(0, "explain");
    assert!(
        explain
            .stdout
            .contains("minilm (local, embedding): all-MiniLM-L6-v2, 384 dimensions"),
        "{}",
        explain.stdout
    );

    let summary = strata(
        dir.path(),
        &[
            "run",
            s(&job_path),
            "--checkpoint",
            s(&dir.path().join("ckpt")),
        ],
    )
    .summary("run");
    assert_eq!(summary.sinks["vectors"].rows, N as u64, "{summary:?}");

    let mut seen = BTreeSet::new();
    let mut by_text: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for file in read_table(&out) {
        for b in &file.batches {
            let schema = b.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(names, ["doc_id", "text", "embedding", "embedding_model"]);
            let DataType::FixedSizeList(item, 384) = schema.field(2).data_type() else {
                panic!("embedding is {}", schema.field(2).data_type());
            };
            assert_eq!(item.data_type(), &DataType::Float32);
            let ids = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
            let texts = b.column(1).as_string::<i32>();
            let vecs = b.column(2).as_fixed_size_list();
            let models = b.column(3).as_string::<i32>();
            for r in 0..b.num_rows() {
                assert!(
                    seen.insert(ids.value(r)),
                    "doc {} written twice",
                    ids.value(r)
                );
                assert_eq!(models.value(r), "all-MiniLM-L6-v2");
                assert!(vecs.is_valid(r));
                let v: Vec<f32> = vecs
                    .value(r)
                    .as_primitive::<Float32Type>()
                    .values()
                    .to_vec();
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
                let text = texts.value(r).to_string();
                assert_eq!(text, SENTENCES[ids.value(r) as usize % SENTENCES.len()]);
                match by_text.get(&text) {
                    None => {
                        by_text.insert(text, v);
                    }
                    Some(first) => {
                        let dot: f32 = first.iter().zip(&v).map(|(a, b)| a * b).sum();
                        assert!(dot > 0.9999, "same text, different vectors ({dot}): {text}");
                    }
                }
            }
        }
    }
    assert_eq!(seen.len(), N, "every chunk exactly once");
    assert_eq!(by_text.len(), SENTENCES.len());

    // The README's retrieval check: embed a question and rank the stored chunks.
    let q = strata(
        dir.path(),
        &[
            "query",
            "CREATE MODEL minilm WITH (provider = 'local');
             SELECT text, max(cosine_similarity(embedding, embed('minilm', 'when will I get my money back?'))) AS score
             FROM v GROUP BY text ORDER BY score DESC LIMIT 3",
            "--table",
            &format!("v={}", s(&out)),
        ],
    );
    q.expect_code(0, "query");
    let first_row = q
        .stdout
        .lines()
        .find(|l| l.starts_with("| ") && !l.contains("score"))
        .unwrap_or_else(|| panic!("no rows:\n{}", q.stdout));
    assert!(first_row.contains("Refunds are issued"), "{}", q.stdout);
}

#[test]
fn bad_models_are_plan_errors_at_the_option() {
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    write_jsonl(&input, [json!({"doc_id": 1, "tenant": "a", "body": "x"})]);
    let out = dir.path().join("out");
    let cases = [
        (
            job(&input, &out).replace("max_batch = '64'", "path = 'no-such-model'"),
            "1:67",
            "no-such-model",
        ),
        (
            job(&input, &out).replace("max_batch = '64'", "max_batch = '64', colour = 'red'"),
            "1:85",
            "unknown option 'colour'",
        ),
        (
            job(&input, &out).replace("provider = 'local'", "provider = 'watsonx'"),
            "1:27",
            "unknown provider 'watsonx'",
        ),
        (
            job(&input, &out).replace("embed('minilm'", "embed('bert'"),
            "",
            "no model named 'bert'",
        ),
    ];
    for (text, at, needle) in cases {
        let path = write_job(dir.path(), "bad.sql", &text);
        let o = strata(dir.path(), &["run", s(&path)]);
        assert_ne!(o.code, Some(0), "{text}");
        assert!(o.stderr.contains(needle), "{needle}:\n{}", o.stderr);
        if !at.is_empty() {
            assert!(
                o.stderr.contains(&format!("bad.sql:{at}")),
                "{at}:\n{}",
                o.stderr
            );
        }
        assert!(!out.exists(), "a plan error wrote output");
    }
}

/// Local embedding calls are usage rows too: one per call (per tenant of an array), with
/// the tokens the model read ([CLS] and [SEP] included) and no cost unless priced.
#[test]
fn local_embedding_calls_are_usage_rows_with_their_tokens() {
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    let n = 300;
    write_jsonl(
        &input,
        (0..n).map(|i| {
            let tenant = if i % 2 == 0 { "acme" } else { "globex" };
            json!({"doc_id": i, "tenant": tenant, "body": SENTENCES[i % SENTENCES.len()]})
        }),
    );
    let usage = dir.path().join("usage");
    let text = format!(
        "SET epoch.max_rows = '100';
SET usage.path = '{}';
SET job.tenant_column = 'tenant';
CREATE MODEL minilm WITH (provider = 'local', task = 'embedding', 'price.input_per_1m' = '0.01');
CREATE TABLE docs (doc_id BIGINT NOT NULL, tenant TEXT NOT NULL, body TEXT)
  WITH (connector = 'file', path = '{}', format = 'json');
CREATE TABLE vectors WITH (connector = 'parquet', path = '{}');
INSERT INTO vectors SELECT doc_id, embed('minilm', body) AS embedding FROM docs;
",
        s(&usage),
        s(&input),
        s(&dir.path().join("out"))
    );
    let job = write_job(dir.path(), "usage.sql", &text);
    strata(dir.path(), &["run", s(&job)]).summary("local embedding with usage");
    let rows = table_rows(&usage);
    assert!(!rows.is_empty());
    let tokenizer = strata_operators::tokenizer::tokenizer_for(&models_dir(), None).unwrap();
    for tenant in ["acme", "globex"] {
        let want: i64 = (0..n)
            .filter(|i| (i % 2 == 0) == (tenant == "acme"))
            .map(|i| tokenizer.count(SENTENCES[i % SENTENCES.len()]).unwrap() as i64 + 2)
            .sum();
        let mine: Vec<_> = rows.iter().filter(|r| r["tenant"] == tenant).collect();
        let got: i64 = mine
            .iter()
            .map(|r| r["input_tokens"].as_i64().unwrap())
            .sum();
        assert_eq!(got, want, "tokens embedded for {tenant}");
        for r in &mine {
            assert_eq!(r["provider"], "local");
            assert_eq!(r["operation"], "embedding");
            assert_eq!(r["model_id"], "all-MiniLM-L6-v2");
            assert_eq!(r["status"], "ok");
            assert_eq!(r["attempt"], 1);
        }
    }
}
