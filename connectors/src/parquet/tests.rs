//! Runs the [`conformance`](super::conformance) suite against a temporary
//! local folder, a `file://` URL and `memory://`, plus connector-level checks
//! (option errors, dead-letter sink, cross-device publish).

use std::collections::BTreeMap;

use super::conformance::{self, Harness};
use crate::{connector, ConnectorContext, ConnectorError, TableDecl, TableOptions};

fn memory_location(test: &str) -> String {
    format!("memory://parquet-conformance/{test}-{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local_path() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table");
    let h = Harness::new(
        table.to_str().unwrap(),
        BTreeMap::new(),
        &dir.path().join("staging"),
    );
    conformance::run_all(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_file_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}/table", dir.path().display());
    let h = Harness::new(&url, BTreeMap::new(), &dir.path().join("staging"));
    conformance::staged_invisible_until_publish(&h.sub("visibility")).await;
    conformance::partition_layout(&h.sub("partitions")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_memory() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(&memory_location("all"), BTreeMap::new(), dir.path());
    conformance::run_all(&h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_publish_of_large_files() {
    // Bigger than one upload part: exercises put_multipart + complete.
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(&memory_location("multipart"), BTreeMap::new(), dir.path());
    let sink = h
        .sink(
            "big",
            conformance::test_schema(),
            &[("compression", "none")],
        )
        .await;
    let epoch = strata_pipeline::sink::EpochInfo {
        epoch: 1,
        file_stem: "big".into(),
        started_micros: 0,
    };
    let mut w = sink.begin_epoch(&epoch).await.unwrap();
    for start in (0..20_000).step_by(1000) {
        w.write(conformance::test_rows(start, 1000, &[Some("a")], 1024))
            .await
            .unwrap();
    }
    let staged = w.finish().await.unwrap();
    let stats = staged.publish().await.unwrap();
    assert!(
        stats.bytes > super::sink::UPLOAD_PART_BYTES as u64,
        "{stats:?}"
    );
    assert_eq!(h.ids().await, (0..20_000).collect::<Vec<_>>());
}

fn decl(pairs: &[(&str, &str)]) -> TableDecl {
    let pairs = [("connector", "parquet")]
        .into_iter()
        .chain(pairs.iter().copied());
    TableDecl {
        name: "out".into(),
        schema: None,
        options: TableOptions::from_pairs(pairs),
    }
}

async fn create(pairs: &[(&str, &str)]) -> Result<(), ConnectorError> {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ConnectorContext {
        job_name: "j".into(),
        staging_dir: dir.path().to_path_buf(),
    };
    let c = connector("parquet").unwrap();
    c.create_sink(&decl(pairs), conformance::test_schema(), &ctx)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn option_errors() {
    let e = create(&[("path", "/tmp/x"), ("bogus", "1")])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ConnectorError::UnknownOption { ref option, .. } if option == "bogus"),
        "{e}"
    );
    let e = create(&[]).await.unwrap_err();
    assert!(
        matches!(e, ConnectorError::MissingOption { ref option, .. } if option == "path"),
        "{e}"
    );
    let e = create(&[("path", "/tmp/x"), ("compression", "zstd(40)")])
        .await
        .unwrap_err();
    assert!(
        matches!(e, ConnectorError::InvalidOption { ref option, .. } if option == "compression"),
        "{e}"
    );
    let e = create(&[("path", "/tmp/x"), ("partition_by", "tenant, nope")])
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, ConnectorError::Schema(_))
            && msg.contains("'nope'")
            && msg.contains("tenant, dt, id, body"),
        "{msg}"
    );
    let e = create(&[("path", "memory://x/y"), ("storage.region", "us-east-1")])
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Pipeline(_)), "{e}");
    create(&[
        ("path", "memory://x/y"),
        ("partition_by", "tenant"),
        ("rollover.interval", "1h"),
    ])
    .await
    .unwrap();
    let c = connector("parquet").unwrap();
    assert!(c.is_sink() && !c.is_source());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_sink() {
    use strata_pipeline::bad_data::{dead_letter_batch, dead_letter_schema, BadRecord};
    let dir = tempfile::tempdir().unwrap();
    let ctx = ConnectorContext {
        job_name: "j".into(),
        staging_dir: dir.path().join("staging"),
    };
    let table = dir.path().join("dlq");
    let sink = super::ParquetSink::for_dead_letters(
        &ctx,
        "docs.dlq",
        table.to_str().unwrap(),
        BTreeMap::new(),
    )
    .unwrap();
    assert_eq!(sink.schema(), dead_letter_schema());
    sink.recover().await.unwrap();
    let records = vec![BadRecord {
        split: "f.jsonl".into(),
        position: 3,
        location: "f.jsonl:4".into(),
        reason: "bad json".into(),
        raw: b"{x".to_vec(),
    }];
    let epoch = strata_pipeline::sink::EpochInfo {
        epoch: 1,
        file_stem: "dl".into(),
        started_micros: 0,
    };
    let mut w = sink.begin_epoch(&epoch).await.unwrap();
    w.write(dead_letter_batch("docs", &records, 1))
        .await
        .unwrap();
    let stats = w.finish().await.unwrap().publish().await.unwrap();
    assert_eq!(stats.rows, 1);
    let h = Harness::new(table.to_str().unwrap(), BTreeMap::new(), dir.path());
    assert_eq!(h.list().await, vec!["dl-00000.parquet"]);
    let (meta, batches) = h.read("dl-00000.parquet").await;
    assert!(matches!(
        meta.row_group(0).column(0).compression(),
        parquet::basic::Compression::ZSTD(_)
    ));
    assert_eq!(batches[0].schema(), dead_letter_schema());
}

#[test]
fn cross_device_publish_copies_through_a_hidden_temp_file() {
    use std::os::unix::fs::MetadataExt;
    let table = tempfile::tempdir().unwrap();
    // tmpfs staging vs. a disk-backed table: rename(2) fails with EXDEV.
    let staging = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let cross = std::fs::metadata(staging.path()).unwrap().dev()
        != std::fs::metadata(table.path()).unwrap().dev();
    let staged = staging.path().join("s-00000.parquet");
    std::fs::write(&staged, b"PAR1 data").unwrap();
    let dest = table.path().join("k=v").join("s-00000.parquet");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, b"old").unwrap();
    super::sink::publish_local(&staged, &dest).unwrap();
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"PAR1 data",
        "republish overwrites"
    );
    assert!(!staged.exists(), "staged file removed after publish");
    let names: Vec<_> = std::fs::read_dir(dest.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("s-00000.parquet")],
        "no temp file left (cross-device: {cross})"
    );
}

/// Encode throughput of the sink for 1 KB text rows (run in release:
/// `cargo test --release -p strata-connectors encode_throughput -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn encode_throughput_1kb_rows() {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    use std::time::Instant;

    let rows_total: usize = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let batch_rows = 8192;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tenant", DataType::Utf8, true),
        Field::new("body", DataType::Utf8, true),
    ]));
    // Natural-ish text: words drawn from a vocabulary, ~1 KB per row.
    let vocab: Vec<String> = (0..5000u64)
        .map(|i| {
            conformance::pseudo_text(i, 3 + (i % 9) as usize)
                .to_lowercase()
                .replace(' ', "x")
        })
        .collect();
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut batches = Vec::new();
    let mut input_bytes_per_cycle = 0usize;
    for b in 0..16 {
        let bodies: Vec<String> = (0..batch_rows)
            .map(|_| {
                let mut s = String::with_capacity(1100);
                while s.len() < 1000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    s.push_str(&vocab[(x % 5000) as usize]);
                    s.push(' ');
                }
                s
            })
            .collect();
        input_bytes_per_cycle += bodies.iter().map(|s| s.len() + 8 + 6).sum::<usize>();
        let ids: Vec<i64> = (0..batch_rows as i64)
            .map(|i| i + (b * batch_rows) as i64)
            .collect();
        let tenants: StringArray = (0..batch_rows)
            .map(|i| Some(if i % 2 == 0 { "tenant" } else { "other1" }))
            .collect();
        batches.push(
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)) as ArrayRef,
                    Arc::new(tenants),
                    Arc::new(StringArray::from(bodies)),
                ],
            )
            .unwrap(),
        );
    }
    let per_row = input_bytes_per_cycle as f64 / (16 * batch_rows) as f64;

    let dir = tempfile::tempdir().unwrap();
    let h = Harness::new(
        dir.path().join("table").to_str().unwrap(),
        BTreeMap::new(),
        &dir.path().join("staging"),
    );
    let sink = h.sink("bench", schema.clone(), &[]).await;
    let epoch = strata_pipeline::sink::EpochInfo {
        epoch: 1,
        file_stem: "bench".into(),
        started_micros: 0,
    };
    let start = Instant::now();
    let mut w = sink.begin_epoch(&epoch).await.unwrap();
    let mut written = 0;
    let mut i = 0;
    while written < rows_total {
        let b = &batches[i % batches.len()];
        let n = b.num_rows().min(rows_total - written);
        w.write(b.slice(0, n)).await.unwrap();
        written += n;
        i += 1;
    }
    let staged = w.finish().await.unwrap();
    let encoded = start.elapsed();
    let stats = staged.publish().await.unwrap();
    let total = start.elapsed();
    let mb = written as f64 * per_row / 1e6;
    println!(
        "encode_throughput: {written} rows x {per_row:.0} B = {mb:.0} MB in {:.2}s -> {:.0} MB/s encoded (staged), {:.0} MB/s incl. publish; {} files, {:.0} MB on disk",
        encoded.as_secs_f64(),
        mb / encoded.as_secs_f64(),
        mb / total.as_secs_f64(),
        stats.files,
        stats.bytes as f64 / 1e6
    );

    // Baseline: parquet's ArrowWriter alone, same properties, one thread.
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(
            parquet::basic::ZstdLevel::try_new(3).unwrap(),
        ))
        .set_max_row_group_row_count(Some(122_880))
        .build();
    let file = std::fs::File::create(dir.path().join("baseline.parquet")).unwrap();
    let start = Instant::now();
    let mut raw = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    let mut written = 0;
    let mut i = 0;
    while written < rows_total {
        let b = &batches[i % batches.len()];
        let n = b.num_rows().min(rows_total - written);
        raw.write(&b.slice(0, n)).unwrap();
        written += n;
        i += 1;
    }
    raw.close().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "baseline ArrowWriter: {:.2}s -> {:.0} MB/s",
        secs,
        mb / secs
    );
}
