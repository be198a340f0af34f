//! `connector = 'kafka'`: a streaming (or bounded) source over a consumer
//! group, and a sink producing JSON rows.
//!
//! ```sql
//! CREATE TABLE docs (doc_id TEXT, body TEXT, _partition INT, _offset BIGINT)
//! WITH (connector = 'kafka', bootstrap_servers = '127.0.0.1:9092', topic = 'documents',
//!       group_id = 'rag-ingest', format = 'json', 'scan.startup.mode' = 'earliest',
//!       'scan.bounded.mode' = 'latest', bad_data = 'dead_letter', dead_letter = 'documents.dlq');
//! ```
//!
//! Layout: [`options`] (every option, validated, no I/O), [`decode`] (messages
//! to batches and bad records, metadata columns), [`source`] ([`KafkaSource`]:
//! group membership, epochs, replay, group-offset commits after each committed
//! epoch), [`sink`] ([`KafkaSink`] and the dead-letter topic sink). Bad records
//! are reported to the runtime, which applies `bad_data`; the source only keeps
//! their key and headers aside for the dead-letter topic sink.

pub mod decode;
pub mod options;
pub mod sink;
pub mod source;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use strata_pipeline::Sink;

use crate::{Connector, ConnectorContext, Result, SourceParts, TableDecl};

pub use options::{KafkaSinkOptions, KafkaSourceOptions};
pub use sink::{DeadLetterTopicSink, KafkaSink};
pub use source::KafkaSource;

/// Key and headers of bad records, by (`topic/partition`, offset), kept by the
/// source for the dead-letter topic sink (the runtime's dead-letter rows carry
/// only the value).
pub(crate) type DeadLetterSide =
    Arc<Mutex<HashMap<(String, u64), (Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>)>>>;

/// The `kafka` connector (source and sink).
pub struct KafkaConnector;

#[async_trait]
impl Connector for KafkaConnector {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn is_source(&self) -> bool {
        true
    }

    fn is_sink(&self) -> bool {
        true
    }

    async fn create_source(&self, decl: &TableDecl, ctx: &ConnectorContext) -> Result<SourceParts> {
        let options = KafkaSourceOptions::parse(&decl.options)?;
        let decoder = decode::Decoder::new(
            &decl.name,
            decl.schema.clone(),
            options.format,
            options.max_record_bytes,
        )?;
        let side: DeadLetterSide = Arc::default();
        let dead_letter: Option<Arc<dyn Sink>> = match &options.dead_letter {
            None => None,
            Some(options::DeadLetter::Topic(t)) => Some(Arc::new(DeadLetterTopicSink::new(
                &format!("{}.dead_letter", decl.name),
                &options.bootstrap_servers,
                t,
                options.properties.clone(),
                side.clone(),
            )?)),
            Some(options::DeadLetter::Parquet(p)) => {
                Some(crate::parquet::ParquetSink::for_dead_letters(
                    ctx,
                    &format!("{}.dead_letter", decl.name),
                    p,
                    options.storage.clone(),
                )?)
            }
        };
        let bad_data = options.bad_data;
        Ok(SourceParts {
            source: Box::new(KafkaSource::new(&decl.name, options, decoder, side)),
            bad_data,
            dead_letter,
        })
    }

    async fn create_sink(
        &self,
        decl: &TableDecl,
        schema: SchemaRef,
        _ctx: &ConnectorContext,
    ) -> Result<Arc<dyn Sink>> {
        let options = KafkaSinkOptions::parse(&decl.options)?;
        Ok(Arc::new(KafkaSink::new(&decl.name, schema, &options)?))
    }

    fn is_secret_option(&self, key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        k.contains("secret")
            || k.contains("password")
            || k.contains("token")
            || k.contains("sasl")
            || k.contains("ssl.key")
            || k.contains("credential")
            || k.ends_with("key_id")
    }
}
