-- Offline bulk summarization: documents -> ai_summarize -> Parquet, with a persistent
-- response cache (a rerun pays nothing for documents already summarized), a cost budget
-- and NULL (counted) for a document the model keeps refusing.
--
-- By default the model runs in-process: SmolLM2-135M-Instruct on the CPU (provider 'local';
-- scripts/fetch_models.sh fetches it into ./models), decoding up to 16 documents together.
--   strata run jobs/bulk_summarize.sql
--   strata run jobs/bulk_summarize.sql --var DATA='s3://bucket/docs/*.jsonl' --var OUT=s3://bucket/summaries
-- Any other model: --var LLM replaces the provider options. An OpenAI-compatible endpoint
-- (vLLM, llama.cpp server, Ollama, OpenAI with an api_key_env option) or Bedrock:
--   strata run jobs/bulk_summarize.sql --var LLM="provider = 'openai', endpoint = 'http://localhost:11434/v1', model = 'llama3.2', 'price.input_per_1m' = '0.15', 'price.output_per_1m' = '0.60'"
--   strata run jobs/bulk_summarize.sql --var LLM="provider = 'bedrock', model_id = 'amazon.nova-micro-v1:0', region = 'us-east-1'"
SET job.name = 'bulk_summarize';
SET job.on_model_error = 'null';
SET job.max_cost_usd = '${MAX_COST_USD:-5}';
SET cache.path = '${OUT:-out}/cache/bulk_summarize/';

CREATE MODEL llm WITH (
    task            = 'chat',
    system          = 'You summarize internal documents for an operations team.',
    max_tokens      = '256',
    temperature     = '0',
    max_concurrency = '16',
    ${LLM:-provider = 'local', path = 'SmolLM2-135M-Instruct', max_batch = '16', 'price.input_per_1m' = '0', 'price.output_per_1m' = '0'}
);

CREATE TABLE docs (
    doc_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    title  TEXT,
    body   TEXT
) WITH (
    connector   = 'file',
    path        = '${DATA:-jobs/data/docs.jsonl}',
    format      = 'json',
    bad_data    = 'dead_letter',
    dead_letter = '${OUT:-out}/dead_letters/bulk_summarize/'
);

CREATE TABLE summaries WITH (
    connector    = 'parquet',
    path         = '${OUT:-out}/summaries/',
    partition_by = 'tenant'
);

INSERT INTO summaries
SELECT doc_id,
       tenant,
       title,
       ai_summarize('llm', body, 60) AS summary,
       token_count(body)             AS body_tokens
FROM docs;
