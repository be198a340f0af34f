//! `chunk_text` and `token_count` through DataFusion SQL: registration, `unnest`, errors.

mod common;

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use strata_operators::{register_all, OperatorConfig};

use common::{default_tokenizer, models_dir};

const BODIES: [Option<&str>; 4] = [
    Some("# Title\n\nCafé crème at the façade. 東京での遅延は平均十二ミリ秒でした。 Emoji ❤️ 👩‍💻 🇫🇷!\n\nSecond paragraph with more words to chunk."),
    None,
    Some(""),
    Some("Short one."),
];

fn ctx() -> SessionContext {
    // Fails with the fetch_models.sh hint when the model is missing.
    default_tokenizer();
    let ctx = SessionContext::new();
    register_all(
        &ctx,
        &OperatorConfig {
            models_dir: models_dir(),
            ..OperatorConfig::from_env()
        },
    );
    let schema = Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("body", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec!["d1", "d2", "d3", "d4"])),
            Arc::new(StringArray::from(BODIES.to_vec())),
        ],
    )
    .expect("batch");
    let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
    ctx.register_table("docs", Arc::new(table))
        .expect("register");
    ctx
}

async fn collect(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    match ctx.sql(sql).await {
        Ok(df) => df.collect().await.unwrap_or_else(|e| panic!("{sql}: {e}")),
        Err(e) => panic!("{sql}: {e}"),
    }
}

async fn error(ctx: &SessionContext, sql: &str) -> String {
    match ctx.sql(sql).await {
        Err(e) => e.to_string(),
        Ok(df) => match df.collect().await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("expected an error from {sql}"),
        },
    }
}

#[tokio::test]
async fn unnest_subquery_exposes_struct_fields() {
    let ctx = ctx();
    let batches = collect(
        &ctx,
        "SELECT c.chunk_index, c.text FROM (SELECT unnest(chunk_text(body, 256, 32)) AS c FROM docs)",
    )
    .await;
    let mut rows = Vec::new();
    for b in &batches {
        let idx = b.column(0).as_primitive::<Int32Type>();
        let text = b.column(1).as_string::<i32>();
        for i in 0..b.num_rows() {
            rows.push((idx.value(i), text.value(i).to_string()));
        }
    }
    // d1 fits in one chunk, d2 is NULL and d3 empty (no rows), d4 is one chunk.
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, 0);
    assert!(rows[0].1.starts_with("# Title") && rows[0].1.ends_with("to chunk."));
    assert_eq!(rows[1], (0, "Short one.".to_string()));
}

#[tokio::test]
async fn unnest_in_select_list_with_bracket_access_and_substr() {
    let ctx = ctx();
    let sql = "SELECT doc_id, c['chunk_index'] AS i, c['text'] AS text, \
               substr(body, CAST(c['start_char'] AS BIGINT) + 1, CAST(c['end_char'] - c['start_char'] AS BIGINT)) AS sub, \
               c['tokens'] AS tokens, c['start_char'] AS s \
               FROM (SELECT doc_id, body, unnest(chunk_text(body, 8, 2, 'markdown')) AS c FROM docs) ORDER BY doc_id, i";
    let batches = collect(&ctx, sql).await;
    let mut n = 0;
    let mut last_doc = String::new();
    for b in &batches {
        let doc = b.column(0).as_string::<i32>();
        let text = b.column(2).as_string::<i32>();
        let sub = b.column(3).as_string::<i32>();
        let tokens = b.column(4).as_primitive::<Int32Type>();
        let _start = b.column(5).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert_eq!(
                text.value(i),
                sub.value(i),
                "substr(body, start_char + 1, len) == text"
            );
            assert!(tokens.value(i) <= 8);
            last_doc = doc.value(i).to_string();
            n += 1;
        }
    }
    assert!(n > 4, "d1 splits into several chunks of 8 tokens");
    assert_eq!(last_doc, "d4");

    // The form from the design doc, without the subquery.
    let batches = collect(
        &ctx,
        "SELECT doc_id, unnest(chunk_text(body, 64)) AS c FROM docs",
    )
    .await;
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
}

#[tokio::test]
async fn null_text_gives_null_and_empty_text_an_empty_list() {
    let ctx = ctx();
    let batches = collect(
        &ctx,
        "SELECT doc_id, chunk_text(body, 16) AS c FROM docs ORDER BY doc_id",
    )
    .await;
    let b = &batches[0];
    let lists = b.column(1).as_list::<i32>();
    assert!(lists.is_valid(0) && !lists.value(0).is_empty());
    assert!(lists.is_null(1), "NULL text -> NULL");
    assert!(
        lists.is_valid(2) && lists.value(2).is_empty(),
        "empty text -> empty list"
    );
    // A literal text is folded to a scalar.
    let batches = collect(
        &ctx,
        "SELECT cardinality(chunk_text('one two three four five six', 2)) AS n",
    )
    .await;
    assert_eq!(
        batches[0]
            .column(0)
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .value(0),
        3
    );
}

#[tokio::test]
async fn token_count_counts_without_special_tokens() {
    let ctx = ctx();
    let batches = collect(
        &ctx,
        "SELECT token_count(body) AS a, token_count(body, 'all-MiniLM-L6-v2') AS b, \
         token_count('Hello, world!') AS c FROM docs ORDER BY doc_id",
    )
    .await;
    let b = &batches[0];
    let a = b.column(0).as_primitive::<Int32Type>();
    let m = b.column(1).as_primitive::<Int32Type>();
    let c = b.column(2).as_primitive::<Int32Type>();
    let tok = default_tokenizer();
    let body0 = BODIES[0].expect("d1 has a body");
    assert_eq!(a.value(0) as usize, tok.count(body0).expect("count"));
    assert_eq!(a.value(0), m.value(0));
    assert!(a.is_null(1), "NULL text -> NULL");
    assert_eq!(a.value(2), 0);
    assert_eq!(c.value(0), 4);
}

#[tokio::test]
async fn bad_arguments_are_errors_that_say_what_to_do() {
    let ctx = ctx();
    let cases = [
        (
            "SELECT chunk_text(body, 0) FROM docs",
            "max_tokens must be a positive integer",
        ),
        (
            "SELECT chunk_text(body, 16, 16) FROM docs",
            "must be smaller than max_tokens",
        ),
        (
            "SELECT chunk_text(body, 16, 2, 'html') FROM docs",
            "use 'recursive' (the default) or 'markdown'",
        ),
        (
            "SELECT chunk_text(body, length(doc_id)) FROM docs",
            "max_tokens must be a literal",
        ),
        (
            "SELECT chunk_text(body) FROM docs",
            "takes 2 to 4 arguments",
        ),
        (
            "SELECT chunk_text(body, 'x') FROM docs",
            "max_tokens must be an integer",
        ),
        (
            "SELECT token_count(body, doc_id) FROM docs",
            "model must be a literal",
        ),
        (
            "SELECT token_count(body, 'no-such-model') FROM docs",
            "scripts/fetch_models.sh",
        ),
    ];
    for (sql, want) in cases {
        let e = error(&ctx, sql).await;
        assert!(
            e.contains(want),
            "{sql}: error {e:?} should contain {want:?}"
        );
    }
}
