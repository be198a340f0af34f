-- PII redaction before text goes anywhere else: mask every entity strata detects and
-- keep, per document, which entity types were found (for auditing, not the values).
--
--   strata run jobs/redact.sql --var OUT=/tmp/redact
SET job.name = 'redact';
SET pii.min_score = '0.5';

CREATE TABLE tickets (
    doc_id TEXT NOT NULL,
    body   TEXT
) WITH (
    connector = 'file',
    path      = '${INPUT:-jobs/data/pii_docs.jsonl}',
    format    = 'json'
);

CREATE TABLE redacted WITH (
    connector = 'parquet',
    path      = '${OUT:-out}/redact/'
);

INSERT INTO redacted
SELECT doc_id,
       redact_pii(body) AS body,
       redact_pii(body, ['EMAIL', 'PHONE'], 'remove') AS body_no_contacts,
       cardinality(detect_pii(body)) AS pii_count
FROM tickets;
