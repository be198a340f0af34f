//! Options of `connector = 'kafka'`, for sources and sinks. Every option is
//! documented where it is declared and validated here (no I/O); unknown options
//! are rejected. `'properties.*'` pass through to librdkafka, except the ones
//! strata owns (listed in [`RESERVED_PROPERTIES`]), which are rejected with the
//! option to use instead. Values of `properties.sasl.*`, `properties.ssl.*`
//! passwords and keys are secrets: never logged, masked in `explain`.

use std::collections::BTreeMap;
use std::str::FromStr;

use rdkafka::ClientConfig;
use strata_pipeline::BadDataPolicy;

use crate::options::OptionReader;
use crate::{ConnectorError, Result, TableOptions};

/// Default `max_record_bytes`: 8 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 8 << 20;

/// librdkafka settings strata sets itself; `properties.<one of these>` is an error.
pub const RESERVED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "bootstrap_servers"),
    ("group.id", "group_id"),
    (
        "enable.auto.commit",
        "nothing: offsets are committed after each epoch's files are visible",
    ),
    (
        "enable.auto.offset.store",
        "nothing: strata stores offsets itself",
    ),
    ("auto.offset.reset", "'scan.startup.mode'"),
    (
        "enable.idempotence",
        "nothing: the sink's producer is always idempotent",
    ),
    ("transactional.id", "'sink.delivery'"),
];

/// How a message's value is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KafkaFormat {
    /// One JSON object per message, decoded into the declared columns.
    Json,
    /// The value's bytes as a `value BYTEA` column.
    Raw,
    /// The value as UTF-8 text in a `value TEXT` column.
    Text,
}

impl FromStr for KafkaFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "raw" | "bytes" => Ok(Self::Raw),
            "text" | "string" => Ok(Self::Text),
            other => Err(format!("unknown format '{other}'")),
        }
    }
}

impl std::fmt::Display for KafkaFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Json => "json",
            Self::Raw => "raw",
            Self::Text => "text",
        })
    }
}

/// Where a partition without a committed group offset starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupMode {
    /// The partition's first retained message.
    Earliest,
    /// The partition's end at assignment time (only new messages).
    Latest,
    /// The group's committed offset; `earliest` where there is none.
    GroupOffsets,
    /// The first message at or after `'scan.startup.timestamp-millis'`.
    Timestamp(i64),
}

/// When a source ends by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoundedMode {
    /// Never: a streaming job (default).
    Unbounded,
    /// At the end offsets seen when the job starts.
    Latest,
}

/// Where bad records go when `bad_data = 'dead_letter'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadLetter {
    /// A topic on the same cluster (a bare name).
    Topic(String),
    /// A Parquet table at a path or URL.
    Parquet(String),
}

impl DeadLetter {
    /// A bare name (no `scheme://`, no leading `/` or `.`) is a topic.
    pub fn parse(s: &str) -> Self {
        let t = s.trim();
        if t.contains("://") || t.starts_with('/') || t.starts_with('.') {
            Self::Parquet(t.to_string())
        } else {
            Self::Topic(t.to_string())
        }
    }
}

/// Validated options of a Kafka source.
#[derive(Clone, Debug)]
pub struct KafkaSourceOptions {
    /// `bootstrap_servers` (required): `host:port[,host:port...]`.
    pub bootstrap_servers: String,
    /// `topic` (required): one topic, or several separated by commas (`topics`
    /// is accepted as an alias).
    pub topics: Vec<String>,
    /// `group_id` (required): the consumer group. Processes running the same
    /// job with the same group split the partitions between them.
    pub group_id: String,
    /// `format`: `json` (default), `raw` or `text`.
    pub format: KafkaFormat,
    /// `'scan.startup.mode'`: `group-offsets` (default), `earliest`, `latest`
    /// or `timestamp`. Applies only to partitions with no committed offset
    /// (`group-offsets` falls back to `earliest`).
    pub startup: StartupMode,
    /// `'scan.bounded.mode'`: `unbounded` (default) or `latest`.
    pub bounded: BoundedMode,
    /// `bad_data`: `fail` (default), `drop` or `dead_letter`.
    pub bad_data: BadDataPolicy,
    /// `dead_letter`: a topic (bare name) or a Parquet path/URL; required with
    /// `bad_data = 'dead_letter'`, rejected otherwise.
    pub dead_letter: Option<DeadLetter>,
    /// `max_record_bytes`: a larger value is a bad record. Default 8 MiB.
    pub max_record_bytes: u64,
    /// `'properties.*'`: passed to librdkafka unchanged (security, SASL, TLS...).
    pub properties: BTreeMap<String, String>,
    /// `'storage.*'`: object-store settings of a Parquet dead letter.
    pub storage: BTreeMap<String, String>,
}

/// How the sink delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Idempotent producer; a replayed epoch may produce its rows again.
    AtLeastOnce,
}

/// Validated options of a Kafka sink.
#[derive(Clone, Debug)]
pub struct KafkaSinkOptions {
    /// `bootstrap_servers` (required).
    pub bootstrap_servers: String,
    /// `topic` (required): the topic rows are produced to, created at start
    /// when missing (`'topic.partitions'`, default 1).
    pub topic: String,
    /// `key`: a column whose value (TEXT or BYTEA) is each message's key; the
    /// column is not part of the JSON value.
    pub key: Option<String>,
    /// `headers`: a TEXT column holding a JSON object of header names to string
    /// values; not part of the JSON value.
    pub headers: Option<String>,
    /// `'sink.delivery'`: `at_least_once` (default).
    pub delivery: Delivery,
    /// `'topic.partitions'`: partitions of the topic when strata creates it.
    pub partitions: i32,
    /// `'properties.*'`: passed to librdkafka.
    pub properties: BTreeMap<String, String>,
}

fn invalid(option: &str, value: &str, message: &str) -> ConnectorError {
    ConnectorError::InvalidOption {
        option: option.into(),
        value: value.into(),
        message: message.into(),
    }
}

fn take_properties(
    r: &mut OptionReader,
    options: &TableOptions,
) -> Result<BTreeMap<String, String>> {
    let keys: Vec<String> = options
        .iter()
        .map(|(k, _)| k.clone())
        .filter(|k| k.starts_with("properties."))
        .collect();
    let mut out = BTreeMap::new();
    for k in keys {
        let v = r.take(&k).unwrap_or_default();
        let prop = k["properties.".len()..].to_string();
        if let Some((_, instead)) = RESERVED_PROPERTIES.iter().find(|(p, _)| *p == prop) {
            return Err(invalid(
                &k,
                "",
                &format!("strata sets '{prop}' itself; use {instead}"),
            ));
        }
        if prop.is_empty() {
            return Err(invalid(
                &k,
                &v,
                "name the librdkafka setting after 'properties.'",
            ));
        }
        out.insert(prop, v);
    }
    Ok(out)
}

fn require_nonempty(r: &mut OptionReader, key: &str, hint: &str) -> Result<String> {
    let v = r.require(key, hint)?;
    if v.trim().is_empty() {
        return Err(invalid(key, &v, &format!("the value is empty; {hint}")));
    }
    Ok(v.trim().to_string())
}

impl KafkaSourceOptions {
    /// Read and validate every option; unknown ones are errors.
    pub fn parse(options: &TableOptions) -> Result<Self> {
        let mut r = options.reader("kafka");
        let bootstrap_servers = require_nonempty(
            &mut r,
            "bootstrap_servers",
            "set bootstrap_servers = 'host:9092' (comma-separated for several brokers)",
        )?;
        let topic = r.take("topic");
        let topics_alias = r.take("topics");
        let topic = match (topic, topics_alias) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "topics",
                    "",
                    "set either topic or topics, not both",
                ))
            }
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => {
                return Err(ConnectorError::MissingOption {
                    connector: "kafka".into(),
                    option: "topic".into(),
                    hint: "set topic = 'name' (or several: topic = 'a,b')".into(),
                })
            }
        };
        let topics: Vec<String> = topic
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if topics.is_empty() {
            return Err(invalid("topic", &topic, "no topic named"));
        }
        let group_id = require_nonempty(
            &mut r,
            "group_id",
            "set group_id = 'my-job': committed offsets and scale-out are per group",
        )?;
        let format = r
            .take_parsed::<KafkaFormat>("format", "'json', 'raw' or 'text'")?
            .unwrap_or(KafkaFormat::Json);
        let mode = r.take("scan.startup.mode");
        let ts = r.take("scan.startup.timestamp-millis");
        let startup = match (mode.as_deref().map(|m| m.trim().to_ascii_lowercase()), &ts) {
            (Some(m), t) if m == "timestamp" => {
                let t = t.as_deref().ok_or_else(|| ConnectorError::MissingOption {
                    connector: "kafka".into(),
                    option: "scan.startup.timestamp-millis".into(),
                    hint: "'scan.startup.mode' = 'timestamp' needs the start time in milliseconds since 1970".into(),
                })?;
                StartupMode::Timestamp(t.trim().parse::<i64>().map_err(|e| {
                    invalid(
                        "scan.startup.timestamp-millis",
                        t,
                        &format!("{e}; expected milliseconds since 1970"),
                    )
                })?)
            }
            (_, Some(t)) => {
                return Err(invalid(
                    "scan.startup.timestamp-millis",
                    t,
                    "only applies with 'scan.startup.mode' = 'timestamp'",
                ))
            }
            (None, None) => StartupMode::GroupOffsets,
            (Some(m), None) => match m.as_str() {
                "earliest" | "earliest-offset" => StartupMode::Earliest,
                "latest" | "latest-offset" => StartupMode::Latest,
                "group-offsets" | "group_offsets" => StartupMode::GroupOffsets,
                other => {
                    return Err(invalid(
                        "scan.startup.mode",
                        other,
                        "expected 'earliest', 'latest', 'group-offsets' or 'timestamp'",
                    ))
                }
            },
        };
        let bounded = match r
            .take("scan.bounded.mode")
            .map(|m| m.trim().to_ascii_lowercase())
        {
            None => BoundedMode::Unbounded,
            Some(m) if m == "unbounded" => BoundedMode::Unbounded,
            Some(m) if m == "latest" || m == "latest-offset" => BoundedMode::Latest,
            Some(other) => {
                return Err(invalid(
                    "scan.bounded.mode",
                    &other,
                    "expected 'unbounded' or 'latest'",
                ))
            }
        };
        let bad_data = r
            .take_parsed::<BadDataPolicy>("bad_data", "'fail', 'drop' or 'dead_letter'")?
            .unwrap_or_default();
        let dead_letter = r.take("dead_letter");
        let max_record_bytes = r
            .take_bytes("max_record_bytes")?
            .unwrap_or(DEFAULT_MAX_RECORD_BYTES);
        let properties = take_properties(&mut r, options)?;
        let storage = r.take_storage();
        r.finish()?;
        let dead_letter = match (bad_data, dead_letter) {
            (BadDataPolicy::DeadLetter, None) => {
                return Err(ConnectorError::MissingOption {
                    connector: "kafka".into(),
                    option: "dead_letter".into(),
                    hint: "bad_data = 'dead_letter' needs dead_letter = '<topic>' (a bare name) or a Parquet path/URL".into(),
                })
            }
            (BadDataPolicy::DeadLetter, Some(d)) if d.trim().is_empty() => {
                return Err(invalid("dead_letter", &d, "the topic or path is empty"))
            }
            (BadDataPolicy::DeadLetter, Some(d)) => Some(DeadLetter::parse(&d)),
            (policy, Some(d)) => {
                return Err(invalid(
                    "dead_letter",
                    &d,
                    &format!("dead_letter only applies with bad_data = 'dead_letter' (bad_data is '{policy}')"),
                ))
            }
            (_, None) => None,
        };
        if max_record_bytes == 0 {
            return Err(invalid("max_record_bytes", "0", "must be at least 1 byte"));
        }
        if !storage.is_empty() && !matches!(dead_letter, Some(DeadLetter::Parquet(_))) {
            let k = storage.keys().next().cloned().unwrap_or_default();
            return Err(invalid(
                &k,
                "",
                "'storage.*' options only apply to a Parquet dead_letter path",
            ));
        }
        Ok(Self {
            bootstrap_servers,
            topics,
            group_id,
            format,
            startup,
            bounded,
            bad_data,
            dead_letter,
            max_record_bytes,
            properties,
            storage,
        })
    }

    /// The consumer's librdkafka configuration.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Low-latency fetches (a broker that answers only when the wait runs
            // out, like tansu, would otherwise cap throughput) and large batches.
            .set("fetch.wait.max.ms", "10")
            .set("max.partition.fetch.bytes", "8388608")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "5000")
            // Per-partition consumer lag for strata_kafka_consumer_lag.
            .set("statistics.interval.ms", "1000");
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}

impl KafkaSinkOptions {
    /// Read and validate every option; unknown ones are errors.
    pub fn parse(options: &TableOptions) -> Result<Self> {
        let mut r = options.reader("kafka");
        let bootstrap_servers = require_nonempty(
            &mut r,
            "bootstrap_servers",
            "set bootstrap_servers = 'host:9092'",
        )?;
        let topic = require_nonempty(
            &mut r,
            "topic",
            "set topic = 'name' (the topic rows are produced to)",
        )?;
        if topic.contains(',') {
            return Err(invalid("topic", &topic, "a sink writes to one topic"));
        }
        let key = r.take("key").map(|k| k.trim().to_string());
        let headers = r.take("headers").map(|k| k.trim().to_string());
        let delivery = match r.take("sink.delivery").map(|d| d.trim().to_ascii_lowercase()) {
            None => Delivery::AtLeastOnce,
            Some(d) if d == "at_least_once" || d == "at-least-once" => Delivery::AtLeastOnce,
            Some(d) if d == "exactly_once" || d == "exactly-once" => {
                return Err(invalid(
                    "sink.delivery",
                    &d,
                    "exactly-once delivery into Kafka (transactions) is not implemented yet; use 'at_least_once' (idempotent producer; a replayed epoch may produce its rows again) or write to a parquet sink, which is exactly-once",
                ))
            }
            Some(d) => return Err(invalid("sink.delivery", &d, "expected 'at_least_once'")),
        };
        let partitions = r
            .take_parsed::<i32>("topic.partitions", "a positive number")?
            .unwrap_or(1);
        if partitions < 1 {
            return Err(invalid(
                "topic.partitions",
                &partitions.to_string(),
                "must be at least 1",
            ));
        }
        let properties = take_properties(&mut r, options)?;
        r.finish()?;
        Ok(Self {
            bootstrap_servers,
            topic,
            key,
            headers,
            delivery,
            partitions,
            properties,
        })
    }
}

/// An idempotent producer's configuration.
pub fn producer_config(bootstrap: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000");
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(pairs: &[(&str, &str)]) -> Result<KafkaSourceOptions> {
        let mut all = vec![
            ("connector", "kafka"),
            ("bootstrap_servers", "h:9092"),
            ("group_id", "g"),
        ];
        all.extend_from_slice(pairs);
        KafkaSourceOptions::parse(&TableOptions::from_pairs(all))
    }

    #[test]
    fn source_options() {
        let o = src(&[
            ("topic", "a, b"),
            ("scan.startup.mode", "earliest"),
            ("scan.bounded.mode", "latest"),
        ])
        .unwrap();
        assert_eq!(o.topics, vec!["a", "b"]);
        assert_eq!(o.startup, StartupMode::Earliest);
        assert_eq!(o.bounded, BoundedMode::Latest);
        let e = src(&[("topic", "a"), ("scan.startup.mode", "timestamp")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("scan.startup.timestamp-millis"), "{e}");
        let e = src(&[("topic", "a"), ("properties.group.id", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("use group_id"), "{e}");
        let e = src(&[("topic", "a"), ("bogus", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown option 'bogus'"), "{e}");
        let o = src(&[("topic", "a"), ("properties.security.protocol", "SASL_SSL")]).unwrap();
        assert_eq!(
            o.properties.get("security.protocol").map(String::as_str),
            Some("SASL_SSL")
        );
    }

    #[test]
    fn dead_letter_kinds() {
        assert_eq!(
            DeadLetter::parse("docs.dlq"),
            DeadLetter::Topic("docs.dlq".into())
        );
        assert_eq!(
            DeadLetter::parse("s3://b/dlq/"),
            DeadLetter::Parquet("s3://b/dlq/".into())
        );
        assert_eq!(
            DeadLetter::parse("./dlq"),
            DeadLetter::Parquet("./dlq".into())
        );
    }
}
