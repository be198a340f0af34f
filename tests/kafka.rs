//! End-to-end tests of the Kafka connector through the `strata` binary, against
//! the tansu broker that `scripts/kafka_server.sh` starts on 127.0.0.1
//! (`STRATA_TEST_KAFKA_BOOTSTRAP`; `scripts/test.sh` sets it). Without a broker
//! every test here fails: it never passes by skipping.
//!
//! Each test uses its own topics and group, named after the test and the
//! process, so tests run in parallel against one broker.

mod common;
#[path = "../operators/tests/common/fake_endpoints.rs"]
mod fake_endpoints;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{json, Value};

fn bootstrap() -> String {
    std::env::var("STRATA_TEST_KAFKA_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "the Kafka tests need a broker: run them with scripts/test.sh, or start one with \
             eval \"$(scripts/kafka_server.sh start)\" (sets STRATA_TEST_KAFKA_BOOTSTRAP)"
        )
    })
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A name unique to this test run.
fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    let res = rt()
        .block_on(admin.create_topics(
            [&NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(20))),
        ))
        .unwrap_or_else(|e| panic!("create topic {name} at {}: {e}", bootstrap()));
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// A message to produce: partition, key, value (None: tombstone), headers.
struct Msg {
    partition: i32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(&'static str, Vec<u8>)>,
}

fn produce(topic: &str, msgs: Vec<Msg>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "5")
        .set("message.max.bytes", "10000000")
        .create()
        .expect("producer");
    rt().block_on(async {
        let mut pending = Vec::new();
        for m in &msgs {
            let mut h = OwnedHeaders::new();
            for (k, v) in &m.headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut r: FutureRecord<'_, Vec<u8>, Vec<u8>> =
                FutureRecord::to(topic).partition(m.partition).headers(h);
            if let Some(k) = &m.key {
                r = r.key(k);
            }
            if let Some(v) = &m.value {
                r = r.payload(v);
            }
            pending.push(producer.send(r, Duration::from_secs(30)));
            if pending.len() >= 5000 {
                for f in pending.drain(..) {
                    f.await.map_err(|(e, _)| e).expect("produce");
                }
            }
        }
        for f in pending {
            f.await.map_err(|(e, _)| e).expect("produce");
        }
    });
}

/// `n` JSON documents with ids `from..from+n`, spread over `partitions`.
fn produce_docs(topic: &str, partitions: i32, from: i64, n: i64) {
    let msgs = (from..from + n)
        .map(|id| Msg {
            partition: (id % partitions as i64) as i32,
            key: Some(format!("k{id}").into_bytes()),
            value: Some(
                json!({"id": id, "body": format!("document {id} ").repeat(4)})
                    .to_string()
                    .into_bytes(),
            ),
            headers: vec![],
        })
        .collect();
    produce(topic, msgs);
}

/// Every message of `topic` (all partitions, from the start).
fn consume_all(
    topic: &str,
    expected: usize,
) -> Vec<(Option<Vec<u8>>, Option<Vec<u8>>, BTreeMap<String, String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(20))
        .expect("metadata");
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
        let (_, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(20))
            .unwrap();
        ends.insert(*p, high);
    }
    consumer.assign(&tpl).unwrap();
    let mut next: BTreeMap<i32, i64> = parts.iter().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // tansu's end offsets can lag behind batches from an idempotent producer:
    // read until `expected` messages arrived.
    let _ = &ends;
    while out.len() < expected {
        assert!(
            Instant::now() < deadline,
            "reading {topic} back timed out after {} of {expected} messages",
            out.len()
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.expect("consume");
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().map(<[u8]>::to_vec),
                m.payload().map(<[u8]>::to_vec),
                headers,
            ));
            next.insert(m.partition(), m.offset() + 1);
        }
    }
    out
}

/// A job reading JSON documents from `topic` into a Parquet table at `out`.
fn docs_job(
    dir: &Path,
    job: &str,
    topic: &str,
    group: &str,
    out: &Path,
    extra: &str,
) -> std::path::PathBuf {
    let text = format!(
        "SET job.name = '{job}';\n\
         SET epoch.max_rows = '500';\n\
         CREATE TABLE src (id BIGINT NOT NULL, body TEXT, _partition INT, _offset BIGINT, _key TEXT)\n\
         WITH (connector = 'kafka', bootstrap_servers = '{bs}', topic = '{topic}', group_id = '{group}',\n\
               'scan.startup.mode' = 'earliest', 'scan.bounded.mode' = 'latest'{extra});\n\
         CREATE TABLE out WITH (connector = 'parquet', path = '{out}/');\n\
         INSERT INTO out SELECT id, body, _partition, _offset, _key FROM src;\n",
        bs = bootstrap(),
        out = s(out),
    );
    write_job(dir, "kafka.sql", &text)
}

fn spawn_run(dir: &Path, job: &Path, tag: &str) -> Child {
    let mut cmd = strata_cmd(dir);
    cmd.args(["run", s(job)])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{tag}.stdout"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{tag}.stderr"))).unwrap());
    cmd.spawn().expect("start strata run")
}

fn logs(dir: &Path, tag: &str) -> String {
    format!(
        "--- stdout\n{}\n--- stderr\n{}",
        std::fs::read_to_string(dir.join(format!("{tag}.stdout"))).unwrap_or_default(),
        std::fs::read_to_string(dir.join(format!("{tag}.stderr"))).unwrap_or_default()
    )
}

#[test]
fn bounded_run_writes_every_message_exactly_once_and_resumes_from_group_offsets() {
    let topic = unique("docs");
    create_topic(&topic, 4);
    produce_docs(&topic, 4, 0, 3000);
    let dir = tempdir();
    let out = dir.path().join("out");
    let job = docs_job(dir.path(), "kafka-bounded", &topic, &unique("g"), &out, "");
    let summary = strata(dir.path(), &["run", s(&job)]).summary("first bounded run");
    assert_eq!(summary.source("src").records, 3000);
    assert_eq!(summary.sink("out").rows, 3000);
    let rows = table_rows(&out);
    assert_exactly_once(&int_column(&rows, "id"), 3000, "first run");
    // Metadata columns: the partition and key are those the message was produced with.
    for r in &rows {
        let id = r["id"].as_i64().unwrap();
        assert_eq!(r["_partition"].as_i64(), Some(id % 4), "{r:?}");
        assert_eq!(r["_key"].as_str(), Some(format!("k{id}").as_str()), "{r:?}");
    }
    assert_clean_table(&out, &[]);

    // New messages: a second run reads only those (group offsets were committed).
    produce_docs(&topic, 4, 3000, 500);
    let summary = strata(dir.path(), &["run", s(&job)]).summary("second bounded run");
    assert_eq!(summary.source("src").records, 500);
    assert_exactly_once(
        &int_column(&table_rows(&out), "id"),
        3500,
        "after the second run",
    );
}

#[test]
fn sigkill_mid_run_then_rerun_loses_nothing_and_duplicates_nothing() {
    let topic = unique("kill");
    create_topic(&topic, 4);
    let n = 20_000;
    produce_docs(&topic, 4, 0, n);
    let dir = tempdir();
    let out = dir.path().join("out");
    let job = docs_job(dir.path(), "kafka-kill", &topic, &unique("g"), &out, "");
    let cp = dir.path().join(".strata").join("kafka-kill");
    let mut child = spawn_run(dir.path(), &job, "run1");
    // Kill with an epoch logged but not committed, after a few commits.
    let killed = kill_when(&mut child, &mut || {
        let commits = checkpoint_epochs(&cp, "commits");
        let offsets = checkpoint_epochs(&cp, "offsets");
        commits.len() >= 3 && offsets.last() > commits.last()
    });
    assert!(
        killed.is_ok(),
        "the run ended before the kill point:\n{}",
        logs(dir.path(), "run1")
    );
    let partial = table_rows(&out).len();
    assert!(
        (partial as i64) < n,
        "killed after everything was written ({partial} rows)"
    );
    let summary = strata(dir.path(), &["run", s(&job)]).summary("run after SIGKILL");
    assert_eq!(
        summary.replayed, 1,
        "the logged, uncommitted epoch is re-run"
    );
    assert_exactly_once(
        &int_column(&table_rows(&out), "id"),
        n,
        "after SIGKILL and rerun",
    );
    assert_clean_table(&out, &[]);
}

#[test]
fn two_workers_in_one_group_write_every_message_exactly_once() {
    let topic = unique("scale");
    create_topic(&topic, 4);
    let n = 20_000;
    produce_docs(&topic, 4, 0, n);
    let group = unique("g");
    let shared = tempdir();
    let out = shared.path().join("out");
    let (a, b) = (tempdir(), tempdir());
    let job_a = docs_job(a.path(), "kafka-scale", &topic, &group, &out, "");
    let job_b = docs_job(b.path(), "kafka-scale", &topic, &group, &out, "");
    let mut ca = spawn_run(a.path(), &job_a, "a");
    std::thread::sleep(Duration::from_millis(300));
    let mut cb = spawn_run(b.path(), &job_b, "b");
    let sa = wait_timeout(&mut ca, RUN_TIMEOUT).expect("worker a finishes");
    let sb = wait_timeout(&mut cb, RUN_TIMEOUT).expect("worker b finishes");
    assert!(sa.success(), "worker a: {sa}\n{}", logs(a.path(), "a"));
    assert!(sb.success(), "worker b: {sb}\n{}", logs(b.path(), "b"));
    assert_exactly_once(
        &int_column(&table_rows(&out), "id"),
        n,
        "two workers in one group",
    );
    assert_clean_table(&out, &[]);
}

#[test]
fn bad_records_go_to_the_dead_letter_topic_with_their_key_headers_and_position() {
    let topic = unique("bad");
    let dlq = unique("bad-dlq");
    create_topic(&topic, 1);
    let good = |id: i64| Some(json!({"id": id, "body": "ok"}).to_string().into_bytes());
    let bad: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("malformed JSON", Some(b"{\"id\": 1,".to_vec())),
        ("wrong type", Some(br#"{"id": "not a number"}"#.to_vec())),
        (
            "invalid UTF-8",
            Some(b"{\"id\": 5, \"body\": \"\xff\xfe\"}".to_vec()),
        ),
        ("tombstone", None),
        (
            "oversize",
            Some(
                json!({"id": 9, "body": "x".repeat(5000)})
                    .to_string()
                    .into_bytes(),
            ),
        ),
    ];
    let mut msgs = Vec::new();
    let mut id = 0;
    for (what, value) in &bad {
        msgs.push(Msg {
            partition: 0,
            key: Some(format!("k{id}").into_bytes()),
            value: good(id),
            headers: vec![],
        });
        id += 1;
        msgs.push(Msg {
            partition: 0,
            key: Some(format!("bad-{what}").into_bytes()),
            value: value.clone(),
            headers: vec![("trace", b"t-1".to_vec())],
        });
    }
    produce(&topic, msgs);
    let dir = tempdir();
    let out = dir.path().join("out");
    let job = docs_job(
        dir.path(),
        "kafka-bad",
        &topic,
        &unique("g"),
        &out,
        &format!(", bad_data = 'dead_letter', dead_letter = '{dlq}', max_record_bytes = '1KB'"),
    );
    let summary = strata(dir.path(), &["run", s(&job)]).summary("run with bad records");
    assert_eq!(summary.source("src").dead_lettered, 5);
    assert_exactly_once(&int_column(&table_rows(&out), "id"), 5, "good records");
    let dead = consume_all(&dlq, 5);
    assert_eq!(
        dead.len(),
        5,
        "dead letters: {:?}",
        dead.iter().map(|d| &d.2).collect::<Vec<_>>()
    );
    for ((what, value), (key, got, headers)) in bad.iter().zip(&dead) {
        assert_eq!(
            key.as_deref(),
            Some(format!("bad-{what}").as_bytes()),
            "{what}: original key"
        );
        if *what != "oversize" {
            assert_eq!(got, value, "{what}: original value");
        }
        assert_eq!(
            headers.get("trace").map(String::as_str),
            Some("t-1"),
            "{what}: original header"
        );
        assert_eq!(headers.get("strata.source.topic"), Some(&topic), "{what}");
        assert_eq!(
            headers.get("strata.source.partition").map(String::as_str),
            Some("0"),
            "{what}"
        );
        assert!(headers.contains_key("strata.source.offset"), "{what}");
        assert!(!headers["strata.error"].is_empty(), "{what}");
    }
    let reasons: Vec<&str> = dead.iter().map(|d| d.2["strata.error"].as_str()).collect();
    assert!(reasons[0].contains("malformed JSON"), "{reasons:?}");
    assert!(reasons[1].contains("column 'id'"), "{reasons:?}");
    assert!(reasons[2].contains("UTF-8"), "{reasons:?}");
    assert!(reasons[3].contains("tombstone"), "{reasons:?}");
    assert!(reasons[4].contains("max_record_bytes"), "{reasons:?}");
    let offsets: Vec<&str> = dead
        .iter()
        .map(|d| d.2["strata.source.offset"].as_str())
        .collect();
    assert_eq!(offsets, vec!["1", "3", "5", "7", "9"]);
}

#[test]
fn bad_data_fail_names_topic_partition_and_offset() {
    let topic = unique("fail");
    create_topic(&topic, 1);
    produce(
        &topic,
        vec![
            Msg {
                partition: 0,
                key: None,
                value: Some(br#"{"id": 1}"#.to_vec()),
                headers: vec![],
            },
            Msg {
                partition: 0,
                key: None,
                value: Some(b"not json".to_vec()),
                headers: vec![],
            },
        ],
    );
    let dir = tempdir();
    let out = dir.path().join("out");
    let job = docs_job(dir.path(), "kafka-fail", &topic, &unique("g"), &out, "");
    let o = strata(dir.path(), &["run", s(&job)]);
    o.expect_code(1, "bad record with bad_data = 'fail'");
    assert!(
        o.stderr
            .contains(&format!("topic '{topic}' partition 0 offset 1")),
        "{}",
        o.stderr
    );
}

#[test]
fn kafka_sink_produces_json_rows_with_key_and_headers() {
    let topic = unique("sink");
    let dir = tempdir();
    let input = dir.path().join("in.jsonl");
    write_jsonl(&input, (0..50).map(|i| json!({"id": i, "name": format!("n{i}"), "h": format!("{{\"tenant\": \"t{}\"}}", i % 3)})));
    let text = format!(
        "SET job.name = 'kafka-sink';\n\
         CREATE TABLE src (id BIGINT, name TEXT, h TEXT) WITH (connector = 'file', path = '{input}', format = 'json');\n\
         CREATE TABLE dst WITH (connector = 'kafka', bootstrap_servers = '{bs}', topic = '{topic}', key = 'name', headers = 'h', 'topic.partitions' = 2);\n\
         INSERT INTO dst SELECT id, name, h FROM src;\n",
        input = s(&input),
        bs = bootstrap()
    );
    let job = write_job(dir.path(), "sink.sql", &text);
    let summary = strata(dir.path(), &["run", s(&job)]).summary("file -> kafka");
    assert_eq!(summary.sink("dst").rows, 50);
    let got = consume_all(&topic, 50);
    assert_eq!(got.len(), 50);
    let mut ids = Vec::new();
    for (key, value, headers) in got {
        let v: Value = serde_json::from_slice(&value.unwrap()).unwrap();
        let id = v["id"].as_i64().unwrap();
        assert_eq!(
            v,
            json!({"id": id}),
            "key and headers columns are not in the value"
        );
        assert_eq!(key, Some(format!("n{id}").into_bytes()));
        assert_eq!(headers.get("tenant"), Some(&format!("t{}", id % 3)));
        ids.push(id);
    }
    assert_exactly_once(&ids, 50, "produced rows");
}

#[test]
fn unreachable_broker_is_a_clear_error_in_bounded_time() {
    let dir = tempdir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!(
        "CREATE TABLE src (id BIGINT) WITH (connector = 'kafka', bootstrap_servers = '127.0.0.1:{port}', topic = 't', group_id = 'g', 'scan.bounded.mode' = 'latest');\n\
         CREATE TABLE out WITH (connector = 'parquet', path = 'out/');\n\
         INSERT INTO out SELECT id FROM src;\n"
    );
    let job = write_job(dir.path(), "down.sql", &text);
    let started = Instant::now();
    let o = strata(dir.path(), &["run", s(&job)]);
    o.expect_code(1, "broker down");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        o.stderr.contains("cannot reach the Kafka brokers"),
        "{}",
        o.stderr
    );
    // A broker is needed by the other tests; this one must not pass without one either.
    let _ = bootstrap();
}

#[test]
fn bad_kafka_options_are_plan_errors() {
    let dir = tempdir();
    let base = "bootstrap_servers = '127.0.0.1:1', topic = 't', group_id = 'g'";
    let cases: Vec<(String, &str)> = vec![
        (format!("{base}, bogus = 1"), "unknown option 'bogus'"),
        (
            "bootstrap_servers = '127.0.0.1:1', topic = 't'".into(),
            "requires option 'group_id'",
        ),
        (
            format!("{base}, 'scan.startup.mode' = 'sometime'"),
            "expected 'earliest', 'latest', 'group-offsets' or 'timestamp'",
        ),
        (
            format!("{base}, 'scan.startup.mode' = 'timestamp'"),
            "scan.startup.timestamp-millis",
        ),
        (
            format!("{base}, 'properties.group.id' = 'x'"),
            "use group_id",
        ),
        (
            format!("{base}, bad_data = 'dead_letter'"),
            "requires option 'dead_letter'",
        ),
        (format!("{base}, format = 'avro'"), "unknown format 'avro'"),
    ];
    for (opts, expected) in cases {
        let text = format!(
            "CREATE TABLE src (id BIGINT) WITH (connector = 'kafka', {opts});\n\
             CREATE TABLE out WITH (connector = 'parquet', path = 'out/');\n\
             INSERT INTO out SELECT id FROM src;\n"
        );
        let job = write_job(dir.path(), "bad.sql", &text);
        let o = strata(dir.path(), &["explain", s(&job)]);
        o.expect_code(2, &opts);
        assert!(
            o.stderr.contains(expected),
            "{opts}: expected '{expected}' in:\n{}",
            o.stderr
        );
        assert!(
            o.stderr.contains("bad.sql:1:"),
            "{opts}: the error names the line: {}",
            o.stderr
        );
    }
    let text = "CREATE TABLE src (id BIGINT) WITH (connector = 'file', path = 'x.jsonl');\n\
                CREATE TABLE dst WITH (connector = 'kafka', bootstrap_servers = '127.0.0.1:1', topic = 't', 'sink.delivery' = 'exactly_once');\n\
                INSERT INTO dst SELECT id FROM src;\n";
    std::fs::write(dir.path().join("x.jsonl"), "{\"id\": 1}\n").unwrap();
    let job = write_job(dir.path(), "sink.sql", text);
    let o = strata(dir.path(), &["explain", s(&job)]);
    o.expect_code(2, "exactly_once kafka sink");
    assert!(o.stderr.contains("not implemented"), "{}", o.stderr);
}

#[test]
fn compose_stack_runs_a_valid_job() {
    let compose =
        std::fs::read_to_string(repo().join("docker-compose.yml")).expect("docker-compose.yml");
    for needle in [
        "services:",
        "apache/kafka",
        "KAFKA_PROCESS_ROLES: broker,controller",
        "minio/minio",
        "mc mb",
        "build: .",
        "/jobs/kafka_to_parquet.sql",
    ] {
        assert!(
            compose.contains(needle),
            "docker-compose.yml lacks '{needle}'"
        );
    }
    assert!(
        repo().join("Dockerfile").is_file(),
        "docker-compose.yml builds strata from the Dockerfile"
    );
    // The job the compose stack runs plans cleanly (no broker needed to plan).
    let dir = tempdir();
    let job = repo().join("deploy").join("kafka_to_parquet.sql");
    let out = dir.path().join("out");
    let o = strata(
        dir.path(),
        &[
            "explain",
            s(&job),
            "--var",
            &format!("OUT={}/", s(&out)),
            "--var",
            "KAFKA=127.0.0.1:9092",
        ],
    );
    o.expect_code(0, "explain deploy/kafka_to_parquet.sql");
    assert!(o.stdout.contains("kafka"), "{}", o.stdout);
}

/// `GET /metrics` from the Prometheus endpoint of a running `strata run`.
fn scrape(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Sum of `strata_kafka_consumer_lag` over the partitions of `topic`; `None` before the
/// first report.
fn lag_of(metrics: &str, topic: &str) -> Option<f64> {
    let needle = format!("topic=\"{topic}\"");
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("strata_kafka_consumer_lag{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

#[test]
fn consumer_lag_metric_counts_what_is_not_yet_committed_and_falls_to_zero() {
    let topic = unique("lag");
    create_topic(&topic, 2);
    let n = 300;
    produce_docs(&topic, 2, 0, n);
    // Each row asks a model that answers in 30 ms, one call at a time: an epoch of 100 rows
    // takes about 3 s, several of librdkafka's 1 s statistics intervals, so the lag of the
    // rows not yet committed is reported before it falls to zero.
    let rt = rt();
    let fake = rt.block_on(fake_endpoints::FakeEndpoint::start());
    fake.set_latency(Duration::from_millis(30));
    let dir = tempdir();
    let out = dir.path().join("out");
    let text = format!(
        "SET job.name = 'lag';\n\
         SET epoch.max_rows = '100';\n\
         CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = '{url}', model = 'fake-chat', max_concurrency = '1');\n\
         CREATE TABLE src (id BIGINT NOT NULL, body TEXT)\n\
         WITH (connector = 'kafka', bootstrap_servers = '{bs}', topic = '{topic}', group_id = '{group}',\n\
               'scan.startup.mode' = 'earliest');\n\
         CREATE TABLE out WITH (connector = 'parquet', path = '{out}/');\n\
         INSERT INTO out SELECT id, ai_complete('llm', body) AS answer FROM src;\n",
        url = fake.openai_url(),
        bs = bootstrap(),
        group = unique("lag-group"),
        out = s(&out),
    );
    let job = write_job(dir.path(), "lag.sql", &text);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = strata_cmd(dir.path());
    cmd.args(["run", s(&job), "--metrics-addr", &addr])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("lag.stdout")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("lag.stderr")).unwrap());
    let mut child = cmd.spawn().expect("start strata run");
    let started = Instant::now();
    let mut samples = Vec::new();
    let result = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("the unbounded run exited ({status})"));
        }
        if started.elapsed() > Duration::from_secs(90) {
            break Err(format!("no zero lag within 90 s; samples {samples:?}"));
        }
        if let Some(lag) = scrape(&addr).and_then(|m| lag_of(&m, &topic)) {
            samples.push(lag);
            if lag == 0.0 && samples.iter().any(|l| *l > 0.0) {
                break Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        panic!("{e}\n{}", logs(dir.path(), "lag"));
    }
    // While the job caught up the lag was reported above zero and never above the backlog
    // (librdkafka reports a partition from its first committed offset on, so the sum over
    // partitions is not monotonic), and it ends at zero once every message is committed.
    assert!(samples.iter().all(|l| *l <= n as f64), "{samples:?}");
    assert_eq!(samples.last(), Some(&0.0));
    drop(rt);
}
