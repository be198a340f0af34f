//! The Parquet sink end to end (DESIGN §2, §6): Hive partition layout with the
//! partition columns in folder names only, `rollover.rows` splitting an
//! epoch's output into several files, `compression` and
//! `parquet.row_group_size` in the files' metadata, several INSERTs into
//! different sinks in one job, `strata query` over the output, and a table
//! folder that holds nothing but committed `*.parquet` files after a run.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use parquet::basic::Compression;
use serde_json::{json, Value};

use common::*;

/// `n` input rows: id, tenant (one needing Hive escaping, one NULL), ts, value.
fn rows(n: i64) -> Vec<Value> {
    let tenants = [Some("acme"), Some("globex"), Some("a/b=c"), None];
    (0..n)
        .map(|i| {
            json!({
                "id": i,
                "tenant": tenants[(i % 4) as usize],
                "ts": format!("2026-03-0{}T10:{:02}:00Z", 1 + (i % 3), i % 60),
                "value": i as f64 * 1.5,
                "name": format!("name {i}"),
            })
        })
        .collect()
}

const COLUMNS: &str = "id BIGINT NOT NULL, tenant TEXT, ts TIMESTAMP, value DOUBLE, name TEXT";

fn source(input: &Path) -> String {
    format!(
        "CREATE TABLE src ({COLUMNS})\nWITH (connector = 'file', path = '{}', format = 'json');\n",
        s(input)
    )
}

/// Run `job` (written to `dir`), expecting success.
fn run_job(dir: &Path, name: &str, job: &str) -> Summary {
    let path = write_job(dir, &format!("{name}.sql"), job);
    strata(dir, &["run", s(&path)]).summary(name)
}

#[test]
fn partition_layout_hive_folders_and_file_schema() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    let data = rows(200);
    write_jsonl(&input, data.clone());
    let out = tmp.path().join("out");
    let job = format!(
        "SET job.name = 'partitioned';\nSET epoch.max_rows = '50';\n{}\
         CREATE TABLE t WITH (connector = 'parquet', path = '{}/', partition_by = 'tenant, dt');\n\
         INSERT INTO t SELECT id, tenant, value, name, date_format(ts, '%Y-%m-%d') AS dt FROM src;\n",
        source(&input),
        s(&out)
    );
    let sum = run_job(tmp.path(), "partitioned", &job);
    assert_eq!(sum.sink("t").rows, 200);

    assert_clean_table(&out, &["tenant", "dt"]);
    let tree = list_tree(&out);
    for folder in [
        "tenant=acme/",
        "tenant=globex/",
        "tenant=a%2Fb%3Dc/",
        "tenant=__HIVE_DEFAULT_PARTITION__/",
        "tenant=acme/dt=2026-03-01/",
    ] {
        assert!(
            tree.contains(&folder.to_string()),
            "expected folder {folder} in {tree:?}"
        );
    }
    let files = read_table(&out);
    assert_eq!(files.len() as u64, sum.sink("t").files);
    for f in &files {
        let schema = f.batches.first().expect("a file has rows").schema();
        let names: Vec<&str> = schema.fields().iter().map(|c| c.name().as_str()).collect();
        assert_eq!(
            names,
            ["id", "value", "name"],
            "partition columns must not be in the file {}",
            f.rel
        );
        let parquet_cols: Vec<String> = f
            .metadata
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(
            parquet_cols,
            ["id", "value", "name"],
            "Parquet schema of {}",
            f.rel
        );
    }

    // Every row once, with its partition values back from the folder names.
    let want: Vec<Row> = data
        .iter()
        .map(|r| {
            let ts = r["ts"].as_str().expect("ts");
            let mut row = Row::new();
            row.insert("id".into(), r["id"].clone());
            row.insert("tenant".into(), r["tenant"].clone());
            row.insert("value".into(), r["value"].clone());
            row.insert("name".into(), r["name"].clone());
            row.insert("dt".into(), Value::String(ts[..10].to_string()));
            row
        })
        .collect();
    let got: Vec<Row> = files.iter().flat_map(|f| f.rows()).collect();
    assert_eq!(canonical_dump(&got), canonical_dump(&want));
}

#[test]
fn rollover_rows_splits_each_epoch_and_keeps_every_row_once() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    write_jsonl(&input, rows(1000));
    let out = tmp.path().join("out");
    let job = format!(
        "SET job.name = 'rollover';\nSET epoch.max_rows = '250';\n{}\
         CREATE TABLE t WITH (connector = 'parquet', path = '{}/', 'rollover.rows' = 100);\n\
         INSERT INTO t SELECT id, name FROM src;\n",
        source(&input),
        s(&out)
    );
    let sum = run_job(tmp.path(), "rollover", &job);
    assert_eq!(sum.epochs, 4, "1000 rows in epochs of 250");
    assert_clean_table(&out, &[]);
    let files = read_table(&out);
    // Files never span epochs: 100 + 100 + 50 per epoch.
    let mut sizes: Vec<usize> = files.iter().map(|f| f.num_rows()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [vec![50; 4], vec![100; 8]].concat(), "rows per file");
    assert_eq!(sum.sink("t").files, 12);
    let rows: Vec<Row> = files.iter().flat_map(|f| f.rows()).collect();
    assert_exactly_once(&int_column(&rows, "id"), 1000, "rollover");
}

/// Compression of every column chunk of every file under `dir`.
fn codecs(dir: &Path) -> Vec<Compression> {
    let mut out = Vec::new();
    for f in read_table(dir) {
        for rg in f.metadata.row_groups() {
            out.extend(rg.columns().iter().map(|c| c.compression()));
        }
    }
    assert!(!out.is_empty(), "no column chunks under {}", dir.display());
    out
}

#[test]
fn compression_and_row_group_size_are_in_the_parquet_metadata() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    write_jsonl(&input, rows(1000));
    let out = tmp.path().join("out");
    type Case = (&'static str, Option<&'static str>, fn(&Compression) -> bool);
    let cases: [Case; 7] = [
        ("default", None, |c| matches!(c, Compression::ZSTD(_))),
        ("zstd9", Some("zstd(9)"), |c| {
            matches!(c, Compression::ZSTD(_))
        }),
        ("snappy", Some("snappy"), |c| {
            matches!(c, Compression::SNAPPY)
        }),
        ("gzip", Some("gzip"), |c| matches!(c, Compression::GZIP(_))),
        ("lz4", Some("lz4"), |c| matches!(c, Compression::LZ4_RAW)),
        ("brotli", Some("brotli(4)"), |c| {
            matches!(c, Compression::BROTLI(_))
        }),
        ("none", Some("none"), |c| {
            matches!(c, Compression::UNCOMPRESSED)
        }),
    ];
    let mut job = format!("SET job.name = 'codecs';\n{}", source(&input));
    for (name, codec, _) in &cases {
        let opt = codec
            .map(|c| format!(", compression = '{c}'"))
            .unwrap_or_default();
        job.push_str(&format!(
            "CREATE TABLE t_{name} WITH (connector = 'parquet', path = '{}/{name}/'{opt});\n",
            s(&out)
        ));
        job.push_str(&format!(
            "INSERT INTO t_{name} SELECT id, name, value FROM src;\n"
        ));
    }
    job.push_str(&format!("CREATE TABLE t_groups WITH (connector = 'parquet', path = '{}/groups/', 'parquet.row_group_size' = 100);\n", s(&out)));
    job.push_str("INSERT INTO t_groups SELECT id, name FROM src;\n");
    let sum = run_job(tmp.path(), "codecs", &job);
    for (name, codec, is) in &cases {
        let dir = out.join(name);
        assert_eq!(sum.sink(&format!("t_{name}")).rows, 1000);
        assert_clean_table(&dir, &[]);
        for c in codecs(&dir) {
            assert!(is(&c), "compression = {codec:?}: a column chunk is {c:?}");
        }
    }
    let files = read_table(&out.join("groups"));
    assert_eq!(files.len(), 1);
    let md = &files[0].metadata;
    assert_eq!(
        md.num_row_groups(),
        10,
        "'parquet.row_group_size' = 100 over 1000 rows"
    );
    assert!(
        md.row_groups().iter().all(|rg| rg.num_rows() == 100),
        "every row group holds 100 rows"
    );
}

#[test]
fn several_inserts_write_two_sinks_in_the_same_epochs() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    let data = rows(300);
    write_jsonl(&input, data.clone());
    let out = tmp.path().join("out");
    let job = format!(
        "SET job.name = 'two_sinks';\nSET epoch.max_rows = '100';\n{}\
         CREATE TABLE everything WITH (connector = 'parquet', path = '{out}/everything/', partition_by = 'tenant');\n\
         CREATE TABLE thirds (id BIGINT, shout TEXT) WITH (connector = 'parquet', path = '{out}/thirds/');\n\
         INSERT INTO everything SELECT id, tenant, name FROM src;\n\
         INSERT INTO thirds SELECT id, upper(name) FROM src WHERE id % 3 = 0;\n",
        source(&input),
        out = s(&out)
    );
    let sum = run_job(tmp.path(), "two_sinks", &job);
    assert_eq!(sum.epochs, 3);
    assert_eq!(sum.source("src").records, 300);
    assert_eq!(sum.sink("everything").rows, 300);
    assert_eq!(sum.sink("thirds").rows, 100);
    assert_clean_table(&out.join("everything"), &["tenant"]);
    assert_clean_table(&out.join("thirds"), &[]);

    let all = table_rows(&out.join("everything"));
    let want: Vec<Row> = data
        .iter()
        .map(|r| {
            [
                ("id", r["id"].clone()),
                ("tenant", r["tenant"].clone()),
                ("name", r["name"].clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        })
        .collect();
    assert_eq!(canonical_dump(&all), canonical_dump(&want));

    let thirds = table_rows(&out.join("thirds"));
    let want: Vec<Row> = data
        .iter()
        .filter(|r| r["id"].as_i64().expect("id") % 3 == 0)
        .map(|r| {
            let shout = r["name"].as_str().expect("name").to_uppercase();
            [
                ("id".to_string(), r["id"].clone()),
                ("shout".to_string(), Value::String(shout)),
            ]
            .into_iter()
            .collect()
        })
        .collect();
    assert_eq!(canonical_dump(&thirds), canonical_dump(&want));
}

/// The data rows of a table `strata query` printed (`| a | b |` lines).
fn printed_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn strata_query_reads_the_output_with_its_hive_columns() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    let data = rows(400);
    write_jsonl(&input, data.clone());
    let out = tmp.path().join("out");
    let job = format!(
        "SET job.name = 'queried';\nSET epoch.max_rows = '150';\n{}\
         CREATE TABLE t WITH (connector = 'parquet', path = '{}/', partition_by = 'tenant, dt');\n\
         INSERT INTO t SELECT id, tenant, value, date_format(ts, '%Y-%m-%d') AS dt FROM src;\n",
        source(&input),
        s(&out)
    );
    run_job(tmp.path(), "queried", &job);

    let sql = "SELECT tenant, count(*) AS n, count(DISTINCT id) AS ids, sum(value) AS total, count(DISTINCT dt) AS days \
               FROM t WHERE tenant IN ('acme', 'globex', 'a/b=c') GROUP BY tenant ORDER BY tenant";
    let table = format!("t={}", s(&out));
    let o = strata(tmp.path(), &["query", sql, "--table", &table]);
    o.expect_code(0, "strata query");
    let got = printed_rows(&o.stdout);

    let mut want: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for r in &data {
        if let Some(t) = r["tenant"].as_str() {
            let e = want.entry(t.to_string()).or_default();
            e.0 += 1;
            e.1 += r["value"].as_f64().expect("value");
        }
    }
    let mut expected = vec![vec![
        "tenant".to_string(),
        "n".into(),
        "ids".into(),
        "total".into(),
        "days".into(),
    ]];
    for (t, (n, total)) in &want {
        expected.push(vec![
            t.clone(),
            n.to_string(),
            n.to_string(),
            format!("{total:?}"),
            "3".into(),
        ]);
    }
    assert_eq!(got, expected, "strata query output:\n{}", o.stdout);
}

/// Regression: the sink writes NULL partition values as Hive's
/// `__HIVE_DEFAULT_PARTITION__` folder, which Athena, Hive and Spark read back
/// as NULL; `strata query` showed the folder name as a string instead.
#[test]
fn strata_query_reads_null_partition_values_as_null() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    write_jsonl(&input, rows(40));
    let out = tmp.path().join("out");
    let job = format!(
        "SET job.name = 'nulls';\n{}\
         CREATE TABLE t WITH (connector = 'parquet', path = '{}/', partition_by = 'tenant');\n\
         INSERT INTO t SELECT id, tenant FROM src;\n",
        source(&input),
        s(&out)
    );
    run_job(tmp.path(), "nulls", &job);
    assert!(
        out.join("tenant=__HIVE_DEFAULT_PARTITION__").is_dir(),
        "NULL partition folder: {:?}",
        list_tree(&out)
    );
    let table = format!("t={}", s(&out));
    let o = strata(tmp.path(), &["query", "SELECT count(*) AS n, count(tenant) AS named, sum(CASE WHEN tenant IS NULL THEN 1 ELSE 0 END) AS nulls FROM t", "--table", &table]);
    o.expect_code(0, "strata query");
    assert_eq!(
        printed_rows(&o.stdout),
        [vec!["n", "named", "nulls"], vec!["40", "30", "10"]],
        "NULL tenants must read back as NULL:\n{}",
        o.stdout
    );
}

#[test]
fn rerunning_a_finished_job_leaves_the_table_as_it_was() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    write_jsonl(&input, rows(120));
    let out = tmp.path().join("out");
    let job = format!(
        "SET job.name = 'twice';\nSET epoch.max_rows = '50';\n{}\
         CREATE TABLE t WITH (connector = 'parquet', path = '{}/', partition_by = 'tenant');\n\
         INSERT INTO t SELECT id, tenant, name FROM src;\n",
        source(&input),
        s(&out)
    );
    let first = run_job(tmp.path(), "twice", &job);
    assert_eq!(first.epochs, 3);
    let before = list_tree(&out);
    let again = run_job(tmp.path(), "twice", &job);
    assert_eq!(
        (
            again.epochs,
            again.source("src").records,
            again.sink("t").rows
        ),
        (0, 0, 0),
        "a finished job has nothing left to read"
    );
    assert_eq!(list_tree(&out), before, "the table must not change");
    assert_clean_table(&out, &["tenant"]);
    assert_exactly_once(
        &int_column(&table_rows(&out), "id"),
        120,
        "after a second run",
    );
}

/// The sink's output read back by the file source (`format = 'parquet'`,
/// columns inferred, Hive partition columns from the folders, NULL from
/// `__HIVE_DEFAULT_PARTITION__`) is the input again.
#[test]
fn partitioned_output_reads_back_through_the_file_source() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    let data = rows(120);
    write_jsonl(&input, data.clone());
    let out = tmp.path().join("out");
    let again = tmp.path().join("again");
    let first = format!(
        "SET job.name = 'write';\nSET epoch.max_rows = '50';\n{}\
         CREATE TABLE t WITH (connector = 'parquet', path = '{}/', partition_by = 'tenant');\n\
         INSERT INTO t SELECT id, tenant, value, name FROM src;\n",
        source(&input),
        s(&out)
    );
    run_job(tmp.path(), "write", &first);
    let second = format!(
        "SET job.name = 'read_back';\n\
         CREATE TABLE written WITH (connector = 'file', path = '{}/', format = 'parquet');\n\
         CREATE TABLE copy WITH (connector = 'parquet', path = '{}/');\n\
         INSERT INTO copy SELECT id, tenant, value, name FROM written;\n",
        s(&out),
        s(&again)
    );
    let sum = run_job(tmp.path(), "read_back", &second);
    assert_eq!(sum.source("written").records, 120);
    let want: Vec<Row> = data
        .iter()
        .map(|r| {
            ["id", "tenant", "value", "name"]
                .iter()
                .map(|k| (k.to_string(), r[*k].clone()))
                .collect()
        })
        .collect();
    assert_eq!(canonical_dump(&table_rows(&again)), canonical_dump(&want));
}

/// `'rollover.bytes'` and `'rollover.interval'` split one epoch's output into
/// several files, every row still exactly once.
#[test]
fn rollover_by_bytes_and_by_interval() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    let n = 20_000;
    write_jsonl(&input, rows(n));
    let out = tmp.path().join("out");
    let job = format!(
        "SET job.name = 'rollover_more';\n{}\
         CREATE TABLE by_bytes WITH (connector = 'parquet', path = '{out}/bytes/', compression = 'none', 'rollover.bytes' = '100KB');\n\
         CREATE TABLE by_time WITH (connector = 'parquet', path = '{out}/time/', 'rollover.interval' = '1ms');\n\
         INSERT INTO by_bytes SELECT id, name FROM src;\n\
         INSERT INTO by_time SELECT id, name FROM src;\n",
        source(&input),
        out = s(&out)
    );
    let sum = run_job(tmp.path(), "rollover_more", &job);
    assert_eq!(sum.epochs, 1);
    for (sink, dir) in [("by_bytes", "bytes"), ("by_time", "time")] {
        let dir = out.join(dir);
        assert_clean_table(&dir, &[]);
        let files = read_table(&dir);
        assert!(
            files.len() >= 2,
            "{sink}: one epoch of {n} rows must roll over into several files, got {}",
            files.len()
        );
        assert_eq!(sum.sink(sink).files, files.len() as u64);
        let rows: Vec<Row> = files.iter().flat_map(|f| f.rows()).collect();
        assert_exactly_once(&int_column(&rows, "id"), n, sink);
    }
}

/// Regression: a query's GROUP BY (likewise DISTINCT and LIMIT) was run once
/// per epoch, so a bounded job bigger than one epoch silently wrote one partial
/// result per epoch (four `acme` rows of 25 instead of one of 100). A bounded
/// source's aggregate must be one result per group (DESIGN §2: over a bounded
/// source it is an ordinary GROUP BY), or the job must be refused at plan time
/// (exit 2) until aggregates keep state across epochs; never wrong numbers.
#[test]
fn group_by_over_a_bounded_source_spanning_epochs_is_one_row_per_group() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    write_jsonl(&input, rows(400));
    let out = tmp.path().join("out");
    let job = format!(
        "SET job.name = 'grouped';\nSET epoch.max_rows = '100';\n{}\
         CREATE TABLE t WITH (connector = 'parquet', path = '{}/');\n\
         INSERT INTO t SELECT tenant, count(*) AS n FROM src GROUP BY tenant;\n",
        source(&input),
        s(&out)
    );
    let path = write_job(tmp.path(), "grouped.sql", &job);
    let o = strata(tmp.path(), &["run", s(&path)]);
    if o.code == Some(2) {
        assert!(
            o.stderr.contains("GROUP BY") || o.stderr.contains("aggregate"),
            "a refusal says why:\n{}",
            o.stderr
        );
        return;
    }
    o.summary("a GROUP BY job over 4 epochs");
    let mut got: Vec<(Value, i64)> = table_rows(&out)
        .into_iter()
        .map(|r| (r["tenant"].clone(), r["n"].as_i64().expect("n")))
        .collect();
    got.sort_by_key(|(t, _)| t.to_string());
    let want: Vec<(Value, i64)> = vec![
        (json!("a/b=c"), 100),
        (json!("acme"), 100),
        (json!("globex"), 100),
        (Value::Null, 100),
    ];
    let mut want = want;
    want.sort_by_key(|(t, _)| t.to_string());
    assert_eq!(got, want, "one row per tenant with its full count");
}
