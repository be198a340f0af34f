//! The one list of SQL functions strata adds to DataFusion.

use std::path::PathBuf;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;

use crate::udfs::{ChunkTextFunc, TokenCountFunc};

/// Settings operators need from the job.
#[derive(Clone, Debug)]
pub struct OperatorConfig {
    /// Directory that relative model paths resolve against
    /// (`$STRATA_MODELS`, else `./models`).
    pub models_dir: PathBuf,
}

impl OperatorConfig {
    /// `$STRATA_MODELS`, else `./models` in the working directory.
    pub fn from_env() -> Self {
        let models_dir = std::env::var_os("STRATA_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("models"));
        Self { models_dir }
    }
}

/// Every function strata registers. Adding a function means adding a line here.
pub fn functions(cfg: &OperatorConfig) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(ChunkTextFunc::new(&cfg.models_dir)),
        ScalarUDF::from(TokenCountFunc::new(&cfg.models_dir)),
    ]
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
