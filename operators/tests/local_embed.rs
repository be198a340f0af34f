//! The local provider (candle BERT on the batch executor) against sentence-transformers.
//!
//! `tests/fixtures/minilm_reference.json` holds vectors that sentence-transformers itself
//! computed for all-MiniLM-L6-v2 (how: the fixture's `how` field and
//! `scripts/make_embed_fixture.py`). Every text must come out with cosine similarity
//! >= 0.999 against its reference, including empty, unicode and texts far past the
//! 256-token `max_seq_length`.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float32Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use serde::Deserialize;
use strata_operators::models::local::{resolve_model_dir, BertEmbedding};
use strata_operators::models::{build_model, Embedder, ModelContext, ModelOptions, ModelRegistry};
use strata_operators::{register_all, OperatorConfig};

use common::models_dir;

#[derive(Deserialize)]
struct Fixture {
    dimensions: usize,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    text: String,
    tokens: usize,
    vector: Vec<f32>,
}

fn fixture() -> Fixture {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture parses")
}

fn mctx() -> ModelContext {
    let dir = models_dir();
    assert!(
        dir.join("all-MiniLM-L6-v2/model.safetensors").is_file(),
        "these tests need the all-MiniLM-L6-v2 model under {}: run scripts/fetch_models.sh",
        dir.display()
    );
    ModelContext::new(dir)
}

async fn local(name: &str, extra: &[(&str, &str)]) -> Arc<dyn Embedder> {
    let mut options = vec![("provider", "local"), ("task", "embedding")];
    options.extend_from_slice(extra);
    let opts = ModelOptions::new(
        name,
        options.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let model = build_model(name, opts, &mctx())
        .await
        .expect("local model loads");
    model.embedder("embed").expect("embedding model").clone()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_match_sentence_transformers() {
    let fx = fixture();
    assert!(fx.cases.len() >= 20, "fixture too small");
    let e = local("minilm", &[]).await;
    assert_eq!(e.dimensions(), fx.dimensions);
    assert_eq!(e.model_id(), "all-MiniLM-L6-v2");
    let texts: Vec<String> = fx.cases.iter().map(|c| c.text.clone()).collect();
    let got = e.embed(&texts).await.expect("embed");
    assert_eq!(got.len(), texts.len() * fx.dimensions);
    let mut worst = (1.0f64, String::new());
    for (case, v) in fx.cases.iter().zip(got.chunks(fx.dimensions)) {
        let c = cosine(&case.vector, v);
        if c < worst.0 {
            worst = (c, case.text.chars().take(60).collect());
        }
        // The directory has a Normalize module: unit vectors, like sentence-transformers.
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm} for {:?}", case.text);
    }
    eprintln!("lowest cosine similarity: {} ({:?})", worst.0, worst.1);
    assert!(
        worst.0 >= 0.999,
        "cosine {} < 0.999 against sentence-transformers for {:?}",
        worst.0,
        worst.1
    );
}

#[test]
fn truncates_at_sentence_bert_max_seq_length() {
    let dir = resolve_model_dir(&mctx().models_dir, "all-MiniLM-L6-v2");
    let m = BertEmbedding::load("minilm", &dir, candle_core::Device::Cpu).expect("load");
    // sentence_bert_config.json says 256; tokenizer.json says 128 and config.json 512.
    assert_eq!(m.max_seq_length(), 256);
    let fx = fixture();
    let mut long = 0;
    for case in &fx.cases {
        let ids = m.tokenize(&case.text).expect("tokenize");
        assert_eq!(
            ids.len(),
            case.tokens,
            "token count differs from sentence-transformers for {:?}",
            case.text.chars().take(60).collect::<String>()
        );
        if case.tokens == 256 {
            long += 1;
        }
    }
    assert!(
        long >= 2,
        "the fixture must hold texts longer than 256 tokens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_boundaries_keep_order_and_values() {
    let e = local("small_batches", &[("max_batch", "4"), ("max_wait_ms", "1")]).await;
    let base: Vec<String> = (0..9)
        .map(|i| {
            format!(
                "sentence number {i} about {}",
                ["cats", "tax law", "GPUs"][i % 3]
            )
        })
        .collect();
    let singles: Vec<Vec<f32>> = {
        let mut v = Vec::new();
        for t in &base {
            v.push(e.embed(std::slice::from_ref(t)).await.expect("embed one"));
        }
        v
    };
    // 1, 3, 4 (= max_batch), 5 and 9 texts: partial, full and split batches.
    for n in [1usize, 3, 4, 5, 9] {
        let texts = base[..n].to_vec();
        let got = e.embed(&texts).await.expect("embed");
        for (i, v) in got.chunks(e.dimensions()).enumerate() {
            let c = cosine(v, &singles[i]);
            assert!(
                c > 0.99999,
                "n={n} text {i}: cosine {c} vs embedding it alone"
            );
        }
    }
    // Several callers at once share the executor; each gets its own rows back in order.
    let mut joins = Vec::new();
    for k in 0..6 {
        let e = e.clone();
        let texts: Vec<String> = base.iter().cycle().skip(k).take(7).cloned().collect();
        joins.push(tokio::spawn(async move {
            (texts.clone(), e.embed(&texts).await)
        }));
    }
    for j in joins {
        let (texts, got) = j.await.expect("join");
        let got = got.expect("embed");
        for (t, v) in texts.iter().zip(got.chunks(e.dimensions())) {
            let i = base.iter().position(|b| b == t).expect("known text");
            assert!(
                cosine(v, &singles[i]) > 0.99999,
                "concurrent caller got another row's vector"
            );
        }
    }
}

fn sql_ctx(models: ModelRegistry) -> SessionContext {
    let ctx = SessionContext::new();
    let mut cfg = OperatorConfig::from_env();
    cfg.models_dir = models_dir();
    cfg.models = Arc::new(models);
    register_all(&ctx, &cfg);
    ctx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_in_sql_returns_fixed_size_vectors_and_null_for_null() {
    let opts = ModelOptions::new("minilm", [("provider".to_string(), "local".to_string())]);
    let model = build_model("minilm", opts, &mctx()).await.expect("model");
    let mut reg = ModelRegistry::default();
    reg.insert(model).expect("insert");
    let ctx = sql_ctx(reg);
    let schema = Arc::new(Schema::new(vec![Field::new("t", DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec![
            Some("the cat sat on the mat"),
            None,
            Some(""),
            Some("a cat sat on a mat"),
        ]))],
    )
    .expect("batch");
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("mem")),
    )
    .expect("register");
    let df = ctx
        .sql("SELECT embed('minilm', t) AS v, cosine_similarity(embed('minilm', t), embed('MiniLM', 'the cat sat on the mat')) AS s FROM t")
        .await
        .expect("plan");
    let field = df.schema().field(0).clone();
    assert_eq!(
        field.data_type(),
        &DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, false)), 384)
    );
    let batches = df.collect().await.expect("run");
    let b = &batches[0];
    let v = b.column(0).as_fixed_size_list();
    assert_eq!(v.len(), 4);
    assert!(v.is_valid(0) && v.is_null(1) && v.is_valid(2) && v.is_valid(3));
    assert_eq!(v.value(2).as_primitive::<Float32Type>().len(), 384);
    let s = b.column(1).as_primitive::<arrow::datatypes::Float64Type>();
    assert!(
        (s.value(0) - 1.0).abs() < 1e-5,
        "self-similarity {}",
        s.value(0)
    );
    assert!(s.is_null(1));
    assert!(s.value(3) > 0.8, "near-duplicate similarity {}", s.value(3));
    assert!(s.value(2) < s.value(3));

    let err = ctx
        .sql("SELECT embed('nope', t) FROM t")
        .await
        .expect_err("unknown model")
        .to_string();
    assert!(
        err.contains("no model named 'nope'") && err.contains("CREATE MODEL"),
        "{err}"
    );
}

#[tokio::test]
async fn bad_local_options_are_errors_naming_the_option() {
    let cases: [(&[(&str, &str)], &str, &str); 5] = [
        (
            &[("path", "no-such-model-dir")],
            "path",
            "no-such-model-dir",
        ),
        (&[("device", "tpu:0")], "device", "tpu"),
        (&[("max_batch", "0")], "max_batch", "max_batch"),
        (&[("max_wait_ms", "soon")], "max_wait_ms", "max_wait_ms"),
        (&[("batch_size", "8")], "batch_size", "batch_size"),
    ];
    for (extra, key, needle) in cases {
        let mut options = vec![("provider", "local")];
        options.extend_from_slice(extra);
        let opts = ModelOptions::new(
            "m",
            options.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let err = build_model("m", opts, &mctx())
            .await
            .expect_err("bad option");
        let msg = err.to_string();
        match &err {
            strata_operators::OperatorError::Model { key: Some(k), .. } => {
                assert_eq!(k, key, "{msg}")
            }
            other => panic!("expected a model error at '{key}', got {other:?}"),
        }
        assert!(msg.contains(needle), "{msg}");
    }
}
