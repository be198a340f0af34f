//! The one list of SQL functions strata adds to DataFusion.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

use crate::models::ModelRegistry;
use crate::pii::PiiConfig;
use crate::udfs::{
    AiFunc, AiKind, ChunkTextFunc, CosineSimilarityFunc, DetectPiiFunc, EmbedFunc, OnModelError,
    RedactPiiFunc, TokenCountFunc, TumbleFunc,
};

/// Settings operators need from the job.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Directory that relative model paths resolve against
    /// (`$STRATA_MODELS`, else `./models`).
    pub models_dir: PathBuf,
    /// The job's models (`CREATE MODEL`), which `embed` and the `ai_*` functions name.
    pub models: Arc<ModelRegistry>,
    /// PII settings of `detect_pii` / `redact_pii` (`SET pii.*`).
    pub pii: PiiConfig,
    /// `SET job.on_model_error`: what `ai_*` rows get when their call fails for good.
    pub on_model_error: OnModelError,
    /// `SET cache.path`: response cache of the chat models without their own.
    pub cache_path: Option<String>,
    /// `SET job.max_cost_usd`.
    pub max_cost_usd: Option<crate::models::chat::Money>,
    /// `SET usage.path`: the job's usage rows, collected per epoch.
    pub usage: Option<Arc<crate::models::usage::UsageLog>>,
    /// The price catalog: bundled, or with `--prices FILE` over it.
    pub prices: Arc<crate::models::prices::PriceCatalog>,
    /// Failed `ai_*` rows under `job.on_model_error = 'dead_letter'`.
    pub failed_calls: Option<Arc<crate::udfs::ai::FailedCalls>>,
}

impl OperatorConfig {
    /// `$STRATA_MODELS`, else `./models` in the working directory.
    pub fn from_env() -> Self {
        let models_dir = std::env::var_os("STRATA_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("models"));
        Self {
            models_dir,
            models: Arc::default(),
            pii: PiiConfig::default(),
            on_model_error: OnModelError::default(),
            cache_path: None,
            max_cost_usd: None,
            usage: None,
            prices: Arc::default(),
            failed_calls: None,
        }
    }
}

/// Every function strata registers. Adding a function means adding a line here.
pub fn functions(cfg: &OperatorConfig) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(ChunkTextFunc::new(&cfg.models_dir)),
        ScalarUDF::from(TokenCountFunc::new(&cfg.models_dir)),
        EmbedFunc::udf(Arc::clone(&cfg.models)),
        AiFunc::udf(
            AiKind::Complete,
            Arc::clone(&cfg.models),
            cfg.on_model_error,
            cfg.failed_calls.clone(),
        ),
        AiFunc::udf(
            AiKind::Summarize,
            Arc::clone(&cfg.models),
            cfg.on_model_error,
            cfg.failed_calls.clone(),
        ),
        ScalarUDF::from(CosineSimilarityFunc::default()),
        ScalarUDF::from(DetectPiiFunc::new(&cfg.pii)),
        ScalarUDF::from(RedactPiiFunc::new(&cfg.pii)),
        ScalarUDF::from(TumbleFunc::new(false)),
        ScalarUDF::from(TumbleFunc::new(true)),
    ]
}

/// The tenant-carrying variant of the model-calling function `name` (`embed`, `ai_complete`,
/// `ai_summarize`), which takes the row's tenant as its last argument so the usage rows of the
/// row's calls name it (`SET job.tenant_column`). `None` for every other function. The
/// planner rewrites calls into these after the query is planned; they are never registered.
pub fn tenant_variant(name: &str, cfg: &OperatorConfig) -> Option<ScalarUDF> {
    let models = Arc::clone(&cfg.models);
    match name {
        crate::udfs::embed::NAME => Some(EmbedFunc::tenant_udf(models)),
        "ai_complete" => Some(AiFunc::tenant_udf(
            AiKind::Complete,
            models,
            cfg.on_model_error,
            cfg.failed_calls.clone(),
        )),
        "ai_summarize" => Some(AiFunc::tenant_udf(
            AiKind::Summarize,
            models,
            cfg.on_model_error,
            cfg.failed_calls.clone(),
        )),
        _ => None,
    }
}

/// The dry-run stand-in of the model-calling function `name` (see
/// [`crate::udfs::estimate`]), recording into `estimates`; `None` for every other function.
pub fn estimate_variant(
    name: &str,
    cfg: &OperatorConfig,
    estimates: &Arc<crate::udfs::estimate::Estimates>,
) -> Option<ScalarUDF> {
    use crate::udfs::estimate::EstimateFunc;
    let kind = match name {
        crate::udfs::embed::NAME => None,
        "ai_complete" => Some(AiKind::Complete),
        "ai_summarize" => Some(AiKind::Summarize),
        _ => return None,
    };
    Some(ScalarUDF::from(EstimateFunc::new(
        kind,
        Arc::clone(&cfg.models),
        Arc::clone(estimates),
    )))
}

/// Register every function with a session.
pub fn register_all(ctx: &SessionContext, cfg: &OperatorConfig) {
    for f in functions(cfg) {
        ctx.register_udf(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_no_duplicate_names() {
        let cfg = OperatorConfig::from_env();
        let mut names: Vec<String> = functions(&cfg)
            .iter()
            .flat_map(|f| {
                let mut v = vec![f.name().to_string()];
                v.extend(f.aliases().iter().cloned());
                v
            })
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(n, names.len(), "duplicate function names");
    }
}
