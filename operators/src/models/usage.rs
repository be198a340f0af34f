//! The usage stream: one row per model-call attempt (DESIGN.md §6), and response-cache hits.
//!
//! Owns the usage schema and the per-job [`UsageLog`] that collects rows while an epoch's
//! queries run. [`UsageObserver`] is the client stack's [`AttemptObserver`] for one model (it
//! prices each attempt with the model's [`Prices`]); the response cache records its hits
//! directly. The runtime drains the log once the epoch's queries are done
//! ([`strata_pipeline::SideOutput`]) and writes it with the epoch, so usage is published
//! exactly when the rows it paid for are.
//!
//! `request_id` and `prompt_version` come from the function that made the call, through a
//! task-local [`CallContext`] ([`with_call`]); attempts of one call share the request id.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::chat::{Money, Prices};
use super::remote::stack::{AttemptObserver, AttemptRecord, AttemptStatus, TokenUsage};

/// Scale of `cost_usd`: `Decimal128(38, 10)`.
pub const COST_SCALE: i8 = 10;

/// What the calling function tells the usage rows of its calls.
#[derive(Clone, Debug)]
pub struct CallContext {
    /// Shared by every attempt of one call (one row of `ai_*`, one batch of `embed`).
    pub request_id: String,
    /// `summarize-v1`, or `none`.
    pub prompt_version: &'static str,
    /// What the model's input guardrail did to this call's input (`NONE`, `ANONYMIZED`);
    /// `None` when the model has no guardrail.
    pub guardrail_action: Option<&'static str>,
    /// The value of the row's `SET job.tenant_column`, when the job names one.
    pub tenant: Option<String>,
}

impl CallContext {
    /// A new call with a fresh random request id.
    pub fn new(prompt_version: &'static str) -> Self {
        Self {
            request_id: format!("{:032x}", fastrand::u128(..)),
            prompt_version,
            guardrail_action: None,
            tenant: None,
        }
    }

    /// The same call, attributed to `tenant`.
    pub fn with_tenant(self, tenant: Option<String>) -> Self {
        Self { tenant, ..self }
    }

    /// The context of the call running now (a fresh one outside any call).
    pub fn current() -> Self {
        current_call()
    }
}

tokio::task_local! {
    static CALL: CallContext;
}

/// Run `fut` (one model call) with `call` visible to the usage rows it produces.
pub async fn with_call<F: std::future::Future>(call: CallContext, fut: F) -> F::Output {
    CALL.scope(call, fut).await
}

fn current_call() -> CallContext {
    CALL.try_with(Clone::clone)
        .unwrap_or_else(|_| CallContext::new("none"))
}

/// One usage row.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageRow {
    pub request_id: String,
    pub ts: SystemTime,
    pub model: String,
    pub model_id: String,
    pub provider: String,
    pub operation: &'static str,
    pub prompt_version: &'static str,
    pub attempt: i32,
    pub status: String,
    pub error_code: Option<String>,
    pub cache_hit: bool,
    pub usage: TokenUsage,
    pub latency: Duration,
    pub cost: Money,
    pub guardrail_action: Option<&'static str>,
    pub tenant: Option<String>,
}

/// The job's usage rows of the running epoch.
#[derive(Debug)]
pub struct UsageLog {
    job: String,
    feature: Option<String>,
    rows: Mutex<Vec<UsageRow>>,
}

impl UsageLog {
    /// An empty log for `job` (`SET job.feature` as `feature`).
    pub fn new(job: &str, feature: Option<String>) -> Self {
        Self {
            job: job.to_string(),
            feature,
            rows: Mutex::default(),
        }
    }

    /// Add a row.
    pub fn record(&self, row: UsageRow) {
        self.rows.lock().expect("usage lock").push(row);
    }

    /// Rows collected so far (for tests and summaries).
    pub fn len(&self) -> usize {
        self.rows.lock().expect("usage lock").len()
    }

    /// Whether no row is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The schema of the `usage` table: DESIGN.md §6 plus the `dt`/`hour` partition columns
    /// (UTC, from `ts`).
    pub fn schema() -> SchemaRef {
        let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
        let i = |n: &str| Field::new(n, DataType::Int64, false);
        Arc::new(Schema::new(vec![
            s("request_id", false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            s("job", false),
            s("feature", true),
            s("tenant", true),
            s("model", false),
            s("model_id", false),
            s("provider", false),
            s("operation", false),
            s("prompt_version", false),
            Field::new("attempt", DataType::Int32, false),
            s("status", false),
            s("error_code", true),
            Field::new("cache_hit", DataType::Boolean, false),
            i("input_tokens"),
            i("output_tokens"),
            i("cache_read_tokens"),
            i("cache_write_tokens"),
            i("latency_ms"),
            Field::new("cost_usd", DataType::Decimal128(38, COST_SCALE), false),
            s("guardrail_action", true),
            s("dt", false),
            s("hour", false),
        ]))
    }

    /// Take every row collected so far as one batch in [`Self::schema`]; `None` when empty.
    pub fn take_batch(&self) -> Option<RecordBatch> {
        let rows = std::mem::take(&mut *self.rows.lock().expect("usage lock"));
        if rows.is_empty() {
            return None;
        }
        let n = rows.len();
        let strs = |f: &dyn Fn(&UsageRow) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let ints = |f: &dyn Fn(&TokenUsage) -> Option<u64>| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| f(&r.usage).unwrap_or(0) as i64),
            ))
        };
        let micros: Vec<i64> = rows
            .iter()
            .map(|r| {
                r.ts.duration_since(UNIX_EPOCH)
                    .map(|d| d.as_micros() as i64)
                    .unwrap_or(0)
            })
            .collect();
        let utc: Vec<chrono::DateTime<chrono::Utc>> = micros
            .iter()
            .map(|m| chrono::DateTime::from_timestamp_micros(*m).unwrap_or_default())
            .collect();
        // Money is in units of 1e-16 USD; cost_usd keeps 10 decimals, rounded up so the
        // recorded cost is never below what was spent.
        let down = 10i128.pow(Money::SCALE - COST_SCALE as u32);
        let cost =
            Decimal128Array::from_iter_values(rows.iter().map(|r| (r.cost.0 + down - 1) / down))
                .with_precision_and_scale(38, COST_SCALE)
                .expect("38,10 is a valid decimal type");
        let columns: Vec<ArrayRef> = vec![
            strs(&|r| Some(r.request_id.clone())),
            Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![Some(self.job.as_str()); n])),
            Arc::new(StringArray::from(vec![self.feature.as_deref(); n])),
            strs(&|r| r.tenant.clone()),
            strs(&|r| Some(r.model.clone())),
            strs(&|r| Some(r.model_id.clone())),
            strs(&|r| Some(r.provider.clone())),
            strs(&|r| Some(r.operation.to_string())),
            strs(&|r| Some(r.prompt_version.to_string())),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.attempt))),
            strs(&|r| Some(r.status.clone())),
            strs(&|r| r.error_code.clone()),
            Arc::new(BooleanArray::from(
                rows.iter().map(|r| Some(r.cache_hit)).collect::<Vec<_>>(),
            )),
            ints(&|u| u.input_tokens),
            ints(&|u| u.output_tokens),
            ints(&|u| u.cache_read_tokens),
            ints(&|u| u.cache_write_tokens),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.latency.as_millis() as i64),
            )),
            Arc::new(cost),
            strs(&|r| r.guardrail_action.map(str::to_string)),
            Arc::new(
                utc.iter()
                    .map(|t| Some(t.format("%Y-%m-%d").to_string()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                utc.iter()
                    .map(|t| Some(t.format("%H").to_string()))
                    .collect::<StringArray>(),
            ),
        ];
        Some(RecordBatch::try_new(Self::schema(), columns).expect("usage columns match the schema"))
    }
}

impl strata_pipeline::SideOutput for UsageLog {
    fn drain(&self) -> Option<RecordBatch> {
        self.take_batch()
    }

    /// Every attempt is on record, also those of an epoch that then failed (a budget stop,
    /// a row that failed the job): they were made and paid for.
    fn publish_on_failure(&self) -> bool {
        true
    }
}

/// Identity of the model a usage row is about.
#[derive(Clone, Debug)]
pub struct UsageModel {
    /// Alias.
    pub model: String,
    /// `openai`, `bedrock`, `local`.
    pub provider: String,
    /// `chat` or `embedding`.
    pub operation: &'static str,
    /// Prices of the model.
    pub prices: Prices,
}

impl UsageModel {
    /// The row of a response-cache hit: no provider call, no tokens, no cost.
    pub fn cache_hit_row(&self, model_id: &str) -> UsageRow {
        let call = current_call();
        UsageRow {
            request_id: call.request_id,
            ts: SystemTime::now(),
            model: self.model.clone(),
            model_id: model_id.to_string(),
            provider: self.provider.clone(),
            operation: self.operation,
            prompt_version: call.prompt_version,
            attempt: 0,
            status: "ok".into(),
            error_code: None,
            cache_hit: true,
            usage: TokenUsage::default(),
            latency: Duration::ZERO,
            cost: Money::default(),
            guardrail_action: call.guardrail_action,
            tenant: call.tenant,
        }
    }
}

/// The client stack's observer for one model: every attempt becomes a usage row.
#[derive(Debug)]
pub struct UsageObserver {
    log: Arc<UsageLog>,
    model: UsageModel,
}

impl UsageObserver {
    /// Rows of `model` go to `log`.
    pub fn new(log: Arc<UsageLog>, model: UsageModel) -> Self {
        Self { log, model }
    }
}

impl AttemptObserver for UsageObserver {
    fn on_attempt(&self, record: &AttemptRecord<'_>) {
        let call = current_call();
        let status = match record.status {
            AttemptStatus::Ok => "ok".to_string(),
            s => s.as_str().to_string(),
        };
        self.log.record(UsageRow {
            request_id: call.request_id,
            ts: record.started_at,
            model: self.model.model.clone(),
            model_id: record.model.model_id.clone(),
            provider: record.model.provider.to_string(),
            operation: self.model.operation,
            prompt_version: call.prompt_version,
            attempt: record.attempt as i32,
            status,
            error_code: record
                .error_code
                .map(str::to_string)
                .or_else(|| record.http_status.map(|s| s.to_string())),
            cache_hit: false,
            usage: record.usage,
            latency: record.latency,
            cost: self.model.prices.cost(&record.usage),
            guardrail_action: call.guardrail_action,
            tenant: call.tenant,
        });
    }
}
