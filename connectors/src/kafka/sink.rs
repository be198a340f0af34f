//! Producing to Kafka: [`KafkaSink`] (rows of an `INSERT INTO` as JSON
//! messages) and [`DeadLetterTopicSink`] (a Kafka source's bad records, with
//! their original key, value and headers plus `strata.*` headers).
//!
//! Both are at-least-once: an epoch's messages are buffered while the epoch
//! runs and produced by an idempotent producer when the runtime publishes the
//! epoch (after its offsets are logged); `publish` returns once the brokers
//! acknowledged every message. A replayed epoch produces its messages again.
//! Missing topics are created when the job starts ([`Sink::recover`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use strata_pipeline::bad_data::dead_letter_schema;
use strata_pipeline::sink::EpochInfo;
use strata_pipeline::{EpochWriter, PipelineError, Result, Sink, SinkStats, StagedEpoch};

use super::options::producer_config;
use super::DeadLetterSide;

/// One message to produce.
#[derive(Clone, Debug)]
struct OutMsg {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
}

/// A topic and the producer writing to it.
struct Target {
    name: String,
    bootstrap: String,
    topic: String,
    partitions: i32,
    properties: BTreeMap<String, String>,
    producer: FutureProducer,
}

impl Target {
    fn new(
        name: &str,
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        properties: BTreeMap<String, String>,
    ) -> crate::Result<Self> {
        let producer: FutureProducer =
            producer_config(bootstrap, &properties)
                .create()
                .map_err(|e| crate::ConnectorError::InvalidOption {
                    option: "properties.*".into(),
                    value: String::new(),
                    message: format!("cannot create the Kafka producer for table '{name}': {e}"),
                })?;
        Ok(Self {
            name: name.into(),
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            partitions,
            properties,
            producer,
        })
    }

    fn err(&self, m: impl std::fmt::Display) -> PipelineError {
        PipelineError::sink(&self.name, m)
    }

    /// Create the topic when it does not exist.
    async fn ensure_topic(&self) -> Result<()> {
        let mut config = rdkafka::ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        let admin: AdminClient<DefaultClientContext> = config
            .create()
            .map_err(|e| self.err(format!("cannot create a Kafka admin client: {e}")))?;
        let topic = NewTopic::new(&self.topic, self.partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(15)));
        let res = admin.create_topics([&topic], &opts).await.map_err(|e| {
            self.err(format!(
                "cannot create or check topic '{}' at '{}' ({e}); check that the brokers are up, or create the topic yourself",
                self.topic, self.bootstrap
            ))
        })?;
        for r in res {
            match r {
                Ok(_) => tracing::info!(sink = %self.name, topic = %self.topic, partitions = self.partitions, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(self.err(format!("cannot create topic '{t}' ({code}); create it yourself or grant the job's principal CreateTopics")))
                }
            }
        }
        Ok(())
    }

    /// Produce every message; returns bytes produced once all are acknowledged.
    async fn produce(&self, msgs: Vec<OutMsg>) -> Result<u64> {
        let mut pending: std::collections::VecDeque<DeliveryFuture> =
            std::collections::VecDeque::new();
        let mut bytes = 0u64;
        for m in &msgs {
            let mut headers = OwnedHeaders::new_with_capacity(m.headers.len());
            for (k, v) in &m.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            bytes += m.value.as_ref().map_or(0, |v| v.len()) as u64;
            let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> =
                FutureRecord::to(&self.topic).headers(headers);
            if let Some(k) = &m.key {
                record = record.key(k);
            }
            if let Some(v) = &m.value {
                record = record.payload(v);
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(f) => {
                        pending.push_back(f);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        match pending.pop_front() {
                            Some(f) => self.settle(f).await?,
                            None => tokio::time::sleep(Duration::from_millis(10)).await,
                        }
                    }
                    Err((e, _)) => {
                        return Err(
                            self.err(format!("cannot produce to topic '{}': {e}", self.topic))
                        )
                    }
                }
            }
        }
        for f in pending {
            self.settle(f).await?;
        }
        Ok(bytes)
    }

    async fn settle(&self, f: DeliveryFuture) -> Result<()> {
        match f.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => {
                Err(self.err(format!("producing to topic '{}' failed: {e}", self.topic)))
            }
            Err(_) => Err(self.err(format!("the producer for topic '{}' shut down", self.topic))),
        }
    }

    fn location(&self) -> String {
        format!("kafka://{}/{}", self.bootstrap, self.topic)
    }
}

/// Rows of an `INSERT INTO` a Kafka table, as JSON objects.
pub struct KafkaSink {
    target: Arc<Target>,
    schema: SchemaRef,
    key: Option<usize>,
    headers: Option<usize>,
}

impl KafkaSink {
    pub(crate) fn new(
        name: &str,
        schema: SchemaRef,
        options: &super::options::KafkaSinkOptions,
    ) -> crate::Result<Self> {
        let find = |opt: &str,
                    col: &Option<String>,
                    types: &[DataType],
                    what: &str|
         -> crate::Result<Option<usize>> {
            let Some(c) = col else { return Ok(None) };
            let (i, f) =
                schema
                    .column_with_name(c)
                    .ok_or_else(|| crate::ConnectorError::InvalidOption {
                        option: opt.into(),
                        value: c.clone(),
                        message: format!(
                            "the query has no column '{c}'; its columns are {:?}",
                            schema
                                .fields()
                                .iter()
                                .map(|f| f.name().as_str())
                                .collect::<Vec<_>>()
                        ),
                    })?;
            if !types.contains(f.data_type()) {
                return Err(crate::ConnectorError::InvalidOption {
                    option: opt.into(),
                    value: c.clone(),
                    message: format!("column '{c}' is {}; {what}", f.data_type()),
                });
            }
            Ok(Some(i))
        };
        let key = find(
            "key",
            &options.key,
            &[
                DataType::Utf8,
                DataType::LargeUtf8,
                DataType::Utf8View,
                DataType::Binary,
            ],
            "a key column must be TEXT or BYTEA",
        )?;
        let headers = find(
            "headers",
            &options.headers,
            &[DataType::Utf8, DataType::LargeUtf8, DataType::Utf8View],
            "a headers column must be TEXT holding a JSON object of header name to value",
        )?;
        if key.is_some() && key == headers {
            return Err(crate::ConnectorError::InvalidOption {
                option: "headers".into(),
                value: options.headers.clone().unwrap_or_default(),
                message: "the key column cannot also be the headers column".into(),
            });
        }
        let target = Target::new(
            name,
            &options.bootstrap_servers,
            &options.topic,
            options.partitions,
            options.properties.clone(),
        )?;
        Ok(Self {
            target: Arc::new(target),
            schema,
            key,
            headers,
        })
    }
}

fn bytes_at(a: &dyn Array, i: usize) -> Option<Vec<u8>> {
    if a.is_null(i) {
        return None;
    }
    Some(match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().value(i).as_bytes().to_vec(),
        DataType::LargeUtf8 => a.as_string::<i64>().value(i).as_bytes().to_vec(),
        DataType::Utf8View => a.as_string_view().value(i).as_bytes().to_vec(),
        DataType::Binary => a.as_binary::<i32>().value(i).to_vec(),
        _ => return None,
    })
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.target.name
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    async fn recover(&self) -> Result<()> {
        self.target.ensure_topic().await
    }
    async fn begin_epoch(&self, _epoch: &EpochInfo) -> Result<Box<dyn EpochWriter>> {
        Ok(Box::new(RowWriter {
            sink: self.target.clone(),
            key: self.key,
            headers: self.headers,
            msgs: Vec::new(),
        }))
    }
    async fn remove(&self, _objects: &[String]) -> Result<()> {
        Ok(())
    }
    fn location(&self) -> String {
        self.target.location()
    }
}

struct RowWriter {
    sink: Arc<Target>,
    key: Option<usize>,
    headers: Option<usize>,
    msgs: Vec<OutMsg>,
}

#[async_trait]
impl EpochWriter for RowWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let keep: Vec<usize> = (0..batch.num_columns())
            .filter(|i| Some(*i) != self.key && Some(*i) != self.headers)
            .collect();
        let values = batch.project(&keep)?;
        let mut w = arrow_json::LineDelimitedWriter::new(Vec::new());
        w.write(&values)?;
        w.finish()?;
        let out = w.into_inner();
        let lines = out.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        for (i, line) in lines.enumerate() {
            let key = self.key.and_then(|k| bytes_at(batch.column(k).as_ref(), i));
            let mut headers = Vec::new();
            if let Some(h) = self
                .headers
                .and_then(|h| bytes_at(batch.column(h).as_ref(), i))
            {
                let v: serde_json::Value = serde_json::from_slice(&h).map_err(|e| {
                    self.sink.err(format!(
                        "headers column: row {i} is not a JSON object ({e}): {}",
                        String::from_utf8_lossy(&h)
                    ))
                })?;
                let serde_json::Value::Object(obj) = v else {
                    return Err(self.sink.err(format!(
                        "headers column: row {i} is not a JSON object: {}",
                        String::from_utf8_lossy(&h)
                    )));
                };
                for (k, v) in obj {
                    let v = match v {
                        serde_json::Value::String(s) => s.into_bytes(),
                        serde_json::Value::Null => continue,
                        other => other.to_string().into_bytes(),
                    };
                    headers.push((k, v));
                }
            }
            self.msgs.push(OutMsg {
                key,
                value: Some(line.to_vec()),
                headers,
            });
        }
        Ok(())
    }
    async fn finish(self: Box<Self>) -> Result<Box<dyn StagedEpoch>> {
        Ok(Box::new(Staged {
            sink: self.sink,
            msgs: self.msgs,
        }))
    }
}

struct Staged {
    sink: Arc<Target>,
    msgs: Vec<OutMsg>,
}

#[async_trait]
impl StagedEpoch for Staged {
    fn objects(&self) -> Vec<String> {
        Vec::new()
    }
    async fn publish(self: Box<Self>) -> Result<SinkStats> {
        let rows = self.msgs.len() as u64;
        let bytes = self.sink.produce(self.msgs).await?;
        let _ = self.sink.producer.flush(Duration::from_secs(0));
        Ok(SinkStats {
            rows,
            files: 0,
            bytes,
        })
    }
}

/// A Kafka source's bad records, produced to a dead-letter topic.
pub struct DeadLetterTopicSink {
    target: Arc<Target>,
    side: DeadLetterSide,
}

impl DeadLetterTopicSink {
    pub(crate) fn new(
        name: &str,
        bootstrap: &str,
        topic: &str,
        properties: BTreeMap<String, String>,
        side: DeadLetterSide,
    ) -> crate::Result<Self> {
        Ok(Self {
            target: Arc::new(Target::new(name, bootstrap, topic, 1, properties)?),
            side,
        })
    }
}

#[async_trait]
impl Sink for DeadLetterTopicSink {
    fn name(&self) -> &str {
        &self.target.name
    }
    fn schema(&self) -> SchemaRef {
        dead_letter_schema()
    }
    async fn recover(&self) -> Result<()> {
        self.target.ensure_topic().await
    }
    async fn begin_epoch(&self, _epoch: &EpochInfo) -> Result<Box<dyn EpochWriter>> {
        Ok(Box::new(DeadLetterWriter {
            sink: self.target.clone(),
            side: self.side.clone(),
            msgs: Vec::new(),
        }))
    }
    async fn remove(&self, _objects: &[String]) -> Result<()> {
        Ok(())
    }
    fn location(&self) -> String {
        self.target.location()
    }
}

struct DeadLetterWriter {
    sink: Arc<Target>,
    side: DeadLetterSide,
    msgs: Vec<OutMsg>,
}

#[async_trait]
impl EpochWriter for DeadLetterWriter {
    async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        let col = |n: &str| {
            batch
                .column_by_name(n)
                .cloned()
                .ok_or_else(|| self.sink.err(format!("dead-letter batch lacks '{n}'")))
        };
        let split = col("split")?;
        let position = col("position")?;
        let reason = col("reason")?;
        let raw = col("raw")?;
        let split = split.as_string::<i32>();
        let position = position.as_primitive::<arrow::datatypes::UInt64Type>();
        let reason = reason.as_string::<i32>();
        let raw = raw.as_binary::<i32>();
        let mut side = self.side.lock().expect("lock");
        for i in 0..batch.num_rows() {
            let s = split.value(i).to_string();
            let pos = position.value(i);
            let (key, orig) = side.remove(&(s.clone(), pos)).unwrap_or_default();
            let (topic, partition) = s.rsplit_once('/').unwrap_or((s.as_str(), ""));
            let mut headers: Vec<(String, Vec<u8>)> = orig
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            headers.push(("strata.error".into(), reason.value(i).as_bytes().to_vec()));
            headers.push(("strata.source.topic".into(), topic.as_bytes().to_vec()));
            headers.push((
                "strata.source.partition".into(),
                partition.as_bytes().to_vec(),
            ));
            headers.push(("strata.source.offset".into(), pos.to_string().into_bytes()));
            // A tombstone stays a tombstone (raw is empty for it).
            let value = if raw.value(i).is_empty() {
                None
            } else {
                Some(raw.value(i).to_vec())
            };
            self.msgs.push(OutMsg {
                key,
                value,
                headers,
            });
        }
        Ok(())
    }
    async fn finish(self: Box<Self>) -> Result<Box<dyn StagedEpoch>> {
        Ok(Box::new(Staged {
            sink: self.sink,
            msgs: self.msgs,
        }))
    }
}
