-- Quickstart: split a corpus of documents into token-bounded passages, ready
-- for embedding, and write them as Parquet partitioned by tenant and day.
--
--   strata run jobs/quickstart.sql                      # reads jobs/data/docs.jsonl, writes ./out/
--   strata run jobs/quickstart.sql --var OUT=/tmp/q     # somewhere else
SET job.name = 'quickstart';

CREATE TABLE docs (
    doc_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    title  TEXT,
    body   TEXT,
    ts     TIMESTAMP,
    lang   TEXT
) WITH (
    connector   = 'file',
    path        = '${DATA:-jobs/data/docs.jsonl}',
    format      = 'json',
    bad_data    = 'dead_letter',
    dead_letter = '${OUT:-out}/dead_letters/quickstart/'
);

CREATE TABLE chunks WITH (
    connector    = 'parquet',
    path         = '${OUT:-out}/chunks/',
    partition_by = 'tenant, dt'
);

INSERT INTO chunks
SELECT doc_id,
       tenant,
       title,
       c['chunk_index'] AS chunk_index,
       c['text']        AS text,
       c['tokens']      AS tokens,
       c['start_char']  AS start_char,
       c['end_char']    AS end_char,
       date_format(ts, '%Y-%m-%d') AS dt
FROM (SELECT doc_id, tenant, title, ts, unnest(chunk_text(body, 128, 16)) AS c FROM docs);
