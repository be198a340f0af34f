//! `provider = 'local'` embedding models: a sentence-transformers BERT-family directory run
//! with candle on the process-wide batch executor ([`super::executor`]).
//!
//! Owns loading the directory the way sentence-transformers does: `config.json` (the BERT
//! architecture), `model.safetensors`, `tokenizer.json`, `modules.json` (which modules follow
//! the transformer: pooling, normalisation), `1_Pooling/config.json` (mean, CLS or max
//! pooling) and `sentence_bert_config.json` (`max_seq_length`: inputs are truncated there,
//! not at tokenizer.json's or config.json's limits).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationParams};

use super::executor::{BatchModel, BatchPolicy, Executor};
use super::remote::retry::RetryPolicy;
use super::remote::stack::{
    CallError, ClientStack, ErrorKind, ModelIdentity, Provider, Reply, StackConfig, TokenUsage,
};
use super::remote::Observer;
use super::{Embedder, ModelContext, ModelOptions};
use crate::error::{OperatorError, Result};

/// Where to run a local model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    /// CUDA device 0 when this build has CUDA and a GPU is present, else the CPU.
    Auto,
    /// The CPU (the executor's rayon pool).
    Cpu,
    /// CUDA device N (needs the `cuda` cargo feature).
    Cuda(usize),
}

impl DeviceSpec {
    /// Parse `auto`, `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "cpu" => Some(Self::Cpu),
            "cuda" => Some(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda),
        }
    }

    /// The candle device, or why it cannot be had.
    pub fn device(&self) -> std::result::Result<Device, String> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    Device::new_cuda(0).or(Ok(Device::Cpu))
                } else {
                    Ok(Device::Cpu)
                }
            }
            Self::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(format!(
                        "cuda:{n} requested, but this strata was built without CUDA: rebuild \
                         with `cargo build --release --features cuda` on a machine with the \
                         CUDA toolkit, or use device = 'cpu'"
                    ));
                }
                Device::new_cuda(*n).map_err(|e| format!("cannot open cuda:{n}: {e}"))
            }
        }
    }
}

/// How token vectors become one sentence vector (`1_Pooling/config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the non-padding tokens.
    Mean,
    /// The first (`[CLS]`) token.
    Cls,
    /// Element-wise max over the non-padding tokens.
    Max,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// A loaded sentence-transformers BERT model.
pub struct BertEmbedding {
    id: String,
    dir: PathBuf,
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dims: usize,
    pooling: Pooling,
    normalize: bool,
    max_seq_length: usize,
    pad_id: u32,
}

impl std::fmt::Debug for BertEmbedding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BertEmbedding")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("dims", &self.dims)
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("max_seq_length", &self.max_seq_length)
            .field("device", &self.device)
            .finish()
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(model: &str, path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| OperatorError::Model {
        model: model.to_string(),
        key: Some("path".into()),
        message: format!(
            "cannot read '{}': {e} (a sentence-transformers model directory is expected; run \
             scripts/fetch_models.sh for the default models)",
            path.display()
        ),
    })?;
    serde_json::from_str(&text).map_err(|e| OperatorError::Model {
        model: model.to_string(),
        key: Some("path".into()),
        message: format!("'{}' is not valid: {e}", path.display()),
    })
}

impl BertEmbedding {
    /// Load the model directory `dir` onto `device`.
    pub fn load(alias: &str, dir: &Path, device: Device) -> Result<Self> {
        let asset_err = |what: &str, e: &dyn std::fmt::Display| OperatorError::Model {
            model: alias.to_string(),
            key: Some("path".into()),
            message: format!("cannot load {what} from '{}': {e}", dir.display()),
        };
        let config: BertConfig = read_json(alias, &dir.join("config.json"))?;

        // modules.json lists the pipeline; a directory without it is a bare transformer,
        // which sentence-transformers loads with mean pooling and no normalisation.
        let modules_path = dir.join("modules.json");
        let modules: Vec<ModuleEntry> = if modules_path.is_file() {
            read_json(alias, &modules_path)?
        } else {
            Vec::new()
        };
        let mut pooling = Pooling::Mean;
        let mut normalize = false;
        for m in &modules {
            if m.kind.ends_with(".Pooling") {
                let pc: PoolingConfig = read_json(alias, &dir.join(&m.path).join("config.json"))?;
                pooling = match (
                    pc.pooling_mode_mean_tokens,
                    pc.pooling_mode_cls_token,
                    pc.pooling_mode_max_tokens,
                    pc.pooling_mode_mean_sqrt_len_tokens,
                ) {
                    (true, false, false, false) => Pooling::Mean,
                    (false, true, false, false) => Pooling::Cls,
                    (false, false, true, false) => Pooling::Max,
                    _ => {
                        return Err(asset_err(
                            "the pooling config",
                            &"only one of mean, cls or max pooling is supported",
                        ))
                    }
                };
            } else if m.kind.ends_with(".Normalize") {
                normalize = true;
            } else if !m.kind.ends_with(".Transformer") {
                return Err(asset_err(
                    "modules.json",
                    &format!("module type '{}' is not supported", m.kind),
                ));
            }
        }
        let sbert_path = dir.join("sentence_bert_config.json");
        let max_seq_length = if sbert_path.is_file() {
            read_json::<SentenceBertConfig>(alias, &sbert_path)?.max_seq_length
        } else {
            None
        }
        .unwrap_or(config.max_position_embeddings)
        .min(config.max_position_embeddings);

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| asset_err("tokenizer.json", &e))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_seq_length,
                ..Default::default()
            }))
            .map_err(|e| asset_err("tokenizer.json", &e))?;

        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(asset_err(
                "model.safetensors",
                &"file not found (only safetensors weights are supported)",
            ));
        }
        // SAFETY: the file is memory-mapped read-only; strata never writes model files
        // while it runs.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| asset_err("model.safetensors", &e))?;
        let model = BertModel::load(vb, &config).map_err(|e| asset_err("the BERT weights", &e))?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| alias.to_string());
        Ok(Self {
            id,
            dir: dir.to_path_buf(),
            model,
            tokenizer,
            device,
            dims: config.hidden_size,
            pooling,
            normalize,
            max_seq_length,
            pad_id: config.pad_token_id as u32,
        })
    }

    /// Tokens (with `[CLS]`/`[SEP]`) of each text, truncated at `max_seq_length`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode_fast(text, true)
            .map_err(|e| OperatorError::Tokenize {
                path: self.dir.join("tokenizer.json"),
                message: e.to_string(),
            })?;
        Ok(enc.get_ids().to_vec())
    }

    /// `max_seq_length` from sentence_bert_config.json.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    fn forward_tensor(&self, seqs: &[&[u32]]) -> candle_core::Result<Vec<f32>> {
        let b = seqs.len();
        let l = seqs.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![self.pad_id; b * l];
        let mut mask = vec![0f32; b * l];
        for (i, s) in seqs.iter().enumerate() {
            ids[i * l..i * l + s.len()].copy_from_slice(s);
            mask[i * l..i * l + s.len()].fill(1.0);
        }
        let ids = Tensor::from_vec(ids, (b, l), &self.device)?;
        let type_ids = ids.zeros_like()?;
        let mask = Tensor::from_vec(mask, (b, l), &self.device)?;
        let hidden = self.model.forward(&ids, &type_ids, Some(&mask))?; // (b, l, h)
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.unsqueeze(2)?; // (b, l, 1)
                let summed = hidden.broadcast_mul(&m)?.sum(1)?; // (b, h)
                let counts = mask.sum_keepdim(1)?.clamp(1e-9f32, f32::MAX)?; // (b, 1)
                summed.broadcast_div(&counts)?
            }
            Pooling::Max => {
                // Padding positions get -inf-ish so they never win the max.
                let m = mask.unsqueeze(2)?;
                let neg = ((m.ones_like()? - &m)? * -1e9f64)?;
                hidden.broadcast_add(&neg)?.max(1)?
            }
        };
        let pooled = if self.normalize {
            let norm = pooled
                .sqr()?
                .sum_keepdim(1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norm)?
        } else {
            pooled
        };
        pooled.flatten_all()?.to_vec1::<f32>()
    }
}

impl BatchModel for BertEmbedding {
    fn id(&self) -> &str {
        &self.id
    }

    fn dimensions(&self) -> usize {
        self.dims
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        BertEmbedding::tokenize(self, text)
    }

    fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        self.forward_tensor(seqs).map_err(|e| OperatorError::Call {
            model: self.id.clone(),
            message: format!("forward pass failed: {e}"),
        })
    }
}

/// `provider = 'local'`, `task = 'embedding'`: the [`Embedder`] that sends its texts to the
/// process-wide executor, through the client stack (one attempt, no rate limit) so every
/// call is a usage row like a remote provider's.
#[derive(Debug)]
pub struct LocalEmbedder {
    stack: ClientStack<LocalEmbedProvider>,
}

/// The executor as the client stack's provider: a request is the texts of one call.
#[derive(Debug)]
pub struct LocalEmbedProvider {
    target: String,
    model: Arc<BertEmbedding>,
    policy: BatchPolicy,
    executor: Arc<Executor>,
}

#[async_trait]
impl Provider for LocalEmbedProvider {
    type Request = Vec<String>;
    type Response = Vec<f32>;

    fn target(&self) -> &str {
        &self.target
    }

    async fn send(&self, texts: &Vec<String>) -> std::result::Result<Reply<Vec<f32>>, CallError> {
        // The executor tokenizes the texts again for its batches; counting here costs about
        // 0.3% of a call (tokenization is ~4 s of ~1500 s in benches/rag_ingest.sh) and keeps
        // the executor's API to vectors.
        let mut tokens = 0u64;
        for t in texts {
            tokens += self
                .model
                .tokenize(t)
                .map_err(|e| CallError::new(ErrorKind::Client, e.to_string()))?
                .len() as u64;
        }
        let model: Arc<dyn BatchModel> = self.model.clone();
        let value = self
            .executor
            .submit(model, self.policy, texts.clone())
            .await
            .map_err(|e| CallError::new(ErrorKind::Client, e.to_string()))?;
        Ok(Reply {
            value,
            usage: TokenUsage {
                input_tokens: Some(tokens),
                ..TokenUsage::default()
            },
        })
    }
}

/// The `device` option of a local model (`auto`, `cpu`, `cuda:N`; default `auto`), opened.
pub(super) fn take_device(opts: &mut ModelOptions) -> Result<Device> {
    let spec = match opts.take("device") {
        None => DeviceSpec::Auto,
        Some(v) => DeviceSpec::parse(&v).ok_or_else(|| {
            opts.error(
                "device",
                format!("must be 'auto', 'cpu' or 'cuda:N', got '{v}'"),
            )
        })?,
    };
    spec.device().map_err(|m| opts.error("device", m))
}

/// The client stack of a local model: the same layers and usage rows as a remote one, with
/// one attempt (a failed forward pass is not transient) and no rate limit.
pub(super) fn local_stack<P: Provider>(
    alias: &str,
    model_id: String,
    provider: P,
    observer: Observer,
) -> ClientStack<P> {
    let identity = ModelIdentity {
        name: alias.to_ascii_lowercase(),
        provider: "local",
        model_id,
    };
    let config = StackConfig {
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        observer,
        ..StackConfig::default()
    };
    ClientStack::new(identity, provider, config)
}

/// Resolve a model `path` option: absolute as is; relative under the models directory,
/// else from the working directory.
pub fn resolve_model_dir(models_dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let under = models_dir.join(p);
    if !under.exists() && p.exists() {
        return p.to_path_buf();
    }
    under
}

impl LocalEmbedder {
    /// Read the local-provider options and load the model. Options: `path` (default
    /// `all-MiniLM-L6-v2`), `device`, `max_batch`, `max_wait_ms`, `threads`.
    pub fn load(opts: &mut ModelOptions, ctx: &ModelContext, observer: Observer) -> Result<Self> {
        let path = opts
            .take("path")
            .unwrap_or_else(|| crate::tokenizer::DEFAULT_TOKENIZER_MODEL.to_string());
        let dir = resolve_model_dir(&ctx.models_dir, &path);
        if !dir.join("config.json").is_file() {
            return Err(opts.error(
                "path",
                format!(
                    "'{}' is not a model directory (no config.json): run \
                     scripts/fetch_models.sh to fetch the default models into ./models, or \
                     set STRATA_MODELS",
                    dir.display()
                ),
            ));
        }
        let device = take_device(opts)?;
        let policy = BatchPolicy {
            // 16: on CPU, batches of 16 ~256-token texts ran 12% faster than 64 (smaller
            // tensors stay in cache and in the heap; benches/compare/embed.sh).
            max_batch: opts.take_positive("max_batch")?.unwrap_or(16) as usize,
            max_wait: std::time::Duration::from_millis(
                opts.take_parsed::<u64>("max_wait_ms", "a number of milliseconds")?
                    .unwrap_or(5),
            ),
        };
        let threads = opts.take_positive("threads")?.map(|n| n as usize);
        let executor = Executor::global(threads).map_err(|m| opts.error("threads", m))?;
        let model = BertEmbedding::load(opts.model(), &dir, device)?;
        let model_id = model.id.clone();
        let provider = LocalEmbedProvider {
            target: format!("local:{}", dir.display()),
            model: Arc::new(model),
            policy,
            executor,
        };
        Ok(Self {
            stack: local_stack(opts.model(), model_id, provider, observer),
        })
    }
}

#[async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.stack.identity().model_id
    }

    fn dimensions(&self) -> usize {
        self.stack.provider().model.dims
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<f32>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.stack.call(&texts.to_vec(), 0).await?.value)
    }
}
