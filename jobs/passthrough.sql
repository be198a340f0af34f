-- Pass-through: JSON Lines in, Parquet out, nothing in between. The end-to-end
-- throughput benchmark (benches/e2e.sh) runs this on 1M rows of ~1 KB.
--
--   strata run jobs/passthrough.sql --var INPUT=big.jsonl --var OUT=/tmp/pt
SET job.name = 'passthrough';
SET epoch.max_rows = '${EPOCH_ROWS:-200000}';

CREATE TABLE docs (
    doc_id TEXT NOT NULL,
    tenant TEXT,
    title  TEXT,
    body   TEXT,
    ts     TIMESTAMP,
    lang   TEXT
) WITH (
    connector = 'file',
    path      = '${INPUT:-jobs/data/docs.jsonl}',
    format    = 'json'
);

CREATE TABLE docs_parquet WITH (
    connector = 'parquet',
    path      = '${OUT:-out}/passthrough/'
);

INSERT INTO docs_parquet SELECT * FROM docs;
