-- The job docker-compose.yml runs: JSON documents from Kafka to Parquet on S3
-- (MinIO in the compose stack), exactly once. Every replica of the strata
-- service joins group 'strata-ingest' and takes a share of the partitions.
SET job.name = 'kafka-ingest';
SET epoch.max_ms = '${EPOCH_MS:-5000}';
CREATE TABLE documents (doc_id TEXT NOT NULL, tenant TEXT, body TEXT,
                        _partition INT, _offset BIGINT, _timestamp TIMESTAMPTZ)
WITH (connector = 'kafka', bootstrap_servers = '${KAFKA:-127.0.0.1:9092}',
      topic = '${TOPIC:-documents}', group_id = '${GROUP:-strata-ingest}', format = 'json',
      'scan.startup.mode' = 'earliest',
      bad_data = 'dead_letter', dead_letter = '${TOPIC:-documents}.dlq');
CREATE TABLE docs_out WITH (connector = 'parquet', path = '${OUT:-s3://strata/documents/}',
      partition_by = 'tenant', compression = 'zstd');
INSERT INTO docs_out
SELECT doc_id, tenant, body, _partition, _offset, _timestamp FROM documents;
