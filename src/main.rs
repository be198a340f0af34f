//! The `strata` command line: parses arguments, sets up logging and metrics,
//! and hands over to the library crates. No engine logic lives here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use strata_pipeline::Shutdown;
use strata_sql::athena::{self, AthenaError, AthenaOptions};
use strata_sql::{PlanOptions, SqlError};

mod query;

/// strata: SQL jobs for LLM workloads.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// A price catalog (TOML, the shape of the bundled operators/src/models/prices.toml)
    /// laid over the bundled one: models without 'price.*' options are priced from it.
    #[arg(long, global = true, value_name = "FILE")]
    prices: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a job until its bounded sources are done (or until SIGINT/SIGTERM).
    Run {
        /// The job file.
        job: PathBuf,
        /// Job variables: --var NAME=VALUE (fills ${NAME} in the job).
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Checkpoint location (path or object-store URL); default ./.strata/<job>/.
        #[arg(long)]
        checkpoint: Option<String>,
        /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
    },
    /// Print the job's sources, sinks, functions and plans without running it, and for a
    /// bounded job that calls models, what the calls would be and cost.
    Explain {
        /// The job file.
        job: PathBuf,
        /// Job variables: --var NAME=VALUE.
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Skip the cost estimate (which reads a bounded job's whole input to count the
        /// model calls it would make).
        #[arg(long)]
        no_estimate: bool,
    },
    /// Print Athena `CREATE EXTERNAL TABLE` statements (with partition projection)
    /// for every Parquet sink of the job and for its usage table.
    AthenaDdl {
        /// The job file.
        job: PathBuf,
        /// Job variables: --var NAME=VALUE.
        #[arg(long = "var", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Database the tables are created in (default: `default`, which every
        /// Glue Data Catalog has).
        #[arg(long)]
        database: Option<String>,
        /// Range of date partition projections (dt), e.g. NOW-1YEARS,NOW or
        /// 2024-01-01,NOW (default: NOW-3YEARS,NOW).
        #[arg(long)]
        date_range: Option<String>,
        /// Project a partition column as `enum` over these values instead of
        /// `injected`: --enum TABLE.COLUMN=V1,V2,... (repeatable).
        #[arg(long = "enum", value_name = "TABLE.COLUMN=VALUES")]
        enums: Vec<String>,
    },
    /// Run ad hoc SQL over Parquet / JSONL / CSV outputs and print a table.
    Query {
        /// The SQL: one query, optionally after `CREATE MODEL ...;` statements for embed().
        sql: String,
        /// Tables: --table NAME=PATH_OR_URL (a file, folder, glob or s3:// prefix).
        #[arg(long = "table", value_parser = parse_var)]
        tables: Vec<(String, String)>,
    },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("STRATA_LOG").unwrap_or_else(|_| {
        EnvFilter::new("warn,strata=info,strata_pipeline=info,strata_sql=info,strata_connectors=info,strata_operators=info")
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Exit codes (DESIGN §3): 0 ok, 1 runtime failure, 2 plan error.
const EXIT_RUNTIME: u8 = 1;
const EXIT_PLAN: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(async move {
        match dispatch(cli.command, cli.prices).await {
            Ok(code) => code,
            Err(e) => {
                // A job Athena cannot describe is a plan error too.
                let plan = e
                    .downcast_ref::<SqlError>()
                    .is_some_and(|e| e.is_plan_error())
                    || e.downcast_ref::<AthenaError>().is_some();
                eprintln!("error: {e:#}");
                ExitCode::from(if plan { EXIT_PLAN } else { EXIT_RUNTIME })
            }
        }
    })
}

/// Operator settings from the environment, with the `--prices` catalog.
fn operator_config(prices: Option<&std::path::Path>) -> Result<strata_operators::OperatorConfig> {
    let mut cfg = strata_operators::OperatorConfig::from_env();
    if let Some(path) = prices {
        let catalog = strata_operators::models::prices::PriceCatalog::with_file(path)
            .context("--prices: fix the file, or leave the option out to use the bundled prices")?;
        cfg.prices = std::sync::Arc::new(catalog);
    }
    Ok(cfg)
}

async fn dispatch(cmd: Command, prices: Option<PathBuf>) -> Result<ExitCode> {
    match cmd {
        Command::Run {
            job,
            vars,
            checkpoint,
            metrics_addr,
        } => {
            if let Some(addr) = metrics_addr {
                metrics_exporter_prometheus::PrometheusBuilder::new()
                    .with_http_listener(addr)
                    .install()
                    .with_context(|| {
                        format!("cannot serve metrics on {addr}: is the port free?")
                    })?;
            }
            let opts = PlanOptions {
                vars: vars.into_iter().collect::<BTreeMap<_, _>>(),
                checkpoint,
                progress_bar: true,
                operators: operator_config(prices.as_deref())?,
                estimate: false,
            };
            let planned = strata_sql::plan_file(&job, &opts).await?;
            let shutdown = Shutdown::default();
            spawn_signal_handler(shutdown.clone());
            tracing::info!(job = %planned.explain.job, checkpoint = %planned.explain.checkpoint, "starting");
            let summary = strata_pipeline::run(planned.job, shutdown).await?;
            println!("{summary}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain {
            job,
            vars,
            no_estimate,
        } => {
            let opts = PlanOptions {
                vars: vars.into_iter().collect(),
                operators: operator_config(prices.as_deref())?,
                estimate: !no_estimate,
                ..Default::default()
            };
            let mut planned = strata_sql::plan_file(&job, &opts).await?;
            print!("{}", planned.explain);
            if let Some(estimate) = planned.estimate.take() {
                // The bounded input is read in full; no model is called.
                let records = strata_pipeline::dry_run(&mut planned.job, &estimate.plans)
                    .await
                    .context("cost estimate: reading the input failed (--no-estimate skips it)")?;
                println!("estimate ({records} input records read, no model called):");
                print!("{}", estimate.estimates);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::AthenaDdl {
            job,
            vars,
            database,
            date_range,
            enums,
        } => {
            // Planned as `run` would (prices included), so the DDL describes what it writes.
            let opts = PlanOptions {
                vars: vars.into_iter().collect(),
                operators: operator_config(prices.as_deref())?,
                ..Default::default()
            };
            let ddl_opts = AthenaOptions {
                database,
                date_range,
                enums: enums
                    .iter()
                    .map(|e| e.parse())
                    .collect::<Result<Vec<_>, AthenaError>>()?,
            };
            let planned = strata_sql::plan_file(&job, &opts).await?;
            print!("{}", athena::job_ddl(&planned.explain, &ddl_opts)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Query { sql, tables } => {
            query::run(&sql, &tables).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// First SIGINT/SIGTERM: finish and commit the current epoch, then exit 0.
/// Second: exit at once (the next run re-runs the uncommitted epoch).
fn spawn_signal_handler(shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        for n in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if n == 0 {
                tracing::info!("signal received: finishing the current epoch, then exiting (signal again to stop at once)");
                shutdown.trigger();
            } else {
                eprintln!(
                    "second signal: stopping now; the next run re-runs the uncommitted epoch"
                );
                std::process::exit(130);
            }
        }
    });
}
