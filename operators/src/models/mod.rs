//! Models declared with `CREATE MODEL`: options, the per-job registry, and the provider
//! implementations behind `embed(...)` (and later `ai_*`).
//!
//! Owns how a `CREATE MODEL name WITH (...)` becomes a ready [`Model`]: options are read
//! with [`ModelOptions`] (unknown keys rejected), the provider is built once per job, and
//! every function that names the model shares it through the [`ModelRegistry`].
//!
//! Providers: `local` ([`local`], candle on the process-wide batch executor), `openai` and
//! `bedrock` ([`remote`], behind the shared client stack: retry and rate limit).

pub mod chat;
pub mod executor;
pub mod guardrail;
pub mod local;
pub mod local_chat;
pub mod options;
pub mod prices;
pub mod remote;
pub mod usage;

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
    /// Set when `task = 'chat'`.
    pub chat: Option<Chat>,
    /// Its prices (options over the price catalog).
    pub prices: prices::Prices,
    /// The catalog entry prices came from, when any did.
    pub price_source: Option<prices::CatalogEntry>,
}

/// A chat model ready for `ai_complete` / `ai_summarize`: the layered client and its settings.
#[derive(Clone, Debug)]
pub struct Chat {
    /// cache -> budget -> rate limit -> retry -> provider.
    pub client: Arc<dyn chat::ChatModel>,
    /// System prompt, max_tokens, temperature, max_concurrency.
    pub settings: chat::ChatSettings,
}

impl Model {
    /// The chat client, or an error naming the function that needs one.
    pub fn chat(&self, function: &'static str) -> Result<&Chat> {
        self.chat
            .as_ref()
            .ok_or_else(|| OperatorError::InvalidArgument {
                function,
                message: format!(
                    "model '{}' has task = '{}', not 'chat'; declare a chat model with \
                 CREATE MODEL ... WITH (task = 'chat', ...)",
                    self.name, self.task
                ),
            })
    }

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
    /// `SET cache.path`: the response cache of every chat model without its own
    /// `'cache.path'`.
    pub cache_path: Option<String>,
    /// `SET job.max_cost_usd`, shared by every chat model of the job.
    pub budget: Option<Arc<chat::Budget>>,
    /// `SET usage.path`: where every attempt's usage row goes.
    pub usage: Option<Arc<usage::UsageLog>>,
    /// Prices of the models that set none (or only some) of `'price.*'`.
    pub prices: Arc<prices::PriceCatalog>,
}

impl ModelContext {
    /// Models resolve under `models_dir`; no PII settings, cache or budget.
    pub fn new(models_dir: PathBuf) -> Self {
        Self {
            models_dir,
            pii: Default::default(),
            cache_path: None,
            budget: None,
            usage: None,
            prices: Arc::default(),
        }
    }
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

    /// The number of models.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// Whether no model is declared.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
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
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
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
    // The provider's model id, for the price catalog (the provider takes the option itself).
    let model_id = match provider.as_str() {
        "bedrock" => opts.peek("model_id"),
        "openai" => opts.peek("model"),
        _ => None,
    };
    let (prices, price_source) =
        prices::Prices::resolve(&mut opts, &provider, model_id.as_deref(), &ctx.prices)?;
    if task == Task::Chat {
        let chat = build_chat(name, &provider, &mut opts, prices, ctx).await?;
        opts.finish()?;
        return Ok(Model {
            name: name.to_ascii_lowercase(),
            provider,
            task,
            embedder: None,
            chat: Some(chat),
            prices,
            price_source,
        });
    }
    let observer = observer(name, &provider, "embedding", prices, ctx);
    let embedder: Arc<dyn Embedder> = match provider.as_str() {
        "local" => Arc::new(local::LocalEmbedder::load(&mut opts, ctx, observer)?),
        "openai" => remote::openai_embedder(&mut opts, observer)?,
        "bedrock" => remote::bedrock_embedder(&mut opts, observer).await?,
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
        chat: None,
        prices,
        price_source,
    })
}

/// The usage observer of a model's client stack, when the job writes usage.
fn observer(
    name: &str,
    provider: &str,
    operation: &'static str,
    prices: chat::Prices,
    ctx: &ModelContext,
) -> remote::Observer {
    ctx.usage.as_ref().map(|log| {
        Arc::new(usage::UsageObserver::new(
            log.clone(),
            usage::UsageModel {
                model: name.to_ascii_lowercase(),
                provider: provider.to_string(),
                operation,
                prices,
            },
        )) as Arc<dyn remote::stack::AttemptObserver>
    })
}

/// A chat model's client, outermost first: input guardrail -> cache -> budget -> (rate limit
/// -> retry -> provider, in the provider's client stack).
async fn build_chat(
    name: &str,
    provider: &str,
    opts: &mut ModelOptions,
    prices: prices::Prices,
    ctx: &ModelContext,
) -> Result<Chat> {
    let settings = chat::ChatSettings::from_options(opts)?;
    let cache_path = opts.take("cache.path").or_else(|| ctx.cache_path.clone());
    let observer = observer(name, provider, "chat", prices, ctx);
    let client: Arc<dyn chat::ChatModel> = match provider {
        "openai" => remote::openai_chat(opts, observer)?,
        "bedrock" => remote::bedrock_chat(opts, observer).await?,
        "local" => Arc::new(local_chat::LocalChat::load(opts, ctx, observer)?),
        other => {
            return Err(opts.error(
                "provider",
                format!("unknown provider '{other}': use 'local', 'openai' or 'bedrock'"),
            ))
        }
    };
    if ctx.budget.is_some() && !prices.is_complete() {
        return Err(opts.error(
            "price.input_per_1m",
            "SET job.max_cost_usd needs the prices of every chat model: set \
             'price.input_per_1m' and 'price.output_per_1m' (USD per million tokens)",
        ));
    }
    let client: Arc<dyn chat::ChatModel> =
        Arc::new(chat::Metered::new(name, client, prices, ctx.budget.clone()));
    let client: Arc<dyn chat::ChatModel> = match cache_path {
        None => client,
        Some(path) => {
            let location = strata_pipeline::storage::resolve(&path, &BTreeMap::new())
                .map_err(|e| opts.error("cache.path", e.to_string()))?;
            let hits = ctx.usage.clone().map(|log| {
                (
                    log,
                    usage::UsageModel {
                        model: name.to_ascii_lowercase(),
                        provider: provider.to_string(),
                        operation: "chat",
                        prices,
                    },
                )
            });
            Arc::new(chat::Cached::new(
                &name.to_ascii_lowercase(),
                client,
                location,
                hits,
            ))
        }
    };
    // Outside the cache: cache keys, usage and the endpoint only ever see the masked prompt.
    let client: Arc<dyn chat::ChatModel> =
        match guardrail::InputGuardrail::from_options(opts, &ctx.pii)? {
            Some(g) => Arc::new(guardrail::GuardedChat::new(client, g)),
            None => client,
        };
    Ok(Chat { client, settings })
}
