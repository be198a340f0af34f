-- RAG ingest: split documents into passages, embed each passage with a local
-- sentence-transformers model on the batch executor, and write text + vector
-- Parquet partitioned by tenant and day (plus an `embedding_model` column that
-- strata adds, so vectors of different models are never mixed up).
--
--   strata run jobs/rag_ingest.sql                         # jobs/data/docs.jsonl -> ./out/vectors/
--   strata run jobs/rag_ingest.sql --var DATA='s3://bucket/docs/*.jsonl' --var OUT=s3://bucket/rag
--
-- Check the ingest with a question (see README, "Retrieval check"):
--   strata query "CREATE MODEL minilm WITH (provider = 'local');
--                 SELECT doc_id, text, cosine_similarity(embedding, embed('minilm', 'how do refunds work?')) AS score
--                 FROM v ORDER BY score DESC LIMIT 5" --table v=out/vectors/
SET job.name = 'rag_ingest';

CREATE MODEL minilm WITH (
    provider  = 'local',
    task      = 'embedding',
    path      = '${MODEL:-all-MiniLM-L6-v2}',
    max_batch = '16'
);

CREATE TABLE docs (
    doc_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    title  TEXT,
    body   TEXT,
    ts     TIMESTAMP
) WITH (
    connector   = 'file',
    path        = '${DATA:-jobs/data/docs.jsonl}',
    format      = 'json',
    bad_data    = 'dead_letter',
    dead_letter = '${OUT:-out}/dead_letters/rag_ingest/'
);

CREATE TABLE vectors WITH (
    connector    = 'parquet',
    path         = '${OUT:-out}/vectors/',
    partition_by = 'tenant, dt'
);

INSERT INTO vectors
SELECT doc_id,
       tenant,
       c['chunk_index']             AS chunk_index,
       c['text']                    AS text,
       c['tokens']                  AS tokens,
       embed('minilm', c['text'])   AS embedding,
       date_format(ts, '%Y-%m-%d')  AS dt
FROM (SELECT doc_id, tenant, ts, unnest(chunk_text(body, 200, 20)) AS c FROM docs);
