//! Tests of the `file` connector: options, listing, JSON/CSV/Parquet decoding,
//! bad-record isolation, epoch limits, replay and resume.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use object_store::{ObjectStoreExt, PutPayload};
use strata_pipeline::{BadDataPolicy, EpochLimits, Source, SourceEpoch};

use super::build_source;
use super::source::FileSource;
use crate::{connector, ConnectorContext, ConnectorError, TableDecl, TableOptions};

fn ctx(dir: &Path) -> ConnectorContext {
    ConnectorContext {
        job_name: "test".into(),
        staging_dir: dir.join("staging"),
    }
}

fn decl(schema: Option<SchemaRef>, options: &[(&str, &str)]) -> TableDecl {
    let mut pairs = vec![("connector", "file")];
    pairs.extend_from_slice(options);
    TableDecl {
        name: "docs".into(),
        schema,
        options: TableOptions::from_pairs(pairs),
    }
}

fn docs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("title", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]))
}

async fn source(dir: &Path, schema: Option<SchemaRef>, options: &[(&str, &str)]) -> FileSource {
    let (mut s, _, _) = build_source(&decl(schema, options), &ctx(dir))
        .await
        .expect("source builds");
    s.open(None).await.expect("source opens");
    s
}

async fn create_err(dir: &Path, schema: Option<SchemaRef>, options: &[(&str, &str)]) -> String {
    match build_source(&decl(schema, options), &ctx(dir)).await {
        Ok(_) => panic!("expected an error for {options:?}"),
        Err(e) => e.to_string(),
    }
}

fn limits(rows: usize, bytes: usize) -> EpochLimits {
    EpochLimits {
        max_rows: rows,
        max_bytes: bytes,
        max_duration: Duration::from_secs(1),
    }
}

/// Rows as `a|b|c` strings.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<_> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(
                fmts.iter()
                    .map(|f| f.value(r).to_string())
                    .collect::<Vec<_>>()
                    .join("|"),
            );
        }
    }
    out
}

async fn read_all(s: &mut FileSource, l: &EpochLimits) -> Vec<SourceEpoch> {
    let mut out = Vec::new();
    while let Some(ep) = s.read_epoch(l).await.expect("epoch reads") {
        out.push(ep);
    }
    out
}

fn all_rows(eps: &[SourceEpoch]) -> Vec<String> {
    eps.iter().flat_map(|e| rows(&e.batches)).collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

#[tokio::test]
async fn jsonl_happy_path_ignores_extra_fields_and_fills_missing_nullables() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "docs.jsonl",
        b"{\"id\": 1, \"title\": \"a\", \"ts\": \"2026-03-01T12:34:56Z\", \"extra\": {\"x\": [1]}}\n\
          \n\
          {\"id\": 2}\r\n\
          {\"id\": 3, \"title\": null, \"ts\": \"2026-03-01T00:00:00+01:00\"}",
    );
    let mut s = source(dir.path(), Some(docs_schema()), &[("path", &path)]).await;
    assert_eq!(s.size_hint(), Some(std::fs::metadata(&path).unwrap().len()));
    let eps = read_all(&mut s, &limits(1000, 1 << 30)).await;
    assert_eq!(eps.len(), 1);
    assert_eq!(
        all_rows(&eps),
        vec![
            "1|a|2026-03-01T12:34:56Z",
            "2|NULL|NULL",
            "3|NULL|2026-02-28T23:00:00Z"
        ]
    );
    let ep = &eps[0];
    assert!(ep.bad.is_empty());
    assert_eq!(ep.ranges.len(), 1);
    let r = &ep.ranges[0];
    assert!(
        r.split.starts_with("file:///") && r.split.ends_with("/docs.jsonl"),
        "{}",
        r.split
    );
    assert_eq!(
        (r.start, r.end, r.first_record, r.records),
        (0, std::fs::metadata(&path).unwrap().len(), 1, 3)
    );
    assert_eq!(ep.batches[0].schema(), docs_schema());
}

#[tokio::test]
async fn every_kind_of_bad_record_is_reported_and_good_rows_survive() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    let lines: Vec<Vec<u8>> = vec![
        br#"{"id": 1, "title": "ok"}"#.to_vec(),
        br#"{"id": 2, "title": "#.to_vec(), // malformed
        br#"{"id": "abc"}"#.to_vec(),       // wrong type
        b"{\"id\": 4, \"title\": \"\xff\xfe\"}".to_vec(), // invalid UTF-8
        format!(r#"{{"id": 5, "title": "{}"}}"#, "x".repeat(200)).into_bytes(), // oversize
        br#"{"title": "no id"}"#.to_vec(),  // missing NOT NULL
        br#"{"id": 7, "title": "ok too"}"#.to_vec(),
    ];
    let mut offsets = Vec::new();
    for l in &lines {
        offsets.push(data.len() as u64);
        data.extend_from_slice(l);
        data.push(b'\n');
    }
    let path = write(dir.path(), "bad.jsonl", &data);
    let mut s = source(
        dir.path(),
        Some(docs_schema()),
        &[("path", &path), ("max_record_bytes", "100")],
    )
    .await;
    let eps = read_all(&mut s, &limits(1000, 1 << 30)).await;
    assert_eq!(all_rows(&eps), vec!["1|ok|NULL", "7|ok too|NULL"]);
    let bad: Vec<_> = eps.iter().flat_map(|e| e.bad.iter()).collect();
    assert_eq!(bad.len(), 5, "{bad:#?}");
    let expect = [
        (1, "malformed JSON"),
        (2, "column 'id': expected Int64, found string \"abc\""),
        (3, "invalid UTF-8"),
        (4, "record is 222 bytes, more than max_record_bytes (100)"),
        (5, "column 'id' (Int64, NOT NULL) is missing"),
    ];
    for (b, (i, reason)) in bad.iter().zip(expect) {
        assert!(b.reason.starts_with(reason), "line {}: {}", i + 1, b.reason);
        assert_eq!(b.position, offsets[i]);
        assert!(
            b.location.ends_with(&format!("bad.jsonl:{}", i + 1)),
            "{}",
            b.location
        );
        assert!(b.split.ends_with("/bad.jsonl"));
        if i == 4 {
            assert_eq!(b.raw, lines[i][..100]);
        } else {
            assert_eq!(b.raw, lines[i]);
        }
    }
    assert_eq!(eps.iter().map(|e| e.records()).sum::<u64>(), 7);
}

#[tokio::test]
async fn oversize_records_longer_than_a_read_are_skipped_without_buffering() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!(r#"{{"id": 2, "title": "{}"}}"#, "y".repeat(5000));
    let data = format!("{{\"id\": 1}}\n{big}\n{{\"id\": 3}}\n{big}");
    let path = write(dir.path(), "big.jsonl", data.as_bytes());
    let mut s = source(
        dir.path(),
        Some(docs_schema()),
        &[("path", &path), ("max_record_bytes", "1KB")],
    )
    .await;
    s.set_read_size(64);
    let eps = read_all(&mut s, &limits(1000, 1 << 30)).await;
    assert_eq!(all_rows(&eps), vec!["1|NULL|NULL", "3|NULL|NULL"]);
    let bad: Vec<_> = eps.iter().flat_map(|e| e.bad.iter()).collect();
    assert_eq!(bad.len(), 2);
    assert_eq!(bad[0].location.rsplit(':').next(), Some("2"));
    assert_eq!(bad[1].location.rsplit(':').next(), Some("4"));
    assert_eq!(bad[0].raw.len(), 1024);
    assert!(
        bad[0]
            .reason
            .starts_with(&format!("record is {} bytes", big.len())),
        "{}",
        bad[0].reason
    );
}

fn numbered_lines(n: usize, bad_every: usize) -> Vec<u8> {
    let mut data = Vec::new();
    for i in 1..=n {
        if bad_every > 0 && i % bad_every == 0 {
            data.extend_from_slice(format!("{{\"id\": \"bad{i}\"}}\n").as_bytes());
        } else if i % 7 == 0 {
            data.extend_from_slice(b"\n");
        } else {
            data.extend_from_slice(format!("{{\"id\": {i}, \"title\": \"t{i}\"}}\n").as_bytes());
        }
    }
    data
}

#[tokio::test]
async fn epoch_limits_split_reading_and_replay_reproduces_each_epoch() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in/a.jsonl", &numbered_lines(120, 11));
    write(dir.path(), "in/b.jsonl", &numbered_lines(50, 0));
    let path = dir.path().join("in").to_str().unwrap().to_string();
    for (max_rows, max_bytes, read_size) in [
        (17, 1 << 30, 1 << 20),
        (1000, 300, 50),
        (5, 100, 7),
        (1000, 1 << 30, 1 << 20),
    ] {
        let mut s = source(dir.path(), Some(docs_schema()), &[("path", &path)]).await;
        s.set_read_size(read_size);
        let eps = read_all(&mut s, &limits(max_rows, max_bytes)).await;
        let total: Vec<String> = all_rows(&eps);
        let expected_good = (1..=120).filter(|i| i % 11 != 0 && i % 7 != 0).count()
            + (1..=50).filter(|i| i % 7 != 0).count();
        assert_eq!(total.len(), expected_good);
        assert_eq!(eps.iter().map(|e| e.bad.len()).sum::<usize>(), 10);
        for ep in &eps {
            assert!(ep.records() as usize <= max_rows);
            assert!(
                ep.bytes as usize <= max_bytes || ep.records() == 1,
                "{} bytes",
                ep.bytes
            );
            let mut r = source(dir.path(), Some(docs_schema()), &[("path", &path)]).await;
            r.set_read_size(read_size);
            let again = r.replay(&ep.ranges).await.unwrap();
            assert_eq!(rows(&again.batches), rows(&ep.batches));
            let key = |b: &strata_pipeline::BadRecord| {
                (
                    b.position,
                    b.location.clone(),
                    b.reason.clone(),
                    b.raw.clone(),
                )
            };
            assert_eq!(
                again.bad.iter().map(key).collect::<Vec<_>>(),
                ep.bad.iter().map(key).collect::<Vec<_>>()
            );
            assert_eq!(again.bytes, ep.bytes);
        }
        // An epoch spanning two files has one range per file.
        if max_rows == 1000 && max_bytes == 1 << 30 {
            assert_eq!(eps.len(), 1);
            assert_eq!(eps[0].ranges.len(), 2);
            assert_eq!(eps[0].ranges[1].first_record, 1);
        }
    }
}

#[tokio::test]
async fn open_with_state_after_resumes_without_loss_or_duplication() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in/a.jsonl", &numbered_lines(40, 9));
    write(dir.path(), "in/b.jsonl", &numbered_lines(30, 0));
    let path = dir.path().join("in").to_str().unwrap().to_string();
    let mut reference = source(dir.path(), Some(docs_schema()), &[("path", &path)]).await;
    let expected = all_rows(&read_all(&mut reference, &limits(1_000_000, 1 << 30)).await);

    let mut got = Vec::new();
    let mut state = None;
    loop {
        // A fresh process per epoch: re-list, restore, read one epoch.
        let (mut s, _, _) = build_source(
            &decl(Some(docs_schema()), &[("path", &path)]),
            &ctx(dir.path()),
        )
        .await
        .unwrap();
        s.set_read_size(33);
        s.open(state.clone()).await.unwrap();
        match s.read_epoch(&limits(6, 1 << 30)).await.unwrap() {
            Some(ep) => {
                got.extend(rows(&ep.batches));
                state = Some(ep.state_after);
            }
            None => break,
        }
    }
    assert_eq!(got, expected);
    // A file added later (sorting after the position) is read after a restart.
    write(dir.path(), "in/c.jsonl", b"{\"id\": 1000}\n");
    let (mut s, _, _) = build_source(
        &decl(Some(docs_schema()), &[("path", &path)]),
        &ctx(dir.path()),
    )
    .await
    .unwrap();
    s.open(state).await.unwrap();
    let eps = read_all(&mut s, &limits(100, 1 << 30)).await;
    assert_eq!(all_rows(&eps), vec!["1000|NULL|NULL"]);
}

#[tokio::test]
async fn globs_and_directories_list_sorted_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data/b.jsonl", b"{\"id\": 2}\n");
    write(dir.path(), "data/a.jsonl", b"{\"id\": 1}\n");
    write(dir.path(), "data/sub/c.jsonl", b"{\"id\": 3}\n");
    write(dir.path(), "data/sub/d.txt", b"{\"id\": 4}\n");
    write(dir.path(), "data/_SUCCESS", b"");
    write(dir.path(), "data/.hidden.jsonl", b"{\"id\": 5}\n");
    let base = dir.path().join("data").to_str().unwrap().to_string();
    let cases = [
        (format!("{base}/*.jsonl"), None, vec!["1", "2"]),
        (format!("{base}/**/*.jsonl"), None, vec!["1", "2", "3"]),
        (format!("{base}/sub/*"), Some("json"), vec!["3", "4"]),
        (
            format!("file://{base}/"),
            Some("json"),
            vec!["1", "2", "3", "4"],
        ),
    ];
    for (path, format, expect) in cases {
        let mut opts = vec![("path", path.as_str())];
        if let Some(f) = format {
            opts.push(("format", f));
        }
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let mut s = source(dir.path(), Some(schema), &opts).await;
        assert_eq!(
            all_rows(&read_all(&mut s, &limits(100, 1 << 30)).await),
            expect,
            "{path}"
        );
    }
    // A directory of mixed extensions needs an explicit format.
    let err = create_err(dir.path(), Some(docs_schema()), &[("path", &base)]).await;
    assert!(err.contains("cannot infer the format"), "{err}");
    let err = create_err(
        dir.path(),
        Some(docs_schema()),
        &[("path", &format!("{base}/*.csv"))],
    )
    .await;
    assert!(err.contains("no files found"), "{err}");
}

#[tokio::test]
async fn memory_store_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let loc =
        strata_pipeline::storage::resolve("memory://file-tests/in", &BTreeMap::new()).unwrap();
    for (name, body) in [
        ("x/2.jsonl", "{\"id\": 2}\n"),
        ("x/1.jsonl", "{\"id\": 1}\n{\"id\": \"nope\"}\n"),
    ] {
        loc.store
            .put(&loc.child(name), PutPayload::from(body.as_bytes().to_vec()))
            .await
            .unwrap();
    }
    let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
    let mut s = source(
        dir.path(),
        Some(schema),
        &[("path", "memory://file-tests/in/x/")],
    )
    .await;
    let eps = read_all(&mut s, &limits(100, 1 << 30)).await;
    assert_eq!(all_rows(&eps), vec!["1", "2"]);
    assert_eq!(eps[0].bad[0].split, "memory://file-tests/in/x/1.jsonl");
    assert_eq!(eps[0].bad[0].location, "memory://file-tests/in/x/1.jsonl:2");
}

#[tokio::test]
async fn csv_with_header_quoted_newlines_and_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = "title,extra,id\n\
                \"multi\nline, \"\"quoted\"\"\",x,1\n\
                plain,y,2\n\
                \n\
                wrong,z,notanumber\n\
                short,3\n\
                last,w,5";
    let path = write(dir.path(), "t.csv", data.as_bytes());
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("title", DataType::Utf8, true),
    ]));
    let mut s = source(dir.path(), Some(schema.clone()), &[("path", &path)]).await;
    s.set_read_size(10);
    let eps = read_all(&mut s, &limits(2, 1 << 30)).await;
    assert_eq!(
        all_rows(&eps),
        vec!["1|multi\nline, \"quoted\"", "2|plain", "5|last"]
    );
    let bad: Vec<_> = eps.iter().flat_map(|e| e.bad.iter()).collect();
    assert_eq!(bad.len(), 2);
    assert_eq!(
        bad[0].reason,
        "column 'id': expected Int64, found \"notanumber\""
    );
    assert!(bad[0].location.ends_with("t.csv:6"), "{}", bad[0].location);
    assert_eq!(bad[0].position, data.find("wrong").unwrap() as u64);
    assert_eq!(bad[1].reason, "expected 3 fields, found 2");
    assert!(bad[1].location.ends_with("t.csv:7"));
    assert_eq!(eps[0].ranges[0].first_record, 2);
    for ep in &eps {
        let again = source(dir.path(), Some(schema.clone()), &[("path", &path)])
            .await
            .replay(&ep.ranges)
            .await
            .unwrap();
        assert_eq!(rows(&again.batches), rows(&ep.batches));
    }
    // Without a header: positional; a declared column missing from a header is a schema error.
    let path2 = write(dir.path(), "n.csv", b"7;seven\n");
    let mut s = source(
        dir.path(),
        Some(schema.clone()),
        &[
            ("path", &path2),
            ("csv.has_header", "false"),
            ("csv.delimiter", ";"),
        ],
    )
    .await;
    assert_eq!(
        all_rows(&read_all(&mut s, &limits(10, 1 << 30)).await),
        vec!["7|seven"]
    );
    let path3 = write(dir.path(), "h.csv", b"id,name\n1,a\n");
    let err = create_err(dir.path(), Some(schema), &[("path", &path3)]).await;
    assert!(
        err.contains("declared column 'title' is not in the CSV header (id, name)"),
        "{err}"
    );
}

fn write_parquet(path: &Path, ids: &[i64], names: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names.to_vec())),
        ],
    )
    .unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(2))
        .build();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        schema,
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[tokio::test]
async fn parquet_infers_columns_and_hive_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t");
    write_parquet(
        &t.join("dt=2026-01-01/tenant=a%20b/p1.parquet"),
        &[1, 2, 3],
        &["a", "b", "c"],
    );
    write_parquet(
        &t.join("dt=2026-01-02/tenant=c/p2.parquet"),
        &[4, 5],
        &["d", "e"],
    );
    let path = t.to_str().unwrap().to_string();
    let mut s = source(dir.path(), None, &[("path", &path)]).await;
    let names: Vec<_> = s
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("id".into(), DataType::Int64),
            ("name".into(), DataType::Utf8),
            ("dt".into(), DataType::Utf8),
            ("tenant".into(), DataType::Utf8)
        ]
    );
    let eps = read_all(&mut s, &limits(2, 1 << 30)).await;
    let expected = vec![
        "1|a|2026-01-01|a b",
        "2|b|2026-01-01|a b",
        "3|c|2026-01-01|a b",
        "4|d|2026-01-02|c",
        "5|e|2026-01-02|c",
    ];
    assert_eq!(all_rows(&eps), expected);
    assert_eq!(eps[1].ranges[0].start, 2);
    assert_eq!(eps[1].ranges[0].end, 3);
    assert_eq!(eps[1].ranges[1].start, 0);
    assert_eq!(eps[1].ranges[1].end, 1);
    for ep in &eps {
        let again = source(dir.path(), None, &[("path", &path)])
            .await
            .replay(&ep.ranges)
            .await
            .unwrap();
        assert_eq!(rows(&again.batches), rows(&ep.batches));
    }
    // Resume from the middle.
    let mut s = source(dir.path(), None, &[("path", &path)]).await;
    let first = s.read_epoch(&limits(3, 1 << 30)).await.unwrap().unwrap();
    let mut s2 = source(dir.path(), None, &[("path", &path)]).await;
    s2.open(Some(first.state_after)).await.unwrap();
    assert_eq!(
        all_rows(&read_all(&mut s2, &limits(100, 1 << 30)).await),
        expected[3..].to_vec()
    );

    // Declared columns are projected and cast; a partition column may be declared.
    let declared = Arc::new(Schema::new(vec![
        Field::new("tenant", DataType::Utf8, true),
        Field::new("id", DataType::Float64, true),
    ]));
    let mut s = source(dir.path(), Some(declared.clone()), &[("path", &path)]).await;
    assert_eq!(
        all_rows(&read_all(&mut s, &limits(100, 1 << 30)).await)[3],
        "c|4.0"
    );
    let missing = Arc::new(Schema::new(vec![Field::new("nope", DataType::Utf8, true)]));
    let err = create_err(dir.path(), Some(missing), &[("path", &path)]).await;
    assert!(
        err.contains("column 'nope' is not in Parquet file"),
        "{err}"
    );
}

#[tokio::test]
async fn option_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.jsonl", b"{\"id\": 1}\n");
    let s = Some(docs_schema());
    let e = create_err(dir.path(), s.clone(), &[("path", &path), ("bogus", "1")]).await;
    assert!(
        e.contains("unknown option 'bogus'") && e.contains("max_record_bytes"),
        "{e}"
    );
    let e = create_err(dir.path(), s.clone(), &[]).await;
    assert!(e.contains("requires option 'path'"), "{e}");
    let e = create_err(
        dir.path(),
        s.clone(),
        &[("path", &path), ("dead_letter", "/tmp/dlq")],
    )
    .await;
    assert!(
        e.contains("dead_letter only applies with bad_data = 'dead_letter'"),
        "{e}"
    );
    let e = create_err(
        dir.path(),
        s.clone(),
        &[("path", &path), ("bad_data", "dead_letter")],
    )
    .await;
    assert!(e.contains("requires option 'dead_letter'"), "{e}");
    let e = create_err(dir.path(), s.clone(), &[("path", &path), ("format", "xml")]).await;
    assert!(e.contains("invalid value 'xml' for option 'format'"), "{e}");
    let e = create_err(
        dir.path(),
        s.clone(),
        &[("path", &path), ("bad_data", "ignore")],
    )
    .await;
    assert!(e.contains("'bad_data'"), "{e}");
    let e = create_err(
        dir.path(),
        s.clone(),
        &[("path", &path), ("max_record_bytes", "lots")],
    )
    .await;
    assert!(e.contains("byte size"), "{e}");
    let e = create_err(
        dir.path(),
        s.clone(),
        &[("path", &path), ("csv.delimiter", ";")],
    )
    .await;
    assert!(e.contains("csv.* options only apply"), "{e}");
    let e = create_err(
        dir.path(),
        s.clone(),
        &[("path", &path), ("storage.region", "eu-west-1")],
    )
    .await;
    assert!(e.contains("does not apply to local paths"), "{e}");
    let e = create_err(dir.path(), None, &[("path", &path)]).await;
    assert!(e.contains("needs declared columns"), "{e}");
    let e = create_err(
        dir.path(),
        s.clone(),
        &[("path", &format!("{path}.missing"))],
    )
    .await;
    assert!(e.contains("does not exist"), "{e}");
    let noext = write(dir.path(), "x.data", b"{}\n");
    let e = create_err(dir.path(), s.clone(), &[("path", &noext)]).await;
    assert!(e.contains("cannot infer the format"), "{e}");
    // The connector is registered and rejects sinks.
    let c = connector("file").unwrap();
    let sink = c
        .create_sink(
            &decl(s.clone(), &[("path", &path)]),
            docs_schema(),
            &ctx(dir.path()),
        )
        .await;
    assert!(matches!(sink, Err(ConnectorError::Unsupported(_))));
}

#[tokio::test]
async fn dead_letter_policy_builds_a_sink() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.jsonl", b"{\"id\": 1}\n");
    let dlq = dir.path().join("dlq");
    let parts = connector("file")
        .unwrap()
        .create_source(
            &decl(
                Some(docs_schema()),
                &[
                    ("path", &path),
                    ("bad_data", "dead_letter"),
                    ("dead_letter", dlq.to_str().unwrap()),
                ],
            ),
            &ctx(dir.path()),
        )
        .await
        .unwrap();
    assert_eq!(parts.bad_data, BadDataPolicy::DeadLetter);
    let sink = parts.dead_letter.expect("dead-letter sink");
    assert_eq!(
        sink.schema(),
        strata_pipeline::bad_data::dead_letter_schema()
    );
    assert_eq!(sink.name(), "docs.dead_letter");
    assert!(parts.source.is_bounded());
}

/// Decode throughput of ~1 KB JSON rows, printed (no assertion on timing).
/// `STRATA_FILE_BENCH_MB` sets the input size (default 4); measure with
/// `STRATA_FILE_BENCH_MB=512 cargo test --release -p strata-connectors jsonl_decode_throughput -- --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn jsonl_decode_throughput() {
    let mb: usize = std::env::var("STRATA_FILE_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let dir = tempfile::tempdir().unwrap();
    let body = "lorem ipsum dolor sit amet, consectetur adipiscing elit \\\"quoted\\\" ".repeat(15);
    let mut data = Vec::with_capacity(mb << 20);
    let mut n = 0u64;
    while data.len() < mb << 20 {
        let line = format!(
            "{{\"doc_id\": \"doc-{n:010}\", \"tenant\": \"tenant-{}\", \"ts\": \"2026-03-01T12:34:56Z\", \"n\": {n}, \"score\": 0.{n}, \"body\": \"{body}\"}}\n",
            n % 17
        );
        data.extend_from_slice(line.as_bytes());
        n += 1;
    }
    let path = write(dir.path(), "bench.jsonl", &data);
    let schema = Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::Utf8, false),
        Field::new("tenant", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("n", DataType::Int64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("body", DataType::Utf8, true),
    ]));
    let mut s = source(dir.path(), Some(schema), &[("path", &path)]).await;
    let start = std::time::Instant::now();
    let mut rows = 0;
    while let Some(ep) = s.read_epoch(&limits(1_000_000, 1 << 30)).await.unwrap() {
        assert!(ep.bad.is_empty());
        rows += ep.rows();
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(rows as u64, n);
    println!(
        "jsonl decode: {:.1} MB in {secs:.3}s = {:.0} MB/s, {:.0} rows/s ({} B/row)",
        data.len() as f64 / 1e6,
        data.len() as f64 / 1e6 / secs,
        n as f64 / secs,
        data.len() as u64 / n
    );
}
