//! strata against an S3-protocol server (DESIGN §2, §4, §8): the file source
//! reading an `s3://` prefix, the Parquet sink and the dead letter writing to
//! `s3://`, `strata query` over S3, crash recovery with the outputs (and, in
//! one case, the checkpoint) on S3, and the Parquet sink's conformance suite.
//!
//! The server is the one `scripts/test.sh` starts (moto) and announces with
//! `STRATA_TEST_S3_ENDPOINT` and `STRATA_TEST_S3_BUCKET`; credentials are
//! `test`/`test` in `us-east-1`. Without the server these tests fail, they
//! never pass by skipping. For development:
//! `eval "$(scripts/s3_server.sh start)"; cargo test -p strata --test s3`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{Array, BinaryArray};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{json, Value};

use common::*;

/// The test server: endpoint and bucket.
struct S3 {
    endpoint: String,
    bucket: String,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    /// A prefix no other test (or earlier run) uses.
    prefix: String,
}

impl S3 {
    fn connect(test: &str) -> S3 {
        let endpoint = std::env::var("STRATA_TEST_S3_ENDPOINT").unwrap_or_else(|_| {
            panic!(
                "STRATA_TEST_S3_ENDPOINT is not set: these tests need the S3 test server; run scripts/test.sh \
                 (or, for development, eval \"$(scripts/s3_server.sh start)\" before cargo test)"
            )
        });
        let bucket = std::env::var("STRATA_TEST_S3_BUCKET")
            .unwrap_or_else(|_| panic!("STRATA_TEST_S3_BUCKET is not set: run scripts/test.sh"));
        let store = AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(&bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .expect("S3 client");
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos();
        let prefix = format!("strata-it/{test}-{}-{nanos}", std::process::id());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let s3 = S3 {
            endpoint,
            bucket,
            store: Arc::new(store),
            rt,
            prefix,
        };
        // Fail early, with the reason, when the server is not there.
        s3.rt.block_on(s3.store.list(Some(&ObjPath::from("strata-it"))).try_collect::<Vec<_>>()).unwrap_or_else(|e| {
            panic!("the S3 test server at {} (bucket {}) does not answer: {e}; run scripts/test.sh", s3.endpoint, s3.bucket)
        });
        s3
    }

    /// `s3://bucket/<prefix>/<rel>`.
    fn url(&self, rel: &str) -> String {
        format!("s3://{}/{}/{rel}", self.bucket, self.prefix)
    }

    fn key(&self, rel: &str) -> ObjPath {
        ObjPath::from(format!("{}/{rel}", self.prefix))
    }

    fn put(&self, rel: &str, data: Vec<u8>) {
        self.rt
            .block_on(self.store.put(&self.key(rel), PutPayload::from(data)))
            .unwrap_or_else(|e| panic!("PUT {rel}: {e}"));
    }

    /// Objects under `<prefix>/<rel>/`, relative to it, sorted.
    fn list(&self, rel: &str) -> Vec<String> {
        let base = self.key(rel);
        let metas: Vec<_> = self
            .rt
            .block_on(self.store.list(Some(&base)).try_collect())
            .unwrap_or_else(|e| panic!("LIST {rel}: {e}"));
        let mut out: Vec<String> = metas
            .into_iter()
            .map(|m| {
                m.location
                    .as_ref()
                    .strip_prefix(base.as_ref())
                    .unwrap_or(m.location.as_ref())
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
        out.sort();
        out
    }

    fn get(&self, rel: &str) -> Bytes {
        self.rt
            .block_on(async { self.store.get(&self.key(rel)).await?.bytes().await })
            .unwrap_or_else(|e| panic!("GET {rel}: {e}"))
    }

    /// Every Parquet object under `rel` as rows, Hive partition values included.
    fn table_rows(&self, rel: &str) -> Vec<Row> {
        let mut rows = Vec::new();
        for obj in self.list(rel) {
            let (metadata, batches) = read_parquet_bytes(self.get(&format!("{rel}/{obj}")));
            rows.extend(
                TableFile {
                    partitions: hive_partitions(&obj),
                    rel: obj,
                    metadata,
                    batches,
                }
                .rows(),
            );
        }
        rows
    }

    /// Assert only committed `*.parquet` objects sit under `rel`, in `key=value/` folders.
    fn assert_clean(&self, rel: &str, partition_keys: &[&str]) {
        let objects = self.list(rel);
        assert!(!objects.is_empty(), "no objects under {}", self.url(rel));
        for o in &objects {
            let parts: Vec<&str> = o.split('/').collect();
            let name = parts[parts.len() - 1];
            assert!(
                name.ends_with(".parquet") && !name.starts_with('.') && !name.starts_with('_'),
                "stray object {o} under {}",
                self.url(rel)
            );
            assert_eq!(
                parts.len() - 1,
                partition_keys.len(),
                "object {o} is not in a leaf partition folder"
            );
            for (p, k) in parts.iter().zip(partition_keys) {
                assert!(
                    p.starts_with(&format!("{k}=")),
                    "object {o}: folder {p} is not {k}=..."
                );
            }
        }
    }

    /// `'storage.*'` options of a table on this server.
    fn storage_options(&self) -> String {
        format!(
            "'storage.endpoint' = '{}', 'storage.allow_http' = 'true'",
            self.endpoint
        )
    }

    /// A `strata` command with the server's credentials (and nothing else of
    /// the AWS environment); `endpoint_env`: also point `AWS_ENDPOINT_URL` at it.
    fn cmd(&self, cwd: &Path, endpoint_env: bool) -> Command {
        let mut cmd = strata_cmd(cwd);
        for v in [
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_ENDPOINT",
            "AWS_ALLOW_HTTP",
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_DEFAULT_REGION",
        ] {
            cmd.env_remove(v);
        }
        cmd.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if endpoint_env {
            cmd.env("AWS_ENDPOINT_URL", &self.endpoint);
        }
        cmd
    }
}

fn doc(id: i64) -> Value {
    json!({"id": id, "tenant": format!("t{}", id % 3), "body": format!("document {id}")})
}

/// Upload `files` JSON Lines files of `per_file` documents each (ids 0..),
/// one bad record in each file; returns the bad lines.
fn upload_input(s3: &S3, files: i64, per_file: i64) -> Vec<String> {
    let mut bad = Vec::new();
    for f in 0..files {
        let mut text = String::new();
        for i in 0..per_file {
            let id = f * per_file + i;
            if i == per_file / 2 {
                let line = format!(
                    "{{\"id\": {}, \"tenant\": \"t0\", \"body\": [\"not text\"]}}",
                    1_000_000 + f
                );
                text.push_str(&line);
                text.push('\n');
                bad.push(line);
            }
            text.push_str(&doc(id).to_string());
            text.push('\n');
        }
        s3.put(&format!("in/part-{f:02}.jsonl"), text.into_bytes());
    }
    bad
}

fn job_text(s3: &S3, name: &str, epoch_rows: u64, with_storage_options: bool) -> String {
    let opts = if with_storage_options {
        format!(", {}", s3.storage_options())
    } else {
        String::new()
    };
    format!(
        "SET job.name = '{name}';\n\
         SET epoch.max_rows = '{epoch_rows}';\n\
         CREATE TABLE docs (id BIGINT NOT NULL, tenant TEXT, body TEXT)\n\
         WITH (connector = 'file', path = '{input}', format = 'json', bad_data = 'dead_letter', dead_letter = '{dlq}'{opts});\n\
         CREATE TABLE out WITH (connector = 'parquet', path = '{out}', partition_by = 'tenant', 'rollover.rows' = 250{opts});\n\
         INSERT INTO out SELECT id, tenant, body FROM docs;\n",
        input = s3.url("in/"),
        dlq = s3.url("dlq/"),
        out = s3.url("out/"),
    )
}

/// The output holds every id once with its own values; the dead letter every bad line once.
fn check_outputs(s3: &S3, n: i64, bad: &[String]) {
    s3.assert_clean("out", &["tenant"]);
    let rows = s3.table_rows("out");
    assert_exactly_once(&int_column(&rows, "id"), n, "S3 output");
    for r in &rows {
        let want = doc(r["id"].as_i64().expect("id"));
        assert_eq!(
            (&r["tenant"], &r["body"]),
            (&want["tenant"], &want["body"]),
            "row {r:?}"
        );
    }
    s3.assert_clean("dlq", &[]);
    let mut raws = Vec::new();
    for obj in s3.list("dlq") {
        for b in read_parquet_bytes(s3.get(&format!("dlq/{obj}"))).1 {
            let raw = b.column_by_name("raw").expect("raw column");
            let raw = raw
                .as_any()
                .downcast_ref::<BinaryArray>()
                .expect("raw is Binary");
            raws.extend((0..raw.len()).map(|i| String::from_utf8_lossy(raw.value(i)).to_string()));
        }
    }
    raws.sort();
    let mut want = bad.to_vec();
    want.sort();
    assert_eq!(
        raws, want,
        "every bad record exactly once in the S3 dead letter"
    );
}

#[test]
fn s3_prefix_to_partitioned_s3_sink_with_storage_options() {
    let s3 = S3::connect("options");
    let bad = upload_input(&s3, 3, 1000);
    let tmp = tempdir();
    let job = write_job(
        tmp.path(),
        "s3.sql",
        &job_text(&s3, "s3_options", 700, true),
    );
    let mut cmd = s3.cmd(tmp.path(), false);
    cmd.args(["run", s(&job)]);
    let o = run_cmd(cmd);
    let sum = o.summary("a job reading and writing S3 with 'storage.*' options");
    let src = sum.source("docs");
    assert_eq!(
        (src.records, src.rows, src.dead_lettered),
        (3003, 3000, 3),
        "{}",
        o.stdout
    );
    assert_eq!(sum.sink("out").rows, 3000);
    assert_eq!(
        sum.sink("out").location.trim_end_matches('/'),
        s3.url("out")
    );
    check_outputs(&s3, 3000, &bad);
}

#[test]
fn s3_with_aws_endpoint_url_and_strata_query() {
    let s3 = S3::connect("env");
    let bad = upload_input(&s3, 2, 600);
    let tmp = tempdir();
    let job = write_job(tmp.path(), "s3.sql", &job_text(&s3, "s3_env", 500, false));
    let mut cmd = s3.cmd(tmp.path(), true);
    cmd.args(["run", s(&job)]);
    run_cmd(cmd).summary("a job reading and writing S3 through AWS_ENDPOINT_URL");
    check_outputs(&s3, 1200, &bad);

    let mut q = s3.cmd(tmp.path(), true);
    let table = format!("t={}", s3.url("out/"));
    q.args(["query", "SELECT tenant, count(*) AS n, count(DISTINCT id) AS ids FROM t GROUP BY tenant ORDER BY tenant", "--table", &table]);
    let o = run_cmd(q);
    o.expect_code(0, "strata query over s3://");
    let printed: Vec<Vec<String>> = o
        .stdout
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    let want: Vec<Vec<String>> = [
        ["tenant", "n", "ids"],
        ["t0", "400", "400"],
        ["t1", "400", "400"],
        ["t2", "400", "400"],
    ]
    .iter()
    .map(|r| r.iter().map(|c| c.to_string()).collect())
    .collect();
    assert_eq!(printed, want, "{}", o.stdout);
}

/// Newest epoch in a local checkpoint folder.
fn newest(cp: &Path, dir: &str) -> Option<u64> {
    checkpoint_epochs(cp, dir).last().copied()
}

#[test]
fn s3_sigkill_mid_publish_then_rerun_is_exactly_once() {
    let s3 = S3::connect("kill");
    let bad = upload_input(&s3, 2, 2500);
    let tmp = tempdir();
    let job = write_job(tmp.path(), "s3.sql", &job_text(&s3, "s3_kill", 500, true));
    let cp = tmp.path().join(".strata").join("s3_kill");
    let mut cmd = s3.cmd(tmp.path(), false);
    cmd.args(["run", s(&job)])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("start strata");
    // Epoch >= 3 published in part (its manifest is logged), not committed.
    let mut due =
        || newest(&cp, "manifests").is_some_and(|m| m >= 3 && Some(m) > newest(&cp, "commits"));
    common::kill_when(&mut child, &mut due)
        .unwrap_or_else(|s| panic!("the run ended ({s}) before the kill point"));

    let mut again = s3.cmd(tmp.path(), false);
    again.args(["run", s(&job)]);
    let o = run_cmd(again);
    let sum = o.summary("the re-run after a kill");
    assert_eq!(
        sum.replayed, 1,
        "the interrupted epoch is re-run:\n{}",
        o.stdout
    );
    check_outputs(&s3, 5000, &bad);
}

/// Newest epoch of `<checkpoint>/<dir>/` on S3.
fn newest_s3(s3: &S3, dir: &str) -> Option<u64> {
    s3.list(&format!("ckpt/{dir}"))
        .iter()
        .filter_map(|n| n.strip_suffix(".json")?.parse().ok())
        .max()
}

#[test]
fn s3_checkpoint_on_s3_survives_sigkill() {
    let s3 = S3::connect("ckpt");
    let bad = upload_input(&s3, 2, 2000);
    let tmp = tempdir();
    let job = write_job(tmp.path(), "s3.sql", &job_text(&s3, "s3_ckpt", 400, true));
    let checkpoint = s3.url("ckpt/");
    let mut cmd = s3.cmd(tmp.path(), true);
    cmd.args(["run", s(&job), "--checkpoint", &checkpoint])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("start strata");
    let mut due =
        || newest_s3(&s3, "offsets").is_some_and(|o| o >= 3 && Some(o) > newest_s3(&s3, "commits"));
    common::kill_when(&mut child, &mut due)
        .unwrap_or_else(|s| panic!("the run ended ({s}) before the kill point"));
    assert!(
        s3.list("ckpt/offsets").iter().any(|o| o.ends_with(".json")),
        "the checkpoint lives on S3: {:?}",
        s3.list("ckpt")
    );

    let mut again = s3.cmd(tmp.path(), true);
    again.args(["run", s(&job), "--checkpoint", &checkpoint]);
    let o = run_cmd(again);
    let sum = o.summary("the re-run with the checkpoint on S3");
    assert_eq!(
        sum.replayed, 1,
        "the interrupted epoch is re-run:\n{}",
        o.stdout
    );
    check_outputs(&s3, 4000, &bad);
}

/// The Parquet sink's conformance suite (exactly-once staging and publishing,
/// names, partitions, rollover, recovery, removal, options, types) on S3.
#[test]
fn s3_parquet_sink_conformance() {
    let s3 = S3::connect("conformance");
    let tmp = tempdir();
    let storage: BTreeMap<String, String> = [
        ("storage.endpoint", s3.endpoint.as_str()),
        ("storage.allow_http", "true"),
        ("storage.access_key_id", "test"),
        ("storage.secret_access_key", "test"),
        ("storage.region", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let h = strata_connectors::parquet::conformance::Harness::new(
        &s3.url("conformance"),
        storage,
        &tmp.path().join("staging"),
    );
    s3.rt
        .block_on(strata_connectors::parquet::conformance::run_all(&h));
}

/// Credentials given as options never show: not in `explain`, not in the run's
/// logs (even at debug level), not in the summary.
#[test]
fn s3_credentials_never_appear_in_explain_or_logs() {
    let s3 = S3::connect("secrets");
    upload_input(&s3, 1, 300);
    let tmp = tempdir();
    let key_id = format!("AKIDSTRATA{}", std::process::id());
    let secret = format!(
        "strata-secret-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let creds =
        format!(", 'storage.access_key_id' = '{key_id}', 'storage.secret_access_key' = '{secret}'");
    let text = job_text(&s3, "s3_secrets", 100, true).replace(
        "'storage.allow_http' = 'true'",
        &format!("'storage.allow_http' = 'true'{creds}"),
    );
    assert!(text.contains(&secret));
    let job = write_job(tmp.path(), "s3.sql", &text);
    for args in [vec!["explain", s(&job)], vec!["run", s(&job)]] {
        let mut cmd = s3.cmd(tmp.path(), false);
        cmd.args(&args).env("STRATA_LOG", "debug");
        let o = run_cmd(cmd);
        o.expect_code(0, &args.join(" "));
        for (what, text) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
            assert!(
                !text.contains(&secret) && !text.contains(&key_id),
                "strata {}: a credential appears on {what}:\n{text}",
                args[0]
            );
        }
        if args[0] == "explain" {
            assert!(
                o.stdout.contains("storage.secret_access_key = '****'"),
                "explain masks the secret:\n{}",
                o.stdout
            );
        }
    }
}
