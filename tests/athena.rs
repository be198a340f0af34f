//! `strata athena-ddl` through the binary, checked with tools that share no code with
//! strata: the DDL is parsed by `sqlglot` (Athena dialect) and the columns, types,
//! partitions and projection properties are read off its syntax tree; a job run against
//! the fake OpenAI-compatible endpoint writes Parquet that DuckDB reads with
//! `hive_partitioning = true`, and its usage sums equal what the endpoint counted.
//!
//! The Python that runs sqlglot and DuckDB is `$STRATA_TEST_PYTHON` (scripts/test.sh
//! provisions it with pinned versions: `test_py_env` in scripts/lib.sh), else `python3`.
//! A missing interpreter or package fails the test with the command that fixes it.

mod common;
#[path = "../operators/tests/common/fake_endpoints.rs"]
mod fake_endpoints;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use common::*;
use fake_endpoints::{fake_answer, fake_tokens, FakeEndpoint};
use strata_operators::models::usage::UsageLog;

/// The Python packages the checks import (kept in step with `test_py_env` in scripts/lib.sh).
const PY_PACKAGES: &str = "sqlglot==30.30.0 duckdb==2.0.1";

/// Run `script` with the test Python, `stdin` on its standard input; parse its stdout as JSON.
fn python(script: &str, args: &[&str], stdin: &str) -> Value {
    let (py, from_env) = match std::env::var("STRATA_TEST_PYTHON") {
        Ok(p) if !p.trim().is_empty() => (p, true),
        _ => ("python3".to_string(), false),
    };
    let fix = format!(
        "tests/athena.rs checks strata's output with Python packages {PY_PACKAGES}. Run the suite with \
         scripts/test.sh (it installs them), or from the repository root: \
         `. scripts/lib.sh && test_py_env && cargo test --test athena` (test_py_env exports STRATA_TEST_PYTHON)"
    );
    let which = if from_env {
        format!("STRATA_TEST_PYTHON={py}")
    } else {
        "python3 (STRATA_TEST_PYTHON is not set)".to_string()
    };
    let mut child = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {which}: {e}.\n{fix}"));
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(stdin.as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("wait for python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        panic!("{which} lacks a package: {stderr}\n{fix}");
    }
    assert!(
        out.status.success(),
        "{which} failed ({:?}):\n{stderr}",
        out.status
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{which} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Parses every statement of the script on stdin with sqlglot's Athena dialect and prints,
/// per statement, what the syntax tree says. Anything but a CREATE EXTERNAL TABLE fails.
const PARSE_DDL: &str = r#"
import json, sys
import sqlglot
from sqlglot import exp

def norm(t):
    return t.sql(dialect="hive").lower().replace(" ", "")

tables = []
for stmt in sqlglot.parse(sys.stdin.read(), read="athena"):
    if stmt is None:
        continue
    if not isinstance(stmt, exp.Create) or stmt.args.get("kind") != "TABLE":
        sys.exit("not a CREATE TABLE: %s: %s" % (type(stmt).__name__, stmt.sql()[:300]))
    schema = stmt.this
    table = schema.this
    props = stmt.args["properties"].expressions
    parts = [p for p in props if isinstance(p, exp.PartitionedByProperty)]
    formats = [p.this.name for p in props if isinstance(p, exp.FileFormatProperty)]
    locations = [p.this.name for p in props if isinstance(p, exp.LocationProperty)]
    tables.append({
        "sqlglot": sqlglot.__version__,
        "db": table.db,
        "name": table.name,
        "db_quoted": bool(table.args.get("db") and table.args["db"].quoted),
        "external": any(isinstance(p, exp.ExternalProperty) for p in props),
        "columns": [[c.this.name, c.this.quoted, norm(c.args["kind"])] for c in schema.expressions],
        "partitions": [[c.this.name, norm(c.args["kind"])] for p in parts for c in p.this.expressions],
        "stored_as": formats,
        "location": locations,
        "properties": [[p.this.name, p.args["value"].name] for p in props if type(p) is exp.Property],
    })
print(json.dumps(tables))
"#;

/// Statements of `ddl` as sqlglot parsed them, by table name.
fn parse_ddl(ddl: &str) -> BTreeMap<String, Value> {
    let parsed = python(PARSE_DDL, &[], ddl);
    parsed
        .as_array()
        .expect("a list of tables")
        .iter()
        .map(|t| (t["name"].as_str().expect("name").to_string(), t.clone()))
        .collect()
}

fn props(t: &Value) -> BTreeMap<String, String> {
    t["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &Value, key: &str) -> Vec<(String, String)> {
    v[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let a = c.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_string(),
                a[a.len() - 1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn strs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// A job with an embedding column, a map, a struct, a decimal, a timestamp and a column
/// named like a reserved word, partitioned by tenant and dt, plus the usage table. The
/// sink's path is `${OUT}`.
fn ddl_job(dir: &Path, usage: &Path) -> std::path::PathBuf {
    let input = dir.join("docs.jsonl");
    write_jsonl(
        &input,
        [
            json!({"doc_id": "a", "tenant": "acme", "body": "x", "ts": "2026-11-25T07:00:00Z", "dt": "2026-11-25"}),
        ],
    );
    write_job(
        dir,
        "ddl.sql",
        &format!(
            "SET job.name = 'rag-ingest';
SET usage.path = '{usage}';
CREATE MODEL emb WITH (provider = 'openai', task = 'embedding', endpoint = 'http://127.0.0.1:9/v1',
  model = 'fake-embed', dimensions = '8');
CREATE TABLE docs (doc_id TEXT, tenant TEXT, body TEXT, ts TIMESTAMP, dt TEXT)
  WITH (connector = 'file', path = '{input}', format = 'json');
CREATE TABLE chunks WITH (connector = 'parquet', path = '${{OUT}}', partition_by = 'tenant, dt');
INSERT INTO chunks
SELECT doc_id, tenant, body AS \"date\", embed('emb', body) AS vector,
       CAST(1.25 AS DECIMAL(12, 2)) AS price, ts,
       named_struct('chunk_index', CAST(1 AS INT), 'label', body) AS meta,
       map(['k'], [CAST(1 AS BIGINT)]) AS counts, dt
FROM docs;
",
            usage = s(usage),
            input = s(&input),
        ),
    )
}

#[test]
fn ddl_parses_as_athena_with_projection_per_partition_column() {
    let dir = tempdir();
    let usage = dir.path().join("usage");
    let job = ddl_job(dir.path(), &usage);
    let out = strata(
        dir.path(),
        &["athena-ddl", s(&job), "--var", "OUT=s3://bucket/vectors"],
    );
    out.expect_code(0, "athena-ddl");
    let ddl = &out.stdout;
    let tables = parse_ddl(ddl);
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        ["chunks", "usage"],
        "{ddl}"
    );

    let chunks = &tables["chunks"];
    assert_eq!(chunks["db"], "default", "{chunks}");
    assert_eq!(chunks["external"], true);
    assert_eq!(chunks["stored_as"], json!(["PARQUET"]));
    assert_eq!(chunks["location"], json!(["s3://bucket/vectors/"]));
    let columns = pairs(chunks, "columns");
    assert_eq!(
        strs(&columns),
        [
            ("doc_id", "string"),
            ("date", "string"),
            ("vector", "array<float>"),
            ("price", "decimal(12,2)"),
            ("ts", "timestamp"),
            ("meta", "struct<chunk_index:int,label:string>"),
            ("counts", "map<string,bigint>"),
            ("embedding_model", "string"),
        ],
        "{ddl}"
    );
    // `date` is a DDL reserved word: in backticks.
    assert_eq!(chunks["columns"][1][1], true, "{ddl}");
    // Partition columns once, in PARTITIONED BY, in folder order.
    assert_eq!(
        strs(&pairs(chunks, "partitions")),
        [("tenant", "string"), ("dt", "string")]
    );
    let p = props(chunks);
    assert_eq!(p["projection.enabled"], "true");
    assert_eq!(p["projection.tenant.type"], "injected");
    assert_eq!(p["projection.dt.type"], "date");
    assert_eq!(p["projection.dt.format"], "yyyy-MM-dd");
    assert_eq!(p["projection.dt.range"], "NOW-3YEARS,NOW");
    assert_eq!(p["projection.dt.interval"], "1");
    assert_eq!(p["projection.dt.interval.unit"], "DAYS");
    assert_eq!(
        p["storage.location.template"],
        "s3://bucket/vectors/tenant=${tenant}/dt=${dt}/"
    );
    assert_eq!(p["parquet.compression"], "ZSTD");

    let usage_t = &tables["usage"];
    let want: Vec<String> = UsageLog::schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| n != "dt" && n != "hour")
        .collect();
    let columns = pairs(usage_t, "columns");
    assert_eq!(
        columns.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        want
    );
    let ty = |c: &str| columns.iter().find(|(n, _)| n == c).unwrap().1.clone();
    assert_eq!(ty("cost_usd"), "decimal(38,10)");
    assert_eq!(ty("ts"), "timestamp");
    assert_eq!(ty("input_tokens"), "bigint");
    assert_eq!(ty("cache_hit"), "boolean");
    assert_eq!(
        strs(&pairs(usage_t, "partitions")),
        [("dt", "string"), ("hour", "string")]
    );
    let local = format!("{}/", s(&usage));
    assert_eq!(usage_t["location"], json!([local]));
    let p = props(usage_t);
    assert_eq!(p["projection.hour.type"], "integer");
    assert_eq!(p["projection.hour.range"], "0,23");
    assert_eq!(p["projection.hour.digits"], "2");
    assert_eq!(p["projection.dt.type"], "date");
    assert_eq!(
        p["storage.location.template"],
        format!("{local}dt=${{dt}}/hour=${{hour}}/")
    );
    // The local usage path is printed under a warning; the S3 one is not.
    let warning = format!("-- WARNING: LOCATION '{local}' is not an s3:// URL");
    let at = ddl.find(&warning).unwrap_or_else(|| panic!("{ddl}"));
    assert!(ddl[at..].contains("CREATE EXTERNAL TABLE default.usage"));
    assert_eq!(ddl.matches("-- WARNING").count(), 1, "{ddl}");

    // --database qualifies every table; --enum and --date-range change the projection.
    let out = strata(
        dir.path(),
        &[
            "athena-ddl",
            s(&job),
            "--var",
            "OUT=s3://bucket/vectors/",
            "--database",
            "analytics",
            "--enum",
            "chunks.tenant=acme,globex",
            "--date-range",
            "2024-01-01,NOW",
        ],
    );
    out.expect_code(0, "athena-ddl --database");
    let tables = parse_ddl(&out.stdout);
    assert!(
        tables.values().all(|t| t["db"] == "analytics"),
        "{tables:?}"
    );
    let p = props(&tables["chunks"]);
    assert_eq!(p["projection.tenant.type"], "enum");
    assert_eq!(p["projection.tenant.values"], "acme,globex");
    assert_eq!(p["projection.dt.range"], "2024-01-01,NOW");
    assert_eq!(
        tables["chunks"]["location"],
        json!(["s3://bucket/vectors/"])
    );

    // What Athena cannot describe is a plan error (exit 2) naming the table and column.
    let out = strata(
        dir.path(),
        &[
            "athena-ddl",
            s(&job),
            "--var",
            "OUT=s3://bucket/vectors",
            "--enum",
            "chunks.doc_id=a,b",
        ],
    );
    out.expect_code(2, "--enum on a file column");
    assert!(
        out.stderr
            .contains("'doc_id' is not a partition column of 'chunks'"),
        "{}",
        out.stderr
    );
    let bad = write_job(
        dir.path(),
        "bad.sql",
        &std::fs::read_to_string(&job)
            .unwrap()
            .replace("AS price", "AS price, arrow_cast(1, 'UInt64') AS big"),
    );
    let out = strata(
        dir.path(),
        &["athena-ddl", s(&bad), "--var", "OUT=s3://bucket/vectors"],
    );
    out.expect_code(2, "UInt64 column");
    assert!(
        out.stderr.contains("table 'chunks', column 'big'")
            && out.stderr.contains("DECIMAL(20, 0)"),
        "{}",
        out.stderr
    );
}

/// Reads the usage table and the chunks table with DuckDB: usage sums per operation,
/// the columns of each table as DuckDB sees them with and without the Hive partitions,
/// and the distinct partition values (kept as text).
const READ_PARQUET: &str = r#"
import json, sys
import duckdb

usage, chunks = sys.argv[1], sys.argv[2]
con = duckdb.connect()
def scan(path, hive):
    return "read_parquet('%s/**/*.parquet', hive_partitioning = %s, hive_types_autocast = false)" % (
        path, "true" if hive else "false")
def columns(path, hive):
    return [[r[0], r[1]] for r in con.execute("DESCRIBE SELECT * FROM " + scan(path, hive)).fetchall()]
sums = {}
for op, n, tin, tout, cost in con.execute(
        "SELECT operation, COUNT(*), SUM(input_tokens), SUM(output_tokens), "
        "CAST(SUM(cost_usd) AS VARCHAR) FROM " + scan(usage, True) + " GROUP BY operation").fetchall():
    sums[op] = {"rows": n, "input_tokens": int(tin), "output_tokens": int(tout), "cost_usd": cost}
print(json.dumps({
    "duckdb": duckdb.__version__,
    "usage": sums,
    "usage_partitions": [list(r) for r in con.execute(
        "SELECT DISTINCT dt, hour FROM " + scan(usage, True)).fetchall()],
    "usage_columns": columns(usage, True),
    "usage_file_columns": columns(usage, False),
    "chunks_rows": con.execute("SELECT COUNT(*) FROM " + scan(chunks, True)).fetchone()[0],
    "chunks_by_partition": [list(r) for r in con.execute(
        "SELECT tenant, dt, COUNT(*) FROM " + scan(chunks, True) + " GROUP BY ALL ORDER BY ALL").fetchall()],
    "chunks_columns": columns(chunks, True),
    "vector_lengths": [r[0] for r in con.execute(
        "SELECT DISTINCT len(vector) FROM " + scan(chunks, True)).fetchall()],
    "chunks_file_columns": columns(chunks, False),
}))
"#;

/// A decimal as text (`12.3400000000`) in units of 1e-10.
fn units(text: &str) -> i128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(frac.len() <= 10, "{text} has more than 10 decimals");
    int.parse::<i128>().unwrap() * 10_000_000_000 + format!("{frac:0<10}").parse::<i128>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_what_the_ddl_describes_and_usage_sums_match_the_endpoint() {
    const N: usize = 40;
    let fake = FakeEndpoint::start().await;
    fake.throttle_every(6);
    let dir = tempdir();
    let input = dir.path().join("docs.jsonl");
    let tenant = |i: usize| {
        if i.is_multiple_of(3) {
            "acme"
        } else {
            "globex"
        }
    };
    let day = |i: usize| format!("2026-11-2{}", i % 2);
    write_jsonl(
        &input,
        (0..N).map(|i| {
            json!({"doc_id": i, "tenant": tenant(i), "dt": day(i),
                   "body": format!("Invoice {i} for tenant {} is {} days overdue.", tenant(i), i % 5)})
        }),
    );
    let usage = dir.path().join("usage");
    let chunks = dir.path().join("chunks");
    // Prices in USD per million tokens, so every cost is exact in Decimal128(38, 10).
    let job = write_job(
        dir.path(),
        "billing.sql",
        &format!(
            "SET epoch.max_rows = '15';
SET usage.path = '{usage}';
CREATE MODEL llm WITH (provider = 'openai', task = 'chat', endpoint = '${{ENDPOINT}}', model = 'fake-chat',
  max_tokens = '6', 'retry.base_ms' = '1', 'retry.max_ms' = '10',
  'price.input_per_1m' = '0.80', 'price.output_per_1m' = '4.00');
CREATE MODEL emb WITH (provider = 'openai', task = 'embedding', endpoint = '${{ENDPOINT}}', model = 'fake-embed',
  dimensions = '8', 'retry.base_ms' = '1', 'retry.max_ms' = '10', 'price.input_per_1m' = '0.02');
CREATE TABLE docs (doc_id BIGINT NOT NULL, tenant TEXT, dt TEXT, body TEXT)
  WITH (connector = 'file', path = '{input}', format = 'json');
CREATE TABLE chunks WITH (connector = 'parquet', path = '{chunks}', partition_by = 'tenant, dt');
INSERT INTO chunks
SELECT doc_id, tenant, ai_complete('llm', body) AS answer, embed('emb', body) AS vector, dt FROM docs;
",
            usage = s(&usage),
            input = s(&input),
            chunks = s(&chunks),
        ),
    );
    let endpoint = format!("ENDPOINT={}", fake.openai_url());
    let (d, j, e) = (dir.path().to_path_buf(), job.clone(), endpoint.clone());
    let ckpt = dir.path().join("ckpt");
    let out = tokio::task::spawn_blocking(move || {
        strata(&d, &["run", s(&j), "--var", &e, "--checkpoint", s(&ckpt)])
    })
    .await
    .unwrap();
    out.summary("billing run");

    // What the endpoint counted: every attempt, and the tokens of each answered one.
    let received = fake.received();
    let mut want: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for r in &received {
        let (op, input, output) = if r.path.ends_with("/chat/completions") {
            let messages = r.body["messages"].as_array().unwrap();
            let input: u64 = messages
                .iter()
                .filter_map(|m| m["content"].as_str())
                .map(fake_tokens)
                .sum();
            let prompt = messages
                .iter()
                .rev()
                .find(|m| m["role"] == "user")
                .and_then(|m| m["content"].as_str())
                .unwrap();
            let max = r.body["max_tokens"].as_u64().unwrap_or(u64::MAX);
            ("chat", input, fake_tokens(&fake_answer(prompt)).min(max))
        } else {
            assert!(r.path.ends_with("/embeddings"), "unexpected {}", r.path);
            let input: u64 = match &r.body["input"] {
                Value::Array(texts) => texts.iter().map(|t| fake_tokens(t.as_str().unwrap())).sum(),
                Value::String(t) => fake_tokens(t),
                other => panic!("embedding input {other}"),
            };
            ("embedding", input, 0)
        };
        let e = want.entry(op).or_default();
        e.0 += 1;
        if r.status == 200 {
            e.1 += input;
            e.2 += output;
        }
    }
    assert!(
        received.iter().any(|r| r.status == 429),
        "the fake throttled some attempts"
    );

    let got = python(READ_PARQUET, &[s(&usage), s(&chunks)], "");
    // Cost in units of 1e-10 USD: tokens x (USD per 1M tokens in cents) x 100.
    let cents = |op: &str| -> (i128, i128) {
        match op {
            "chat" => (80, 400),
            _ => (2, 0),
        }
    };
    assert_eq!(
        got["usage"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["chat", "embedding"],
        "{got}"
    );
    for (op, (attempts, input, output)) in &want {
        let g = &got["usage"][op];
        assert_eq!(g["rows"], *attempts, "{op}: one usage row per attempt: {g}");
        assert_eq!(g["input_tokens"], *input, "{op}: input tokens");
        assert_eq!(g["output_tokens"], *output, "{op}: output tokens");
        let (ci, co) = cents(op);
        let cost = (*input as i128 * ci + *output as i128 * co) * 100;
        assert_eq!(
            units(g["cost_usd"].as_str().unwrap()),
            cost,
            "{op}: SUM(cost_usd) = {}",
            g["cost_usd"]
        );
    }
    for part in got["usage_partitions"].as_array().unwrap() {
        let (dt, hour) = (part[0].as_str().unwrap(), part[1].as_str().unwrap());
        assert!(
            dt.len() == 10 && hour.len() == 2 && hour.parse::<u32>().unwrap() < 24,
            "usage partition dt={dt}/hour={hour}: not what the date and integer(digits 2) projections produce"
        );
    }
    assert_eq!(got["chunks_rows"], N as u64);
    let by_partition: Vec<(String, String, u64)> = got["chunks_by_partition"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
                r[2].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expect: BTreeMap<(String, String), u64> = BTreeMap::new();
    for i in 0..N {
        *expect.entry((tenant(i).to_string(), day(i))).or_default() += 1;
    }
    assert_eq!(
        by_partition,
        expect
            .into_iter()
            .map(|((t, d), n)| (t, d, n))
            .collect::<Vec<_>>()
    );

    // The DDL of this very job describes the files DuckDB read: its columns are the
    // files' columns, and with the partitions after them, the Hive-partitioned view.
    let d = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        strata(&d, &["athena-ddl", s(&job), "--var", &endpoint])
    })
    .await
    .unwrap();
    out.expect_code(0, "athena-ddl of the run job");
    let tables = parse_ddl(&out.stdout);
    for (name, files, hive) in [
        ("usage", "usage_file_columns", "usage_columns"),
        ("chunks", "chunks_file_columns", "chunks_columns"),
    ] {
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|c| c[0].as_str().unwrap().to_string())
                .collect()
        };
        let ddl_cols = names(&tables[name]["columns"]);
        let ddl_parts = names(&tables[name]["partitions"]);
        assert_eq!(
            ddl_cols,
            names(&got[files]),
            "{name}: DDL columns vs the files"
        );
        // DuckDB appends the Hive partition columns after the file columns, in an
        // order of its own: compare those as sets.
        let mut duck = names(&got[hive]);
        let mut duck_parts = duck.split_off(ddl_cols.len().min(duck.len()));
        assert_eq!(duck, ddl_cols, "{name}: DDL columns vs DuckDB's hive view");
        duck_parts.sort();
        let mut want_parts = ddl_parts.clone();
        want_parts.sort();
        assert_eq!(
            duck_parts, want_parts,
            "{name}: DDL partitions vs DuckDB's hive columns"
        );
    }
    let vector = got["chunks_columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c[0] == "vector")
        .unwrap()[1]
        .clone();
    // Parquet has no fixed-size list: readers see a list of floats (Athena's
    // array<float>), each as long as the model's dimensions.
    assert_eq!(vector, "FLOAT[]", "an embedding is a list of floats");
    assert_eq!(got["vector_lengths"], json!([8]));
    let ddl_vector = pairs(&tables["chunks"], "columns")
        .into_iter()
        .find(|(n, _)| n == "vector")
        .unwrap()
        .1;
    assert_eq!(ddl_vector, "array<float>");
}
