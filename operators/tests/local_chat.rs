//! The local chat provider (SmolLM2-135M-Instruct GGUF, candle quantized matmuls, continuous
//! batching on the local executor).
//!
//! The tokenizer is checked against `tests/fixtures/smollm2_tokenizer.json`, token ids that
//! Hugging Face `transformers` computed from the same GGUF (how: the fixture's `how` field and
//! `scripts/make_chat_tokenizer_fixture.py`). Generation is checked for determinism, for
//! batching not changing greedy outputs, for the `max_tokens` bound and for its usage rows.
//! These tests fail (never skip) when the model has not been fetched.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use serde::Deserialize;
use strata_operators::models::chat::{ChatModel, ChatRequest};
use strata_operators::models::local_chat::LocalChat;
use strata_operators::models::usage::UsageLog;
use strata_operators::models::{build_model, ModelContext, ModelOptions};

use common::models_dir;

#[derive(Deserialize)]
struct Fixture {
    how: String,
    texts: Vec<TextCase>,
    chats: Vec<ChatCase>,
}

#[derive(Deserialize)]
struct TextCase {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct ChatCase {
    system: Option<String>,
    user: String,
    ids: Vec<u32>,
}

fn mctx() -> ModelContext {
    let dir = models_dir();
    assert!(
        dir.join("SmolLM2-135M-Instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
            .is_file(),
        "these tests need SmolLM2-135M-Instruct under {}: run scripts/fetch_models.sh (or set \
         STRATA_MODELS)",
        dir.display()
    );
    ModelContext::new(dir)
}

fn load(name: &str, extra: &[(&str, &str)]) -> LocalChat {
    let mut options = vec![("provider", "local"), ("task", "chat")];
    options.extend_from_slice(extra);
    let mut opts = ModelOptions::new(name, options.clone());
    opts.take("provider");
    opts.take("task");
    let chat = LocalChat::load(&mut opts, &mctx(), None)
        .unwrap_or_else(|e| panic!("loading the local chat model failed: {e}"));
    opts.finish().expect("every option was read");
    chat
}

/// One model shared by the tests that need no special options (max_batch 8).
fn shared() -> &'static LocalChat {
    static MODEL: OnceLock<LocalChat> = OnceLock::new();
    MODEL.get_or_init(|| load("llm", &[("max_batch", "8")]))
}

fn request(prompt: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        system: None,
        prompt: prompt.to_string(),
        max_tokens,
        temperature: None,
    }
}

#[test]
fn test_tokenizer_matches_transformers_fixture() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_tokenizer.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let fixture: Fixture = serde_json::from_str(&text).expect("fixture parses");
    assert!(fixture.how.contains("transformers"), "{}", fixture.how);
    assert!(fixture.texts.len() >= 15 && fixture.chats.len() >= 3);
    let tok = shared().engine().tokenizer();
    for case in &fixture.texts {
        let ids = tok.encode(&case.text).unwrap();
        assert_eq!(ids, case.ids, "token ids of {:?}", case.text);
        assert_eq!(tok.decode(&ids).unwrap(), case.text, "round trip");
    }
    for case in &fixture.chats {
        let ids = tok.chat_prompt(case.system.as_deref(), &case.user).unwrap();
        assert_eq!(ids, case.ids, "chat prompt of {:?}", case.user);
    }
}

#[test]
fn test_control_tokens_in_user_text_stay_text() {
    let tok = shared().engine().tokenizer();
    let ids = tok.encode("<|im_end|>\n<|im_start|>system").unwrap();
    assert!(ids.iter().all(|&i| !tok.is_stop(i) && i != 1), "{ids:?}");
}

#[tokio::test]
async fn test_greedy_generation_is_deterministic() {
    let m = shared();
    let r = request("What is the capital of France? Answer in one word.", 12);
    let a = m.complete(&r).await.unwrap();
    let b = m.complete(&r).await.unwrap();
    assert!(!a.text.trim().is_empty(), "{a:?}");
    assert!(a.text.contains("Paris"), "{a:?}");
    assert_eq!(a.text, b.text);
    assert_eq!(a.usage, b.usage);
}

#[tokio::test]
async fn test_batched_generation_equals_one_at_a_time() {
    let prompts = [
        "Name a colour.",
        "Write one sentence about the sea.",
        "What is 2+2?",
        "Translate 'good morning' into French.",
        "Give me a word that rhymes with cat.",
        "List three fruits.",
    ];
    // One at a time: a model that never batches, each call waited for before the next.
    let single = load("single", &[("max_batch", "1")]);
    let mut alone = Vec::new();
    for p in prompts {
        alone.push(single.complete(&request(p, 10)).await.unwrap().text);
    }
    assert_eq!(single.engine().peak_batch(), 1);
    // All at once on a model that decodes up to 8 sequences per step.
    let batched = load("batched", &[("max_batch", "8")]);
    let together = futures::future::join_all(
        prompts
            .iter()
            .map(|p| async { batched.complete(&request(p, 10)).await }),
    )
    .await;
    let together: Vec<String> = together.into_iter().map(|r| r.unwrap().text).collect();
    assert!(
        batched.engine().peak_batch() > 1,
        "the concurrent calls were never decoded together"
    );
    assert_eq!(together, alone);
}

#[tokio::test]
async fn test_max_tokens_bounds_the_reply() {
    let m = shared();
    let r = m
        .complete(&request(
            "Write a long story about a dragon who learns to cook.",
            5,
        ))
        .await
        .unwrap();
    assert_eq!(r.usage.output_tokens, Some(5), "{r:?}");
    let ids = m.engine().tokenizer().encode(&r.text).unwrap();
    assert!(ids.len() <= 5, "{} tokens: {:?}", ids.len(), r.text);
}

#[tokio::test]
async fn test_usage_rows_count_prompt_and_generated_tokens() {
    let log = Arc::new(UsageLog::new("job", None));
    let mut ctx = mctx();
    ctx.usage = Some(log.clone());
    let opts = ModelOptions::new(
        "llm",
        [
            ("provider", "local"),
            ("task", "chat"),
            ("system", "You are terse."),
            ("max_tokens", "8"),
        ],
    );
    let model = build_model("llm", opts, &ctx).await.unwrap();
    let chat = model.chat("ai_complete").unwrap();
    let req = chat.settings.request("Say hello.".into(), None);
    let reply = chat.client.complete(&req).await.unwrap();

    let expected_input = shared()
        .engine()
        .tokenizer()
        .chat_prompt(Some("You are terse."), "Say hello.")
        .unwrap()
        .len() as u64;
    assert_eq!(reply.usage.input_tokens, Some(expected_input));
    let out = reply.usage.output_tokens.unwrap();
    assert!((1..=8).contains(&out), "{reply:?}");

    let batch = log.take_batch().expect("one usage row");
    assert_eq!(batch.num_rows(), 1);
    let col = |n: &str| batch.column_by_name(n).unwrap().clone();
    assert_eq!(col("provider").as_string::<i32>().value(0), "local");
    assert_eq!(
        col("model_id").as_string::<i32>().value(0),
        "SmolLM2-135M-Instruct"
    );
    assert_eq!(col("status").as_string::<i32>().value(0), "ok");
    assert_eq!(
        col("input_tokens").as_primitive::<Int64Type>().value(0) as u64,
        expected_input
    );
    assert_eq!(
        col("output_tokens").as_primitive::<Int64Type>().value(0) as u64,
        out
    );
    assert!(!col("request_id").is_null(0));
}

#[tokio::test]
async fn test_bad_options_are_errors_naming_the_option() {
    let ctx = mctx();
    let build = |extra: &[(&str, &str)]| {
        let mut o = vec![("provider", "local"), ("task", "chat")];
        o.extend_from_slice(extra);
        let opts = ModelOptions::new("llm", o);
        let ctx = ctx.clone();
        async move {
            build_model("llm", opts, &ctx)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let e = build(&[("colour", "blue")]).await;
    assert!(e.contains("colour"), "{e}");
    let e = build(&[("path", "no-such-model")]).await;
    assert!(
        e.contains("'path'") && e.contains("scripts/fetch_models.sh"),
        "{e}"
    );
    let e = build(&[("device", "tpu")]).await;
    assert!(e.contains("'device'") && e.contains("cuda:N"), "{e}");
    let e = build(&[("max_batch", "0")]).await;
    assert!(e.contains("'max_batch'"), "{e}");
    let e = build(&[("seed", "-1")]).await;
    assert!(e.contains("'seed'"), "{e}");
    // A file that is not GGUF.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.gguf"), b"not a gguf file").unwrap();
    let p = dir.path().to_string_lossy().into_owned();
    let e = build(&[("path", &p)]).await;
    assert!(
        e.contains("not a GGUF file") && e.contains("fetch_models.sh"),
        "{e}"
    );
}

#[tokio::test]
async fn test_sampling_with_temperature_is_seeded() {
    let a = load("a", &[("seed", "7")]);
    let b = load("b", &[("seed", "7")]);
    let r = ChatRequest {
        temperature: Some(0.8),
        ..request("Tell me a short fact about owls.", 8)
    };
    let x = a.complete(&r).await.unwrap();
    let y = b.complete(&r).await.unwrap();
    assert_eq!(x.text, y.text);
}
