//! Models declared with `CREATE MODEL`: options, the per-job registry, and the provider
//! implementations behind `embed(...)` (and later `ai_*`).
//!
//! Owns how a `CREATE MODEL name WITH (...)` becomes a ready [`Model`]: options are read
//! with [`ModelOptions`] (unknown keys rejected), the provider is built once per job, and
//! every function that names the model shares it through the [`ModelRegistry`].
//!
//! Providers: `local` ([`local`], candle on the process-wide batch executor), `openai` and
//! `bedrock` ([`remote`], behind the shared client stack: retry and rate limit).

pub mod executor;
pub mod guardrail;
pub mod local;
pub mod options;
pub mod remote;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{OperatorError, Result};
pub use options::ModelOptions;

/// What a model is used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// `embed(model, text)`.
    Embedding,
    /// `ai_complete`, `ai_summarize`.
    Chat,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::Embedding => "embedding",
            Task::Chat => "chat",
        })
    }
}

/// Turns texts into vectors. Implemented by every embedding provider.
#[async_trait]
pub trait Embedder: Send + Sync + fmt::Debug {
    /// The provider's model id (`amazon.titan-embed-text-v2:0`, a local directory name, ...),
    /// written next to the vectors as `embedding_model`.
    fn model_id(&self) -> &str;
    /// Length of every vector.
    fn dimensions(&self) -> usize;
    /// Embed `texts`: `texts.len() * dimensions()` values, one vector after the other.
    async fn embed(&self, texts: &[String]) -> Result<Vec<f32>>;
}

/// A declared model, ready to serve calls.
#[derive(Clone, Debug)]
pub struct Model {
    /// The alias from `CREATE MODEL <name>` (lower-cased).
    pub name: String,
    /// `provider = '...'`.
    pub provider: String,
    /// What it does.
    pub task: Task,
    /// Set when `task = 'embedding'`.
    pub embedder: Option<Arc<dyn Embedder>>,
}

impl Model {
    /// The embedder, or an error naming the function that needs one.
    pub fn embedder(&self, function: &'static str) -> Result<&Arc<dyn Embedder>> {
        self.embedder
            .as_ref()
            .ok_or_else(|| OperatorError::InvalidArgument {
                function,
                message: format!(
                    "model '{}' has task = '{}', not 'embedding'; declare an embedding model \
                     with CREATE MODEL ... WITH (task = 'embedding', ...)",
                    self.name, self.task
                ),
            })
    }
}

/// Everything model construction needs from the job.
#[derive(Clone, Debug)]
pub struct ModelContext {
    /// Relative model paths resolve here (`$STRATA_MODELS`, else `./models`).
    pub models_dir: PathBuf,
    /// The job's PII settings (`SET pii.*`), for `redact_input`.
    pub pii: crate::pii::PiiConfig,
}

/// The models of one job, by alias.
#[derive(Clone, Debug, Default)]
pub struct ModelRegistry {
    models: BTreeMap<String, Arc<Model>>,
}

impl ModelRegistry {
    /// Add a model; its name must be new.
    pub fn insert(&mut self, model: Model) -> Result<()> {
        let key = model.name.to_ascii_lowercase();
        if self.models.contains_key(&key) {
            return Err(OperatorError::Model {
                model: model.name,
                key: None,
                message: "is declared twice".into(),
            });
        }
        self.models.insert(key, Arc::new(model));
        Ok(())
    }

    /// The model called `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.get(&name.to_ascii_lowercase())
    }

    /// Look a model up for `function`, with an error listing the declared ones.
    pub fn lookup(&self, function: &'static str, name: &str) -> Result<&Arc<Model>> {
        self.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.models.keys().map(String::as_str).collect();
            OperatorError::InvalidArgument {
                function,
                message: format!(
                    "no model named '{name}' (declared: {}); declare it with \
                     CREATE MODEL {name} WITH (provider = 'local', path = 'all-MiniLM-L6-v2')",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ),
            }
        })
    }

    /// Every model, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.models.values()
    }
}

/// Build the model `CREATE MODEL name WITH (options)` declares. Every option is read; an
/// unknown one is an error naming it.
pub async fn build_model(name: &str, options: ModelOptions, ctx: &ModelContext) -> Result<Model> {
    let mut opts = options;
    let provider = opts.require("provider", "one of 'local', 'openai', 'bedrock'")?;
    let task = match opts.take("task").as_deref() {
        None | Some("embedding") => Task::Embedding,
        Some("chat") => Task::Chat,
        Some(other) => {
            return Err(opts.error(
                "task",
                format!("unknown task '{other}': use 'embedding' or 'chat'"),
            ))
        }
    };
    if task == Task::Chat {
        return Err(opts.error(
            "task",
            "chat models (ai_complete, ai_summarize) are not available in this build yet; \
             task = 'embedding' is",
        ));
    }
    let embedder: Arc<dyn Embedder> = match provider.as_str() {
        "local" => Arc::new(local::LocalEmbedder::load(&mut opts, ctx)?),
        "openai" => remote::openai_embedder(&mut opts)?,
        "bedrock" => remote::bedrock_embedder(&mut opts).await?,
        other => {
            return Err(opts.error(
                "provider",
                format!("unknown provider '{other}': use 'local', 'openai' or 'bedrock'"),
            ))
        }
    };
    let embedder: Arc<dyn Embedder> =
        match guardrail::InputGuardrail::from_options(&mut opts, &ctx.pii)? {
            Some(g) => Arc::new(guardrail::GuardedEmbedder::new(embedder, g)),
            None => embedder,
        };
    opts.finish()?;
    Ok(Model {
        name: name.to_ascii_lowercase(),
        provider,
        task,
        embedder: Some(embedder),
    })
}
