//! `strata query`: ad hoc DataFusion SQL over the files jobs write (Parquet with
//! Hive partition folders, JSON Lines, CSV), local or on S3.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

/// Register `tables` and run `sql`, printing the result as a table.
/// `sql` may start with `CREATE MODEL` statements for `embed(...)` in the query.
pub async fn run(sql: &str, tables: &[(String, String)]) -> Result<()> {
    let (operators, sql) = strata_sql::plan_query_script(
        "<query>",
        sql,
        &strata_operators::OperatorConfig::from_env(),
    )
    .await?;
    let sql = sql.as_str();
    let ctx = SessionContext::new();
    strata_operators::register_all(&ctx, &operators);
    for (name, location) in tables {
        register(&ctx, name, location)
            .await
            .with_context(|| format!("table '{name}' at '{location}'"))?;
    }
    let df = ctx.sql(sql).await.context("query")?;
    let batches = df.collect().await.context("query")?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    Ok(())
}

async fn register(ctx: &SessionContext, name: &str, location: &str) -> Result<()> {
    let loc = strata_pipeline::storage::resolve(location.trim_end_matches('/'), &BTreeMap::new())?;
    let lower = location.to_ascii_lowercase();
    let (format, ext): (Arc<dyn FileFormat>, &str) =
        if lower.ends_with(".jsonl") || lower.ends_with(".json") || lower.ends_with(".ndjson") {
            let ext = if lower.ends_with(".json") {
                ".json"
            } else if lower.ends_with(".ndjson") {
                ".ndjson"
            } else {
                ".jsonl"
            };
            (Arc::new(JsonFormat::default()), ext)
        } else if lower.ends_with(".csv") {
            (Arc::new(CsvFormat::default().with_has_header(true)), ".csv")
        } else {
            (Arc::new(ParquetFormat::default()), ".parquet")
        };
    let table_url = match &loc.local_path {
        Some(p) => {
            let s = p.display().to_string();
            if p.is_dir() {
                format!("{s}/")
            } else {
                s
            }
        }
        None => {
            let base = url::Url::parse(&loc.url).context("storage URL")?;
            let root = url::Url::parse(&format!(
                "{}://{}",
                base.scheme(),
                base.host_str().unwrap_or_default()
            ))?;
            ctx.register_object_store(&root, loc.store.clone());
            if lower.ends_with(ext) {
                loc.url.clone()
            } else {
                format!("{}/", loc.url.trim_end_matches('/'))
            }
        }
    };
    let url = ListingTableUrl::parse(&table_url)?;
    let options = ListingOptions::new(format).with_file_extension(ext);
    let state = ctx.state();
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .infer_partitions_from_path(&state)
        .await?
        .infer_schema(&state)
        .await?;
    if config
        .file_schema
        .as_ref()
        .is_some_and(|s| s.fields().is_empty())
    {
        bail!("no {ext} files found");
    }
    let partition_cols: Vec<String> = config
        .options
        .as_ref()
        .map(|o| {
            o.table_partition_cols
                .iter()
                .map(|(c, _)| c.clone())
                .collect()
        })
        .unwrap_or_default();
    let table = Arc::new(ListingTable::try_new(config)?);
    if partition_cols.is_empty() {
        ctx.register_table(name, table)?;
        return Ok(());
    }
    // Hive writes NULL partition values as __HIVE_DEFAULT_PARTITION__; read them
    // back as NULL, as Athena and strata's file source do.
    let raw = format!("__strata_raw_{name}");
    let schema = table.schema();
    ctx.register_table(raw.as_str(), table)?;
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let cols: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            if partition_cols.contains(f.name()) {
                format!(
                    "NULLIF(CAST({c} AS VARCHAR), '__HIVE_DEFAULT_PARTITION__') AS {c}",
                    c = quote(f.name())
                )
            } else {
                quote(f.name())
            }
        })
        .collect();
    let view = ctx
        .sql(&format!("SELECT {} FROM {}", cols.join(", "), quote(&raw)))
        .await?
        .into_view();
    ctx.register_table(name, view)?;
    Ok(())
}
