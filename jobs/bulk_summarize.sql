-- Offline bulk summarization: documents -> ai_summarize -> Parquet, with a persistent
-- response cache (a rerun pays nothing for documents already summarized), a cost budget
-- and NULL (counted) for a document the model keeps refusing.
--
-- The model is any OpenAI-compatible chat endpoint: vLLM, llama.cpp server, Ollama, OpenAI.
--   strata run jobs/bulk_summarize.sql --var LLM_ENDPOINT=http://localhost:11434/v1 --var LLM_MODEL=llama3.2
--   strata run jobs/bulk_summarize.sql --var DATA='s3://bucket/docs/*.jsonl' --var OUT=s3://bucket/summaries
-- With OpenAI itself, add --var LLM_ENDPOINT=https://api.openai.com/v1 and an api_key_env
-- option naming the variable that holds the key.
SET job.name = 'bulk_summarize';
SET job.on_model_error = 'null';
SET job.max_cost_usd = '${MAX_COST_USD:-5}';
SET cache.path = '${OUT:-out}/cache/bulk_summarize/';

CREATE MODEL llm WITH (
    provider                      = 'openai',
    task                          = 'chat',
    endpoint                      = '${LLM_ENDPOINT:-http://127.0.0.1:8000/v1}',
    model                         = '${LLM_MODEL:-SmolLM2-135M-Instruct}',
    system                        = 'You summarize internal documents for an operations team.',
    max_tokens                    = '256',
    temperature                   = '0',
    max_concurrency               = '16',
    'limits.requests_per_minute'  = '${LLM_RPM:-3000}',
    'price.input_per_1m'          = '${PRICE_IN:-0.15}',
    'price.output_per_1m'         = '${PRICE_OUT:-0.60}'
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
