-- Hourly cost rollup of the usage stream in FOCUS 1.2 columns (plus strata's x_ columns),
-- per model, feature and tenant. Reads raw usage rows (the Parquet that `SET usage.path`
-- writes, or the JSON sample in jobs/data/usage.jsonl) and emits each hour once, when the
-- watermark passes its end (or at the end of a bounded input). Money stays Decimal(38, 10):
-- the rollup's BilledCost sums to the raw rows' cost_usd to the last digit.
--
--   strata run jobs/cost_rollup.sql --var OUT=/tmp/focus
--   strata run jobs/cost_rollup.sql --var USAGE='s3://bucket/usage/**/*.parquet' \
--       --var USAGE_FORMAT=parquet --var OUT=s3://bucket/focus
SET job.name = 'cost_rollup';

CREATE TABLE usage (
    request_id         TEXT NOT NULL,
    ts                 TIMESTAMPTZ NOT NULL,
    job                TEXT NOT NULL,
    feature            TEXT,
    tenant             TEXT,
    model              TEXT NOT NULL,
    model_id           TEXT NOT NULL,
    provider           TEXT NOT NULL,
    operation          TEXT NOT NULL,
    prompt_version     TEXT NOT NULL,
    attempt            INT NOT NULL,
    status             TEXT NOT NULL,
    error_code         TEXT,
    cache_hit          BOOLEAN NOT NULL,
    input_tokens       BIGINT NOT NULL,
    output_tokens      BIGINT NOT NULL,
    cache_read_tokens  BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    latency_ms         BIGINT NOT NULL,
    cost_usd           DECIMAL(38, 10) NOT NULL,
    guardrail_action   TEXT,
    WATERMARK FOR ts AS ts - INTERVAL '5' MINUTE
) WITH (
    connector = 'file',
    path      = '${USAGE:-jobs/data/usage.jsonl}',
    format    = '${USAGE_FORMAT:-json}'
);

CREATE TABLE focus WITH (
    connector = 'parquet',
    path      = '${OUT:-out}/cost_rollup/'
);

INSERT INTO focus
SELECT
    tumble(ts, INTERVAL '1' HOUR)                  AS "ChargePeriodStart",
    tumble_end(ts, INTERVAL '1' HOUR)              AS "ChargePeriodEnd",
    SUM(cost_usd)                                  AS "BilledCost",
    SUM(cost_usd)                                  AS "EffectiveCost",
    SUM(cost_usd)                                  AS "ListCost",
    'USD'                                          AS "BillingCurrency",
    SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens)
                                                   AS "ConsumedQuantity",
    'Token'                                        AS "ConsumedUnit",
    '1M Tokens'                                    AS "PricingUnit",
    CASE provider WHEN 'bedrock' THEN 'Amazon Bedrock'
                  WHEN 'openai'  THEN 'OpenAI-compatible API'
                  ELSE 'strata local executor' END AS "ServiceName",
    'AI and Machine Learning'                      AS "ServiceCategory",
    CASE provider WHEN 'bedrock' THEN 'AWS'
                  WHEN 'openai'  THEN 'OpenAI-compatible endpoint'
                  ELSE 'strata' END                AS "ProviderName",
    model_id                                       AS "ResourceId",
    map(['strata:job', 'strata:model', 'strata:feature', 'strata:tenant'],
        [job, model, coalesce(feature, ''), coalesce(tenant, '')])
                                                   AS "Tags",
    model                                          AS x_model,
    feature                                        AS x_feature,
    tenant                                         AS x_tenant,
    SUM(input_tokens)                              AS x_input_tokens,
    SUM(output_tokens)                             AS x_output_tokens,
    SUM(cache_read_tokens)                         AS x_cache_read_tokens,
    SUM(cache_write_tokens)                        AS x_cache_write_tokens,
    COUNT(*)                                       AS x_attempts,
    SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END) AS x_errors,
    SUM(CASE WHEN cache_hit THEN 1 ELSE 0 END)     AS x_cache_hits,
    median(latency_ms)                             AS x_latency_p50_ms,
    approx_percentile_cont(latency_ms, 0.95)       AS x_latency_p95_ms
FROM usage
GROUP BY tumble(ts, INTERVAL '1' HOUR), tumble_end(ts, INTERVAL '1' HOUR),
         provider, model_id, model, feature, tenant, job;
