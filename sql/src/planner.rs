//! Statements -> a runnable [`strata_pipeline::Job`].
//!
//! Validates everything before a byte is read: settings, connectors and their
//! options, declared column types, each query (names, functions, types) and how
//! its output fits the target table. Errors point at the statement part.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{cast, col, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use sqlparser::ast::ColumnOption;
use strata_connectors::{connector, ConnectorContext, ConnectorError, TableDecl};
use strata_operators::models::{build_model, ModelContext, ModelOptions, ModelRegistry};
use strata_operators::{OperatorConfig, OperatorError};
use strata_pipeline::checkpoint::Checkpoint;
use strata_pipeline::{EpochLimits, EpochTable, InsertBinding, Job, SourceBinding};

use crate::error::{Pos, Result, SqlError};
use crate::parser::{parse_job, InsertDef, ModelDef, Statement, TableDef};
use crate::types::{arrow_type, fits};

/// How to plan a job.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// `--var` values.
    pub vars: BTreeMap<String, String>,
    /// `--checkpoint` URL; default `./.strata/<job>/`.
    pub checkpoint: Option<String>,
    /// Show a progress bar on a terminal.
    pub progress_bar: bool,
    /// Operator settings (models directory).
    pub operators: OperatorConfig,
    /// Prepare the cost estimate of `explain` ([`PlannedJob::estimate`]).
    pub estimate: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            vars: BTreeMap::new(),
            checkpoint: None,
            progress_bar: false,
            operators: OperatorConfig::from_env(),
            estimate: false,
        }
    }
}

/// Settings a job may `SET`, with their meaning (shown when a key is unknown).
const SETTINGS: &[(&str, &str)] = &[
    (
        "job.name",
        "name of the job: checkpoint folder, file names, metrics",
    ),
    ("epoch.max_rows", "records per epoch (default 100000)"),
    ("epoch.max_bytes", "input bytes per epoch (default 128MB)"),
    (
        "epoch.max_ms",
        "longest epoch of a streaming source in milliseconds (default 5000)",
    ),
    (
        "pii.hash_key_env",
        "environment variable holding the key of redact_pii(..., 'hash')",
    ),
    ("pii.min_score", "drop PII detections scoring below this, 0 to 1 (default 0.5)"),
    (
        "cache.path",
        "response cache of the chat models (local folder or s3:// URL); reruns pay nothing for \
         rows already answered",
    ),
    (
        "job.max_cost_usd",
        "stop before the chat models' spend could pass this many USD (needs 'price.*' on the models)",
    ),
    (
        "usage.path",
        "write one usage row per model call attempt as Parquet under dt=YYYY-MM-DD/hour=HH/ (local folder or s3:// URL)",
    ),
    ("job.feature", "the feature name written in every usage row"),
    (
        "window.allowed_lateness",
        "how long past its end a window waits for late rows before it is emitted, e.g. '5 minutes' (default 0)",
    ),
    (
        "job.tenant_column",
        "source column whose value is the tenant of the usage rows of the calls made for that row",
    ),
    (
        "job.on_model_error",
        "what a row gets when its ai_* call fails after the retries: 'fail' (default), 'null', or 'dead_letter' (NULL, and the text and error to the source's dead letter)",
    ),
    (
        "pii.ner",
        "NAME/ADDRESS model for the PII functions (default false; true is not available yet)",
    ),
];

/// The PII settings (`SET pii.*`) over `base`; a bad value is a plan error at its `SET`.
fn pii_config(
    file: &str,
    settings: &BTreeMap<String, (String, Pos)>,
    base: &strata_operators::pii::PiiConfig,
) -> Result<strata_operators::pii::PiiConfig> {
    let mut cfg = base.clone();
    if let Some((v, pos)) = settings.get("pii.hash_key_env") {
        cfg.hash_key_env = Some(v.trim().to_string());
        check_pii(file, *pos, &cfg)?;
    }
    if let Some((v, pos)) = settings.get("pii.min_score") {
        cfg.min_score = v.trim().parse::<f64>().map_err(|_| {
            pos.error(
                file,
                format!("pii.min_score must be a number between 0 and 1, got '{v}'"),
            )
        })?;
        check_pii(file, *pos, &cfg)?;
    }
    if let Some((v, pos)) = settings.get("pii.ner") {
        cfg.ner = match v.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "1" => true,
            "false" | "off" | "0" => false,
            _ => return Err(pos.error(file, format!("pii.ner must be true or false, got '{v}'"))),
        };
        check_pii(file, *pos, &cfg)?;
    }
    Ok(cfg)
}

/// `SET cache.path`, `job.max_cost_usd` and `job.on_model_error`; a bad value is a plan
/// error at its `SET`.
fn model_settings(
    file: &str,
    settings: &BTreeMap<String, (String, Pos)>,
    operators: &mut OperatorConfig,
) -> Result<()> {
    if let Some((v, pos)) = settings.get("cache.path") {
        if v.trim().is_empty() {
            return Err(pos.error(file, "cache.path must not be empty"));
        }
        operators.cache_path = Some(v.trim().to_string());
    }
    if let Some((v, pos)) = settings.get("job.max_cost_usd") {
        operators.max_cost_usd = Some(strata_operators::models::chat::Money::parse(v).ok_or_else(|| {
            pos.error(file, format!("job.max_cost_usd must be a non-negative amount in USD like 12.50, got '{v}'"))
        })?);
    }
    if let Some((v, pos)) = settings.get("job.on_model_error") {
        operators.on_model_error = v
            .parse()
            .map_err(|e: String| pos.error(file, format!("job.on_model_error: {e}")))?;
        if operators.on_model_error == strata_operators::udfs::OnModelError::DeadLetter {
            operators.failed_calls = Some(Arc::default());
        }
    }
    Ok(())
}

fn check_pii(file: &str, pos: Pos, cfg: &strata_operators::pii::PiiConfig) -> Result<()> {
    cfg.validate().map_err(|e| pos.error(file, e.to_string()))
}

/// A source or sink as shown by `explain`.
#[derive(Clone, Debug)]
pub struct TableInfo {
    /// Table name.
    pub name: String,
    /// Connector name.
    pub connector: String,
    /// Options with secrets masked.
    pub options: Vec<(String, String)>,
    /// Schema.
    pub schema: SchemaRef,
}

/// What `explain` prints.
#[derive(Clone, Debug)]
pub struct Explain {
    /// Job name.
    pub job: String,
    /// Checkpoint URL.
    pub checkpoint: String,
    /// Sources.
    pub sources: Vec<TableInfo>,
    /// Sinks.
    pub sinks: Vec<TableInfo>,
    /// Declared models: `name: provider, task, model id, dimensions`.
    pub models: Vec<String>,
    /// strata functions the queries call.
    pub functions: Vec<String>,
    /// Per insert: target and optimized logical plan.
    pub plans: Vec<(String, String)>,
}

impl std::fmt::Display for Explain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "job: {}", self.job)?;
        writeln!(f, "checkpoint: {}", self.checkpoint)?;
        for (title, tables) in [("sources", &self.sources), ("sinks", &self.sinks)] {
            writeln!(f, "{title}:")?;
            for t in tables {
                let opts: Vec<String> = t
                    .options
                    .iter()
                    .map(|(k, v)| format!("{k} = '{v}'"))
                    .collect();
                writeln!(f, "  {} ({}): {}", t.name, t.connector, opts.join(", "))?;
                let cols: Vec<String> = t
                    .schema
                    .fields()
                    .iter()
                    .map(|c| format!("{} {}", c.name(), c.data_type()))
                    .collect();
                writeln!(f, "    columns: {}", cols.join(", "))?;
            }
        }
        if !self.models.is_empty() {
            writeln!(f, "models:")?;
            for m in &self.models {
                writeln!(f, "  {m}")?;
            }
        }
        writeln!(
            f,
            "functions: {}",
            if self.functions.is_empty() {
                "(none)".to_string()
            } else {
                self.functions.join(", ")
            }
        )?;
        for (target, plan) in &self.plans {
            writeln!(f, "plan for INSERT INTO {target}:")?;
            for line in plan.lines() {
                writeln!(f, "  {line}")?;
            }
        }
        Ok(())
    }
}

/// A planned job and its description.
pub struct PlannedJob {
    /// Ready to run.
    pub job: Job,
    /// For `explain`.
    pub explain: Explain,
    /// With [`PlanOptions::estimate`], for a bounded job that calls models: the plans to
    /// dry-run ([`strata_pipeline::dry_run`]) and where their stand-ins record.
    pub estimate: Option<CostEstimate>,
}

/// What `strata explain` needs to estimate a bounded job's model calls.
pub struct CostEstimate {
    /// The job's plans with every model call replaced by a dry-run stand-in.
    pub plans: Vec<LogicalPlan>,
    /// Filled by the stand-ins during the dry run.
    pub estimates: Arc<strata_operators::udfs::estimate::Estimates>,
}

/// Read, substitute and plan a job file.
pub async fn plan_file(path: &Path, opts: &PlanOptions) -> Result<PlannedJob> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SqlError::Read {
        file: file.clone(),
        source,
    })?;
    let default_name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "job".into());
    plan_text(&file, &text, &default_name, opts).await
}

/// Operator settings for a `strata query` script: its `CREATE MODEL` statements built into
/// `operators.models`, and the query text that follows them.
pub async fn plan_query_script(
    file: &str,
    text: &str,
    operators: &OperatorConfig,
) -> Result<(OperatorConfig, String)> {
    let (defs, query) = crate::parser::parse_query_script(file, text)?;
    let mut operators = operators.clone();
    operators.models = Arc::new(build_models(file, &defs, &operators).await?);
    Ok((operators, query))
}

/// Build every `CREATE MODEL` of the job (loading local weights, resolving remote clients).
/// A bad option, an unknown provider or a model directory that cannot load is a plan error
/// at the option (or the statement) that caused it.
async fn build_models(
    file: &str,
    defs: &[ModelDef],
    operators: &OperatorConfig,
) -> Result<ModelRegistry> {
    let mctx = ModelContext {
        models_dir: operators.models_dir.clone(),
        pii: operators.pii.clone(),
        cache_path: operators.cache_path.clone(),
        budget: operators
            .max_cost_usd
            .map(|limit| Arc::new(strata_operators::models::chat::Budget::new(limit))),
        usage: operators.usage.clone(),
        prices: operators.prices.clone(),
    };
    let mut registry = ModelRegistry::default();
    for m in defs {
        let options = ModelOptions::new(
            &m.name,
            m.options.iter().map(|(k, v)| (k.clone(), v.value.clone())),
        );
        let model = build_model(&m.name, options, &mctx).await.map_err(|e| {
            let at = match &e {
                OperatorError::Model { key: Some(k), .. } => m
                    .options
                    .position(k)
                    .map(|(line, column)| Pos { line, column })
                    .unwrap_or(m.pos),
                _ => m.pos,
            };
            at.error(file, e.to_string())
        })?;
        tracing::info!(model = %m.name, provider = %model.provider, task = %model.task, "model ready");
        registry
            .insert(model)
            .map_err(|e| m.pos.error(file, e.to_string()))?;
    }
    Ok(registry)
}

fn connector_err(file: &str, decl: &TableDef, e: ConnectorError) -> SqlError {
    let at = |key: &str| {
        decl.options
            .position(key)
            .map(|(line, column)| Pos { line, column })
            .unwrap_or(decl.with_pos)
    };
    match &e {
        ConnectorError::UnknownOption { option, .. }
        | ConnectorError::InvalidOption { option, .. } => {
            at(option).error(file, format!("table '{}': {e}", decl.name))
        }
        ConnectorError::MissingOption { .. } => decl
            .with_pos
            .error(file, format!("table '{}': {e}", decl.name)),
        // Unreachable storage, I/O and the like: the job may be right and the
        // world wrong, so this is a runtime failure (exit 1), not a plan error.
        ConnectorError::Pipeline(_) => SqlError::Connect {
            table: decl.name.clone(),
            source: e,
        },
        _ => decl.pos.error(file, format!("table '{}': {e}", decl.name)),
    }
}

fn df_err(file: &str, at: Pos, e: DataFusionError) -> SqlError {
    let msg = e.to_string();
    let pos = e
        .diagnostic()
        .and_then(|d| d.span)
        .filter(|s| s.start.line > 0)
        .map(|s| Pos {
            line: s.start.line,
            column: s.start.column,
        })
        .or_else(|| parser_error_position(&msg))
        .unwrap_or(at);
    let msg = msg
        .strip_prefix("Error during planning: ")
        .unwrap_or(&msg)
        .to_string();
    let hint = if msg.contains("No field named") {
        " (check the column name against the source's declared columns)"
    } else if msg.contains("Invalid function")
        || msg.contains("not found") && msg.contains("function")
    {
        " (see the README for strata's functions)"
    } else {
        ""
    };
    pos.error(file, format!("{msg}{hint}"))
}

/// sqlparser reports positions only in its message ("... at Line: 9, Column: 12");
/// the query text is padded, so they are positions in the job file.
fn parser_error_position(msg: &str) -> Option<Pos> {
    let i = msg.rfind("Line: ")?;
    let rest = &msg[i + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let column: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some(Pos {
        line: line.trim().parse().ok()?,
        column: column.parse().ok()?,
    })
}

fn declared_schema(file: &str, t: &TableDef) -> Result<Option<SchemaRef>> {
    let Some(cols) = &t.columns else {
        return Ok(None);
    };
    let mut fields = Vec::with_capacity(cols.len());
    let mut seen = BTreeSet::new();
    for (c, pos) in cols {
        if !seen.insert(c.name.value.to_ascii_lowercase()) {
            return Err(pos.error(
                file,
                format!(
                    "column '{}' is declared twice in table '{}'",
                    c.name.value, t.name
                ),
            ));
        }
        let dt = arrow_type(&c.data_type.to_string())
            .map_err(|m| pos.error(file, format!("column '{}': {m}", c.name.value)))?;
        let not_null = c
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::NotNull));
        fields.push(Field::new(&c.name.value, dt, !not_null));
    }
    if let Some(wm) = &t.watermark {
        if !fields.iter().any(|f| f.name() == &wm.column) {
            return Err(wm.pos.error(
                file,
                format!(
                    "WATERMARK FOR '{}': no such column in table '{}'",
                    wm.column, t.name
                ),
            ));
        }
    }
    Ok(Some(Arc::new(Schema::new(fields))))
}

/// Plan a job from its text. `default_name` is used when the job does not
/// `SET job.name`.
pub async fn plan_text(
    file: &str,
    text: &str,
    default_name: &str,
    opts: &PlanOptions,
) -> Result<PlannedJob> {
    let text = crate::vars::substitute(file, text, &opts.vars)?;
    let statements = parse_job(file, &text)?;

    let mut settings: BTreeMap<String, (String, Pos)> = BTreeMap::new();
    let mut tables: Vec<TableDef> = Vec::new();
    let mut inserts: Vec<InsertDef> = Vec::new();
    let mut model_defs: Vec<ModelDef> = Vec::new();
    for st in statements {
        match st {
            Statement::Set(s) => {
                if !SETTINGS.iter().any(|(k, _)| *k == s.key) {
                    let known: Vec<String> =
                        SETTINGS.iter().map(|(k, d)| format!("{k} ({d})")).collect();
                    return Err(s.pos.error(
                        file,
                        format!(
                            "unknown setting '{}'; known settings: {}",
                            s.key,
                            known.join("; ")
                        ),
                    ));
                }
                settings.insert(s.key, (s.value, s.pos));
            }
            Statement::CreateTable(t) => {
                if tables.iter().any(|x| x.name.eq_ignore_ascii_case(&t.name)) {
                    return Err(t
                        .pos
                        .error(file, format!("table '{}' is declared twice", t.name)));
                }
                tables.push(t)
            }
            Statement::CreateModel(m) => {
                if model_defs
                    .iter()
                    .any(|x| x.name.eq_ignore_ascii_case(&m.name))
                {
                    return Err(m
                        .pos
                        .error(file, format!("model '{}' is declared twice", m.name)));
                }
                model_defs.push(m)
            }
            Statement::Insert(i) => inserts.push(i),
        }
    }
    if inserts.is_empty() {
        return Err(Pos { line: 1, column: 1 }.error(
            file,
            "the job has no INSERT INTO statement: nothing would be written",
        ));
    }

    let setting_num = |key: &str, default: u64| -> Result<u64> {
        match settings.get(key) {
            None => Ok(default),
            Some((v, pos)) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    pos.error(file, format!("{key} must be a positive integer, got '{v}'"))
                }),
        }
    };
    let job_name = settings
        .get("job.name")
        .map(|(v, _)| v.clone())
        .unwrap_or_else(|| default_name.to_string());
    if let Some((v, pos)) = settings.get("job.name") {
        if v.is_empty()
            || !v
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(pos.error(file, format!("job.name '{v}' must be non-empty and use only letters, digits, '-', '_' and '.'")));
        }
    }
    let max_bytes = match settings.get("epoch.max_bytes") {
        None => 128 << 20,
        Some((v, pos)) => strata_connectors::options::parse_bytes(v)
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                pos.error(
                    file,
                    format!("epoch.max_bytes must be a byte size such as 64MB, got '{v}'"),
                )
            })?,
    };
    let limits = EpochLimits {
        max_rows: setting_num("epoch.max_rows", 100_000)? as usize,
        max_bytes: max_bytes as usize,
        max_duration: Duration::from_millis(setting_num("epoch.max_ms", 5_000)?),
    };

    let checkpoint_url = opts
        .checkpoint
        .clone()
        .unwrap_or_else(|| format!(".strata/{job_name}"));
    let checkpoint_loc = strata_pipeline::storage::resolve(&checkpoint_url, &BTreeMap::new())?;
    let staging_dir: PathBuf = match &checkpoint_loc.local_path {
        Some(p) => p.join("staging"),
        None => std::path::absolute(format!(".strata/{job_name}/staging"))
            .unwrap_or_else(|_| PathBuf::from(format!(".strata/{job_name}/staging"))),
    };
    let cctx = ConnectorContext {
        job_name: job_name.clone(),
        staging_dir,
    };

    for ins in &inserts {
        if !tables
            .iter()
            .any(|t| t.name.eq_ignore_ascii_case(&ins.table))
        {
            let known: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
            return Err(ins.pos.error(
                file,
                format!(
                    "INSERT INTO '{}': no such table (declared: {}); declare it with CREATE TABLE {} WITH (connector = 'parquet', path = '...')",
                    ins.table,
                    if known.is_empty() { "none".to_string() } else { known.join(", ") },
                    ins.table
                ),
            ));
        }
    }
    let targets: BTreeSet<String> = inserts
        .iter()
        .map(|i| i.table.to_ascii_lowercase())
        .collect();
    let partitions = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let config = SessionConfig::new()
        .with_target_partitions(partitions)
        .with_information_schema(false)
        .set_bool("datafusion.sql_parser.collect_spans", true);
    let ctx = SessionContext::new_with_config(config);
    let mut operators = opts.operators.clone();
    operators.pii = pii_config(file, &settings, &operators.pii)?;
    model_settings(file, &settings, &mut operators)?;
    let usage_path = settings.get("usage.path").cloned();
    match (&usage_path, settings.get("job.feature")) {
        (Some(_), feature) => {
            operators.usage = Some(Arc::new(strata_operators::models::usage::UsageLog::new(
                &job_name,
                feature.map(|(v, _)| v.trim().to_string()),
            )));
        }
        (None, Some((_, pos))) => {
            return Err(pos.error(
                file,
                "job.feature is written in the usage rows: set usage.path too (SET usage.path = 's3://bucket/usage/')",
            ))
        }
        (None, None) => {}
    }
    let lateness = match settings.get("window.allowed_lateness") {
        None => 0,
        Some((v, pos)) => parse_duration_micros(v).ok_or_else(|| {
            pos.error(file, format!("window.allowed_lateness must be a duration like '5 minutes', '30 seconds' or '0', got '{v}'"))
        })?,
    };
    let tenant_column = match (&usage_path, settings.get("job.tenant_column")) {
        (_, None) => None,
        (Some(_), Some((v, pos))) if !v.trim().is_empty() => Some((v.trim().to_string(), *pos)),
        (Some(_), Some((_, pos))) => {
            return Err(pos.error(file, "job.tenant_column must name a column, e.g. SET job.tenant_column = 'tenant'"))
        }
        (None, Some((_, pos))) => {
            return Err(pos.error(
                file,
                "job.tenant_column is written in the usage rows: set usage.path too (SET usage.path = 's3://bucket/usage/')",
            ))
        }
    };
    operators.models = Arc::new(build_models(file, &model_defs, &operators).await?);
    strata_operators::register_all(&ctx, &operators);

    let mask = |c: &dyn strata_connectors::Connector, t: &TableDef| -> Vec<(String, String)> {
        t.options
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    if c.is_secret_option(k) {
                        "****".to_string()
                    } else {
                        v.value.clone()
                    },
                )
            })
            .collect()
    };
    let find_connector = |t: &TableDef| -> Result<Arc<dyn strata_connectors::Connector>> {
        let name = t.options.get("connector").ok_or_else(|| {
            t.with_pos.error(file, format!("table '{}' has no connector: add connector = 'file', 'parquet', ... to its WITH options", t.name))
        })?;
        connector(name).ok_or_else(|| {
            let (line, column) = t
                .options
                .position("connector")
                .unwrap_or((t.with_pos.line, t.with_pos.column));
            let known: Vec<&str> = strata_connectors::connectors()
                .iter()
                .map(|c| c.name())
                .collect();
            Pos { line, column }.error(
                file,
                format!(
                    "unknown connector '{name}' for table '{}'; available: {}",
                    t.name,
                    known.join(", ")
                ),
            )
        })
    };

    // Sources.
    let mut sources = Vec::new();
    let mut source_infos = Vec::new();
    let mut bounded: BTreeMap<String, bool> = BTreeMap::new();
    for t in tables
        .iter()
        .filter(|t| !targets.contains(&t.name.to_ascii_lowercase()))
    {
        let c = find_connector(t)?;
        if !c.is_source() {
            return Err(t.pos.error(file, format!("table '{}' uses connector '{}', which can only be written to; INSERT INTO it or use a source connector", t.name, c.name())));
        }
        let decl = TableDecl {
            name: t.name.clone(),
            schema: declared_schema(file, t)?,
            options: t.options.clone(),
        };
        let parts = c
            .create_source(&decl, &cctx)
            .await
            .map_err(|e| connector_err(file, t, e))?;
        let schema = parts.source.schema();
        bounded.insert(t.name.to_ascii_lowercase(), parts.source.is_bounded());
        let table = Arc::new(EpochTable::new(schema.clone(), partitions));
        ctx.register_table(t.name.as_str(), table.clone())
            .map_err(|e| df_err(file, t.pos, e))?;
        source_infos.push(TableInfo {
            name: t.name.clone(),
            connector: c.name().to_string(),
            options: mask(c.as_ref(), t),
            schema,
        });
        sources.push(SourceBinding {
            name: t.name.clone(),
            source: parts.source,
            table,
            bad_data: parts.bad_data,
            dead_letter: parts.dead_letter,
        });
    }

    // Inserts.
    // The usage rows of the epoch, readable as the table `usage` by inserts that run after
    // the others (windows over the job's own spend).
    let usage_table = operators.usage.as_ref().map(|_| {
        Arc::new(EpochTable::new(
            strata_operators::models::usage::UsageLog::schema(),
            partitions,
        ))
    });
    if let Some(t) = &usage_table {
        ctx.register_table("usage", t.clone())
            .map_err(|e| df_err(file, Pos { line: 1, column: 1 }, e))?;
    }
    let mut reads_usage_any = false;
    let mut bindings = Vec::new();
    let mut sink_infos: Vec<TableInfo> = Vec::new();
    let mut sinks_by_name: BTreeMap<String, Arc<dyn strata_pipeline::Sink>> = BTreeMap::new();
    let mut plans = Vec::new();
    let mut used_tables = BTreeSet::new();
    let mut estimate_plans = match opts.estimate && !operators.models.is_empty() {
        false => None,
        true => {
            let tokenizer = strata_operators::tokenizer::tokenizer_for(&operators.models_dir, None)
                .map_err(|e| SqlError::Plan {
                    file: file.to_string(),
                    line: 1,
                    column: 1,
                    message: format!(
                        "the cost estimate counts tokens with the default tokenizer: {e}"
                    ),
                })?;
            Some((
                Arc::new(strata_operators::udfs::estimate::Estimates::new(tokenizer)),
                Vec::new(),
            ))
        }
    };
    let mut functions = BTreeSet::new();
    let strata_functions: BTreeSet<String> = strata_operators::functions(&opts.operators)
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    for ins in &inserts {
        let t = tables.iter().find(|t| t.name.eq_ignore_ascii_case(&ins.table)).ok_or_else(|| {
            ins.pos.error(file, format!("INSERT INTO '{}': no such table; declare it with CREATE TABLE {} WITH (connector = 'parquet', path = '...')", ins.table, ins.table))
        })?;
        let c = find_connector(t)?;
        if !c.is_sink() {
            return Err(ins.pos.error(
                file,
                format!(
                    "cannot INSERT INTO '{}': connector '{}' can only be read from",
                    t.name,
                    c.name()
                ),
            ));
        }
        let state = ctx.state();
        let stmt = state
            .sql_to_statement(&ins.query, &datafusion::config::Dialect::Generic)
            .map_err(|e| df_err(file, ins.query_pos, e))?;
        let plan = state
            .statement_to_plan(stmt)
            .await
            .map_err(|e| df_err(file, ins.query_pos, e))?;
        if !matches!(
            plan,
            LogicalPlan::Projection(_)
                | LogicalPlan::Aggregate(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Limit(_)
                | LogicalPlan::Distinct(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::Unnest(_)
                | LogicalPlan::Window(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::TableScan(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::Values(_)
        ) {
            return Err(ins
                .query_pos
                .error(file, "INSERT INTO needs a query (SELECT ...)"));
        }
        let plan = match &tenant_column {
            Some((column, pos)) => with_tenant_column(file, ins, plan, column, *pos, &operators)?,
            None => plan,
        };
        let (plan, window) = match split_window(
            file,
            ins,
            &plan,
            &tables,
            &sources,
            &bounded,
            usage_table.is_some(),
            lateness,
            partitions,
        )? {
            Some((output, window)) => (output, Some(window)),
            None => {
                check_row_at_a_time(file, ins, &plan)?;
                (plan, None)
            }
        };
        let plan = with_embedding_model(file, ins, t, plan, &operators.models)?;
        let plan = fit_to_table(file, ins, t, plan)?;
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                used_tables.insert(scan.table_name.table().to_string());
            }
            node.apply_expressions(|e| {
                e.apply(|e| {
                    if let Expr::ScalarFunction(f) = e {
                        if strata_functions.contains(f.name()) {
                            functions.insert(f.name().to_string());
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })
        .map_err(|e| df_err(file, ins.query_pos, e))?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let sink = match sinks_by_name.get(&t.name) {
            Some(s) => {
                if s.schema().fields() != schema.fields() {
                    return Err(ins.pos.error(file, format!("INSERT INTO '{}': this query's columns differ from another INSERT into the same table; declare the table's columns", t.name)));
                }
                s.clone()
            }
            None => {
                let decl = TableDecl {
                    name: t.name.clone(),
                    schema: declared_schema(file, t)?,
                    options: t.options.clone(),
                };
                let sink = c
                    .create_sink(&decl, schema.clone(), &cctx)
                    .await
                    .map_err(|e| connector_err(file, t, e))?;
                sink_infos.push(TableInfo {
                    name: t.name.clone(),
                    connector: c.name().to_string(),
                    options: mask(c.as_ref(), t),
                    schema: schema.clone(),
                });
                sinks_by_name.insert(t.name.clone(), sink.clone());
                sink
            }
        };
        let optimized = ctx
            .state()
            .optimize(&plan)
            .map_err(|e| df_err(file, ins.query_pos, e))?;
        let mut shown = optimized.display_indent().to_string();
        if let Some(w) = &window {
            let input = ctx
                .state()
                .optimize(&w.input)
                .map_err(|e| df_err(file, ins.query_pos, e))?;
            shown = format!(
                "window aggregate: tumbling windows of {} s, emitted when the watermark passes their end{}\n  per epoch (into the window state):\n{}\n  per closing window:\n{}",
                w.size_micros / 1_000_000,
                match w.watermark_delay_micros {
                    Some(d) => format!(" (watermark: max event time - {} s)", d / 1_000_000),
                    None => " (no watermark: at the end of the bounded input)".to_string(),
                },
                input.display_indent(),
                shown
            );
        }
        plans.push((t.name.clone(), shown));
        if let (Some((estimates, list)), None) = (&mut estimate_plans, &window) {
            if let Some(p) = with_estimators(file, ins, &plan, &operators, estimates)? {
                list.push(p);
            }
        }
        let mut reads_usage = false;
        let mut calls_models = false;
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                reads_usage |= usage_table.is_some() && scan.table_name.table() == "usage";
            }
            node.apply_expressions(|e| {
                e.apply(|e| {
                    if let Expr::ScalarFunction(f) = e {
                        calls_models |=
                            strata_operators::registry::tenant_variant(f.name(), &operators)
                                .is_some();
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        })
        .map_err(|e| df_err(file, ins.query_pos, e))?;
        if let Some(w) = &window {
            w.input
                .apply(|node| {
                    if let LogicalPlan::TableScan(scan) = node {
                        reads_usage |= usage_table.is_some() && scan.table_name.table() == "usage";
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
                .map_err(|e| df_err(file, ins.query_pos, e))?;
        }
        if reads_usage && calls_models {
            return Err(ins.query_pos.error(file, "a query over the usage table cannot call models itself (its calls would be usage of the same epoch): read usage in its own INSERT"));
        }
        reads_usage_any |= reads_usage;
        bindings.push(InsertBinding {
            sink,
            plan,
            reads_side_output: reads_usage,
            window: window.map(Arc::new),
        });
    }

    // Sources no query reads are not read at all.
    let mut kept = Vec::new();
    for s in sources {
        if used_tables.iter().any(|u| u.eq_ignore_ascii_case(&s.name)) {
            kept.push(s);
        } else {
            tracing::warn!(table = %s.name, "table is declared but no INSERT reads it; it will not be read");
        }
    }
    let all_bounded = kept.iter().all(|s| s.source.is_bounded());

    // The usage table: every model-call attempt, written with the epoch that made it.
    let mut side_outputs: Vec<(
        Arc<dyn strata_pipeline::Sink>,
        Arc<dyn strata_pipeline::SideOutput>,
    )> = Vec::new();
    let mut side_tables: Vec<(usize, Arc<EpochTable>)> = Vec::new();
    // Rows whose model call failed for good, with `job.on_model_error = 'dead_letter'`: to
    // the dead letter of the job's source, in the epoch that read them.
    if let Some(failed) = &operators.failed_calls {
        let (_, pos) = settings
            .get("job.on_model_error")
            .expect("failed_calls come from job.on_model_error");
        let with_dl: Vec<&SourceBinding> =
            kept.iter().filter(|s| s.dead_letter.is_some()).collect();
        let [source] = with_dl.as_slice() else {
            let names: Vec<&str> = kept.iter().map(|s| s.name.as_str()).collect();
            return Err(pos.error(
                file,
                format!(
                    "job.on_model_error = 'dead_letter' writes failed rows to the dead letter of the job's source, so exactly one source needs bad_data = 'dead_letter' and dead_letter = '...' ({} of {} have one: {})",
                    with_dl.len(),
                    names.len(),
                    names.join(", ")
                ),
            ));
        };
        let dl = source
            .dead_letter
            .clone()
            .expect("filtered on a dead letter");
        failed.set_source(&source.name);
        side_outputs.push((dl, failed.clone()));
    }
    if let (Some((path, pos)), Some(log)) = (&usage_path, &operators.usage) {
        if tables.iter().any(|t| t.name.eq_ignore_ascii_case("usage")) {
            return Err(pos.error(file, "usage.path writes a table named 'usage', and the job declares one too: rename the declared table"));
        }
        let c = connector("parquet").expect("the parquet connector is built in");
        let decl = TableDecl {
            name: "usage".into(),
            schema: None,
            options: strata_connectors::options::TableOptions::from_pairs([
                ("connector", "parquet"),
                ("path", path.trim()),
                ("partition_by", "dt, hour"),
            ]),
        };
        let schema = strata_operators::models::usage::UsageLog::schema();
        let sink = c
            .create_sink(&decl, schema.clone(), &cctx)
            .await
            .map_err(|e| pos.error(file, format!("usage.path: {e}")))?;
        sink_infos.push(TableInfo {
            name: "usage".into(),
            connector: "parquet".into(),
            options: vec![
                ("path".into(), path.trim().to_string()),
                ("partition_by".into(), "dt, hour".into()),
            ],
            schema,
        });
        if let (Some(t), true) = (&usage_table, reads_usage_any) {
            side_tables.push((side_outputs.len(), t.clone()));
        }
        side_outputs.push((sink, log.clone()));
    }

    let explain = Explain {
        job: job_name.clone(),
        checkpoint: checkpoint_loc.url.clone(),
        sources: source_infos,
        sinks: sink_infos,
        models: operators
            .models
            .iter()
            .map(|m| {
                let what = match &m.embedder {
                    Some(e) => format!(
                        "{} ({}, {}): {}, {} dimensions",
                        m.name,
                        m.provider,
                        m.task,
                        e.model_id(),
                        e.dimensions()
                    ),
                    None => format!("{} ({}, {})", m.name, m.provider, m.task),
                };
                format!("{what}{}", price_note(m))
            })
            .collect(),
        functions: functions.into_iter().collect(),
        plans,
    };
    let job = Job {
        name: job_name,
        ctx,
        sources: kept,
        inserts: bindings,
        checkpoint: Checkpoint::new(checkpoint_loc),
        limits,
        progress_bar: opts.progress_bar,
        side_outputs,
        side_tables,
    };
    let estimate = match estimate_plans {
        Some((estimates, plans)) if !plans.is_empty() && all_bounded => {
            Some(CostEstimate { plans, estimates })
        }
        _ => None,
    };
    Ok(PlannedJob {
        job,
        explain,
        estimate,
    })
}

/// `; USD per 1M tokens: input 0.8, output 4 (price catalog bundled: <url> (date))` for
/// `explain`, or nothing when the model has no prices.
fn price_note(m: &strata_operators::models::Model) -> String {
    let p = &m.prices;
    let parts: Vec<String> = [
        ("input", p.input_per_1m),
        ("output", p.output_per_1m),
        ("cache read", p.cache_read_per_1m),
        ("cache write", p.cache_write_per_1m),
    ]
    .into_iter()
    .filter_map(|(what, price)| price.map(|v| format!("{what} {v}")))
    .collect();
    if parts.is_empty() {
        return String::new();
    }
    let from = match &m.price_source {
        Some(e) => e.describe(),
        None => "model options".to_string(),
    };
    format!("; USD per 1M tokens: {} ({from})", parts.join(", "))
}

/// Name of the column that records which model made the vectors of a row.
const EMBEDDING_MODEL_COLUMN: &str = "embedding_model";

/// Vectors from different models are not comparable, so a query that calls `embed(...)`
/// writes which model made them: when every `embed` call of the query names the same
/// model and the query has no `embedding_model` column, one is appended with the model's
/// provider id (`all-MiniLM-L6-v2`, `amazon.titan-embed-text-v2:0`, ...). Tables that
/// declare their columns get it only if they declare `embedding_model` last. Queries that
/// embed with two models name their own columns.
fn with_embedding_model(
    file: &str,
    ins: &InsertDef,
    t: &TableDef,
    plan: LogicalPlan,
    models: &ModelRegistry,
) -> Result<LogicalPlan> {
    let out = plan.schema().clone();
    if out
        .fields()
        .iter()
        .any(|f| f.name().eq_ignore_ascii_case(EMBEDDING_MODEL_COLUMN))
    {
        return Ok(plan);
    }
    if let Some(declared) = declared_schema(file, t)? {
        let wants = declared.fields().len() == out.fields().len() + 1
            && declared
                .fields()
                .last()
                .is_some_and(|f| f.name().eq_ignore_ascii_case(EMBEDDING_MODEL_COLUMN));
        if !wants {
            return Ok(plan);
        }
    }
    let mut ids = BTreeSet::new();
    plan.apply(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if f.name() == strata_operators::udfs::embed::NAME {
                        if let Some(Expr::Literal(v, _)) = f.args.first() {
                            if let Some(model) =
                                v.try_as_str().flatten().and_then(|name| models.get(name))
                            {
                                if let Ok(e) = model.embedder("embed") {
                                    ids.insert(e.model_id().to_string());
                                }
                            }
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .map_err(|e| df_err(file, ins.query_pos, e))?;
    if ids.len() != 1 {
        return Ok(plan);
    }
    let id = ids.pop_first().expect("one id");
    let mut exprs: Vec<Expr> = out.columns().into_iter().map(col).collect();
    exprs.push(datafusion::logical_expr::lit(id).alias(EMBEDDING_MODEL_COLUMN));
    LogicalPlanBuilder::from(plan)
        .project(exprs)
        .and_then(|b| b.build())
        .map_err(|e| df_err(file, ins.query_pos, e))
}

/// `'5 minutes'`, `'30 s'`, `'1 hour'`, `'0'` as microseconds.
fn parse_duration_micros(text: &str) -> Option<i64> {
    let t = text.trim().trim_matches('\'').trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let per = match unit.as_str() {
        "" if n == 0 => 1,
        "ms" | "millisecond" | "milliseconds" => 1_000,
        "s" | "sec" | "second" | "seconds" => 1_000_000,
        "min" | "minute" | "minutes" => 60_000_000,
        "h" | "hour" | "hours" => 3_600_000_000,
        "d" | "day" | "days" => 86_400_000_000,
        _ => return None,
    };
    n.checked_mul(per)
}

/// The delay of `WATERMARK FOR ts AS ts - INTERVAL 'n' UNIT` (or `AS ts`: no delay).
fn watermark_delay(file: &str, wm: &crate::parser::Watermark) -> Result<i64> {
    let bad = || {
        wm.pos.error(
            file,
            format!(
                "WATERMARK FOR {} AS {}: write the watermark as the column minus a fixed delay, e.g. WATERMARK FOR {} AS {} - INTERVAL '5' SECOND",
                wm.column, wm.expr, wm.column, wm.column
            ),
        )
    };
    let expr = wm.expr.trim();
    let lower = expr.to_ascii_lowercase();
    let column = wm.column.to_ascii_lowercase();
    let rest = lower
        .strip_prefix(column.as_str())
        .or_else(|| lower.strip_prefix(&format!("\"{column}\"")))
        .ok_or_else(bad)?
        .trim();
    if rest.is_empty() {
        return Ok(0);
    }
    let rest = rest.strip_prefix('-').ok_or_else(bad)?.trim();
    let body = rest.strip_prefix("interval").ok_or_else(bad)?.trim();
    // INTERVAL '5' SECOND or INTERVAL '5 seconds'
    let text = body.replace('\'', " ");
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let (n, unit) = text.split_once(' ').unwrap_or((text.as_str(), ""));
    parse_duration_micros(&format!("{n} {unit}")).ok_or_else(bad)
}

/// A finished window split: the output plan (aggregate and above, reading the closing
/// windows' rows) and the binding that runs the input and keeps the state.
type WindowSplit = (LogicalPlan, strata_pipeline::WindowBinding);

/// `INSERT ... SELECT ... GROUP BY tumble(ts, INTERVAL ...), ...` is a window aggregate: split
/// it at the aggregate (see `strata_pipeline::window`). `None` for any other query.
fn split_window(
    file: &str,
    ins: &InsertDef,
    plan: &LogicalPlan,
    tables: &[TableDef],
    sources: &[SourceBinding],
    bounded: &BTreeMap<String, bool>,
    usage_builtin: bool,
    lateness_micros: i64,
    partitions: usize,
) -> Result<Option<WindowSplit>> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::logical_expr::Aggregate;
    use strata_operators::udfs::window::{interval_micros, TUMBLE, TUMBLE_END};

    // The aggregate, under nothing but projections, filters (HAVING), sorts and aliases.
    let mut node = plan;
    let agg = loop {
        match node {
            LogicalPlan::Projection(p) => node = &p.input,
            LogicalPlan::Filter(f) => node = &f.input,
            LogicalPlan::Sort(s) => node = &s.input,
            LogicalPlan::SubqueryAlias(a) => node = &a.input,
            LogicalPlan::Aggregate(a) => break a,
            _ => return Ok(None),
        }
    };
    let tumble = agg
        .group_expr
        .iter()
        .find_map(|e| match e.clone().unalias_nested().data {
            Expr::ScalarFunction(f) if f.name() == TUMBLE || f.name() == TUMBLE_END => Some(f),
            _ => None,
        });
    let Some(tumble) = tumble else {
        return Ok(None);
    };
    let err = |m: String| ins.query_pos.error(file, m);
    let (Some(Expr::Column(time)), Some(size)) = (tumble.args.first(), tumble.args.get(1)) else {
        return Err(err(format!(
            "{}(ts, size): ts must be a column of the source and size an INTERVAL literal",
            tumble.name()
        )));
    };
    let size = match size {
        Expr::Literal(v, _) => interval_micros(v),
        _ => None,
    }
    .ok_or_else(|| err(format!("{}(..., size): the window size must be a positive fixed INTERVAL literal, e.g. INTERVAL '1' HOUR (months and years vary in length)", tumble.name())))?;
    check_row_at_a_time(file, ins, &agg.input)?;

    // The input, cut to the columns the aggregate reads (all of one table).
    let mut used: Vec<datafusion::common::Column> = Vec::new();
    for e in agg.group_expr.iter().chain(agg.aggr_expr.iter()) {
        for c in e.column_refs() {
            if !used.contains(c) {
                used.push(c.clone());
            }
        }
    }
    let Some(table) = time.relation.clone() else {
        return Err(err(format!(
            "{}: the event-time column '{}' must come straight from a source table",
            tumble.name(),
            time.name
        )));
    };
    if let Some(other) = used.iter().find(|c| c.relation.as_ref() != Some(&table)) {
        return Err(err(format!(
            "window aggregates read one table: column '{}' does not come from '{table}'",
            other.flat_name()
        )));
    }
    let input = LogicalPlanBuilder::from(agg.input.as_ref().clone())
        .project(used.iter().cloned().map(Expr::Column))
        .and_then(|b| b.build())
        .map_err(|e| df_err(file, ins.query_pos, e))?;
    let time_column = input
        .schema()
        .index_of_column(time)
        .map_err(|e| df_err(file, ins.query_pos, e))?;
    let state_schema: SchemaRef = Arc::new(input.schema().as_arrow().clone());
    let state_table = Arc::new(EpochTable::new(state_schema, partitions));

    // The watermark of the source. The built-in `usage` table's watermark is its largest
    // `ts`: an epoch's calls all start after the previous epoch's, so none is ever late.
    let declared = tables
        .iter()
        .find(|t| t.name.eq_ignore_ascii_case(table.table()));
    let (source_name, delay) = match declared {
        None if usage_builtin && table.table().eq_ignore_ascii_case("usage") => {
            if !time.name.eq_ignore_ascii_case("ts") {
                return Err(err(format!(
                    "windows over usage are over its event time: {}(ts, ...), not '{}'",
                    tumble.name(),
                    time.name
                )));
            }
            ("usage".to_string(), Some(0))
        }
        None => {
            return Err(err(format!(
                "window aggregates read a source table directly; '{table}' is not one"
            )))
        }
        Some(source) => {
            let delay = match &source.watermark {
                Some(wm) => {
                    if !wm.column.eq_ignore_ascii_case(&time.name) {
                        return Err(wm.pos.error(file, format!("the window is over '{}' but the watermark of '{}' is on '{}': window the watermark column", time.name, source.name, wm.column)));
                    }
                    Some(watermark_delay(file, wm)?)
                }
                None if bounded
                    .get(&source.name.to_ascii_lowercase())
                    .copied()
                    .unwrap_or(false) =>
                {
                    None
                }
                None => {
                    return Err(source.pos.error(file, format!("GROUP BY {}(...) over the unbounded source '{}' needs a watermark to know when a window is complete: declare WATERMARK FOR {} AS {} - INTERVAL '5' SECOND in its column list", tumble.name(), source.name, time.name, time.name)))
                }
            };
            (source.name.clone(), delay)
        }
    };

    // The output: the same aggregate over the state table, named like the source so every
    // expression above still resolves.
    let scan = LogicalPlanBuilder::scan(
        table.clone(),
        datafusion::datasource::provider_as_source(state_table.clone()),
        None,
    )
    .and_then(|b| b.build())
    .map_err(|e| df_err(file, ins.query_pos, e))?;
    let new_agg = LogicalPlan::Aggregate(
        Aggregate::try_new(
            Arc::new(scan),
            agg.group_expr.clone(),
            agg.aggr_expr.clone(),
        )
        .map_err(|e| df_err(file, ins.query_pos, e))?,
    );
    let mut replaced = false;
    let output = plan
        .clone()
        .transform_down(|n| {
            if !replaced && matches!(n, LogicalPlan::Aggregate(_)) {
                replaced = true;
                return Ok(Transformed::new(
                    new_agg.clone(),
                    true,
                    TreeNodeRecursion::Jump,
                ));
            }
            Ok(Transformed::no(n))
        })
        .map_err(|e| df_err(file, ins.query_pos, e))?
        .data;
    let dead_letter = sources
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(&source_name))
        .and_then(|s| s.dead_letter.clone())
        .filter(|dl| {
            dl.schema().fields() == strata_pipeline::bad_data::dead_letter_schema().fields()
        })
        .map(|dl| (source_name.clone(), dl));
    let binding = strata_pipeline::WindowBinding::new(
        input,
        state_table,
        time_column,
        size,
        lateness_micros,
        delay,
        dead_letter,
    );
    Ok(Some((output, binding)))
}

/// `SET job.tenant_column = 'c'`: every call of a model-calling function (`embed`, `ai_*`)
/// is replaced by its tenant-carrying variant with the row's `c` (as text) as the last
/// argument, so the usage rows of the calls made for a row name the row's tenant. The column
/// must be visible where the function is called; output column names stay as written.
fn with_tenant_column(
    file: &str,
    ins: &InsertDef,
    plan: LogicalPlan,
    column: &str,
    set_at: Pos,
    operators: &OperatorConfig,
) -> Result<LogicalPlan> {
    let mut missing: Option<String> = None;
    let rewritten = rewrite_calls(plan, |inputs, f| {
        let variant = strata_operators::registry::tenant_variant(f.name(), operators)?;
        let found = inputs
            .iter()
            .find_map(|s| s.qualified_field_with_unqualified_name(column).ok());
        let Some((qualifier, field)) = found else {
            let columns: Vec<String> = inputs
                .iter()
                .flat_map(|s| s.fields().iter().map(|f| f.name().clone()))
                .collect();
            missing = Some(format!(
                "SET job.tenant_column = '{column}', but the input of {}(...) in INSERT INTO {} has no column '{column}' (it has: {}); select the tenant column in the query, or name the right one",
                f.name(),
                ins.table,
                columns.join(", ")
            ));
            return None;
        };
        let tenant = cast(
            Expr::Column(datafusion::common::Column::new(
                qualifier.cloned(),
                field.name(),
            )),
            arrow::datatypes::DataType::Utf8,
        );
        let mut args = f.args.clone();
        if f.name() != strata_operators::udfs::embed::NAME && args.len() == 2 {
            // (model, text) -> (model, text, NULL limit, tenant)
            args.push(Expr::Literal(
                datafusion::common::ScalarValue::Int64(None),
                None,
            ));
        }
        args.push(tenant);
        Some((variant, args))
    })
    .map_err(|e| df_err(file, ins.query_pos, e))?;
    match missing {
        Some(message) => Err(set_at.error(file, message)),
        None => Ok(rewritten),
    }
}

/// The plan `strata explain` runs for its cost estimate: `plan` with every model call
/// replaced by its dry-run stand-in. `None` when the plan calls no model.
fn with_estimators(
    file: &str,
    ins: &InsertDef,
    plan: &LogicalPlan,
    operators: &OperatorConfig,
    estimates: &Arc<strata_operators::udfs::estimate::Estimates>,
) -> Result<Option<LogicalPlan>> {
    let mut calls = 0;
    let rewritten = rewrite_calls(plan.clone(), |_, f| {
        let stand_in =
            strata_operators::registry::estimate_variant(f.name(), operators, estimates)?;
        calls += 1;
        Some((stand_in, f.args.clone()))
    })
    .map_err(|e| df_err(file, ins.query_pos, e))?;
    Ok((calls > 0).then_some(rewritten))
}

/// Replace function calls in every expression of `plan`: `replace(input schemas of the
/// node, call)` gives the new function and arguments, or `None` to keep the call. Output
/// column names stay as the user's query made them.
fn rewrite_calls(
    plan: LogicalPlan,
    mut replace: impl FnMut(
        &[datafusion::common::DFSchemaRef],
        &datafusion::logical_expr::expr::ScalarFunction,
    ) -> Option<(datafusion::logical_expr::ScalarUDF, Vec<Expr>)>,
) -> datafusion::error::Result<LogicalPlan> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::logical_expr::expr::ScalarFunction;
    use datafusion::logical_expr::expr_rewriter::NamePreserver;

    Ok(plan
        .transform_up(|node| {
            let inputs: Vec<_> = node.inputs().iter().map(|i| i.schema().clone()).collect();
            let preserver = NamePreserver::new(&node);
            let node = node.map_expressions(|e| {
                let saved = preserver.save(&e);
                let e = e.transform_up(|e| {
                    let Expr::ScalarFunction(f) = &e else {
                        return Ok(Transformed::no(e));
                    };
                    Ok(match replace(&inputs, f) {
                        Some((udf, args)) => Transformed::yes(Expr::ScalarFunction(
                            ScalarFunction::new_udf(Arc::new(udf), args),
                        )),
                        None => Transformed::no(e),
                    })
                })?;
                Ok(e.update_data(|e| saved.restore(e)))
            })?;
            node.map_data(|n| n.recompute_schema())
        })?
        .data)
}

/// Queries run once per epoch. Operators whose result depends on seeing every
/// row at once (aggregates, DISTINCT, LIMIT, window functions, joins and
/// subqueries between sources) would silently write one partial result per
/// epoch, so they are rejected until windowed streaming operators exist.
fn check_row_at_a_time(file: &str, ins: &InsertDef, plan: &LogicalPlan) -> Result<()> {
    let mut found: Option<&'static str> = None;
    plan.apply_with_subqueries(|node| {
        let what = match node {
            LogicalPlan::Aggregate(_) => Some("GROUP BY / aggregate functions"),
            LogicalPlan::Distinct(_) => Some("DISTINCT"),
            LogicalPlan::Limit(_) => Some("LIMIT"),
            LogicalPlan::Window(_) => Some("window functions (OVER ...)"),
            LogicalPlan::Join(_) => Some("JOIN"),
            LogicalPlan::Subquery(_) => Some("subqueries"),
            _ => None,
        };
        if what.is_some() {
            found = what;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| df_err(file, ins.query_pos, e))?;
    match found {
        None => Ok(()),
        Some(what) => Err(ins.query_pos.error(
            file,
            format!(
                "{what} in INSERT INTO {}: the query runs once per epoch, so this would write one partial result per epoch. \
                 Write the rows (SELECT, WHERE, unnest, functions) and aggregate the output with `strata query`",
                ins.table
            ),
        )),
    }
}

/// Make the query's output match the target table: names and types from the
/// declared columns (by position, lossless casts only), or the query's own
/// columns when the table declares none.
fn fit_to_table(
    file: &str,
    ins: &InsertDef,
    t: &TableDef,
    plan: LogicalPlan,
) -> Result<LogicalPlan> {
    let out = plan.schema().clone();
    let Some(declared) = declared_schema(file, t)? else {
        let mut seen = BTreeSet::new();
        for f in out.fields() {
            if !seen.insert(f.name().to_ascii_lowercase()) {
                return Err(ins.query_pos.error(file, format!("the query returns two columns named '{}': give them distinct names with AS", f.name())));
            }
        }
        return Ok(plan);
    };
    if declared.fields().len() != out.fields().len() {
        return Err(ins.query_pos.error(
            file,
            format!("table '{}' declares {} columns but the query returns {}: select exactly the declared columns in order", t.name, declared.fields().len(), out.fields().len()),
        ));
    }
    let mut exprs = Vec::with_capacity(out.fields().len());
    for (i, (q, d)) in out.columns().iter().zip(declared.fields()).enumerate() {
        let qf = out.field(i);
        if !fits(qf.data_type(), d.data_type()) {
            return Err(ins.query_pos.error(
                file,
                format!(
                    "column {} ('{}') of table '{}' is declared {} but the query produces {}: CAST it in the query",
                    i + 1,
                    d.name(),
                    t.name,
                    d.data_type(),
                    qf.data_type()
                ),
            ));
        }
        let e = col(q.clone());
        let e = if qf.data_type() == d.data_type() {
            e
        } else {
            cast(e, d.data_type().clone())
        };
        exprs.push(e.alias(d.name()));
    }
    LogicalPlanBuilder::from(plan)
        .project(exprs)
        .and_then(|b| b.build())
        .map_err(|e| df_err(file, ins.query_pos, e))
}
