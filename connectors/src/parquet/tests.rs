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
    let h = Harness::new(table.to_str().unwrap(), BTreeMap::new(), &dir.path().join("staging"));
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
    let sink = h.sink("big", conformance::test_schema(), &[("compression", "none")]).await;
    let epoch = strata_pipeline::sink::EpochInfo { epoch: 1, file_stem: "big".into(), started_micros: 0 };
    let mut w = sink.begin_epoch(&epoch).await.unwrap();
    for start in (0..20_000).step_by(1000) {
        w.write(conformance::test_rows(start, 1000, &[Some("a")], 1024)).await.unwrap();
    }
    let staged = w.finish().await.unwrap();
    let stats = staged.publish().await.unwrap();
    assert!(stats.bytes > super::sink::UPLOAD_PART_BYTES as u64, "{stats:?}");
    assert_eq!(h.ids().await, (0..20_000).collect::<Vec<_>>());
}

fn decl(pairs: &[(&str, &str)]) -> TableDecl {
    let pairs = [("connector", "parquet")].into_iter().chain(pairs.iter().copied());
    TableDecl { name: "out".into(), schema: None, options: TableOptions::from_pairs(pairs) }
}

async fn create(pairs: &[(&str, &str)]) -> Result<(), ConnectorError> {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ConnectorContext { job_name: "j".into(), staging_dir: dir.path().to_path_buf() };
    let c = connector("parquet").unwrap();
    c.create_sink(&decl(pairs), conformance::test_schema(), &ctx).await.map(|_| ())
}

#[tokio::test]
async fn option_errors() {
    let e = create(&[("path", "/tmp/x"), ("bogus", "1")]).await.unwrap_err();
    assert!(matches!(e, ConnectorError::UnknownOption { ref option, .. } if option == "bogus"), "{e}");
    let e = create(&[]).await.unwrap_err();
    assert!(matches!(e, ConnectorError::MissingOption { ref option, .. } if option == "path"), "{e}");
    let e = create(&[("path", "/tmp/x"), ("compression", "zstd(40)")]).await.unwrap_err();
    assert!(matches!(e, ConnectorError::InvalidOption { ref option, .. } if option == "compression"), "{e}");
    let e = create(&[("path", "/tmp/x"), ("partition_by", "tenant, nope")]).await.unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConnectorError::Schema(_)) && msg.contains("'nope'") && msg.contains("tenant, dt, id, body"), "{msg}");
    let e = create(&[("path", "memory://x/y"), ("storage.region", "us-east-1")]).await.unwrap_err();
    assert!(matches!(e, ConnectorError::Pipeline(_)), "{e}");
    create(&[("path", "memory://x/y"), ("partition_by", "tenant"), ("rollover.interval", "1h")]).await.unwrap();
    let c = connector("parquet").unwrap();
    assert!(c.is_sink() && !c.is_source());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_sink() {
    use strata_pipeline::bad_data::{dead_letter_batch, dead_letter_schema, BadRecord};
    let dir = tempfile::tempdir().unwrap();
    let ctx = ConnectorContext { job_name: "j".into(), staging_dir: dir.path().join("staging") };
    let table = dir.path().join("dlq");
    let sink = super::ParquetSink::for_dead_letters(&ctx, "docs.dlq", table.to_str().unwrap(), BTreeMap::new()).unwrap();
    assert_eq!(sink.schema(), dead_letter_schema());
    sink.recover().await.unwrap();
    let records = vec![BadRecord { split: "f.jsonl".into(), position: 3, location: "f.jsonl:4".into(), reason: "bad json".into(), raw: b"{x".to_vec() }];
    let epoch = strata_pipeline::sink::EpochInfo { epoch: 1, file_stem: "dl".into(), started_micros: 0 };
    let mut w = sink.begin_epoch(&epoch).await.unwrap();
    w.write(dead_letter_batch("docs", &records, 1)).await.unwrap();
    let stats = w.finish().await.unwrap().publish().await.unwrap();
    assert_eq!(stats.rows, 1);
    let h = Harness::new(table.to_str().unwrap(), BTreeMap::new(), dir.path());
    assert_eq!(h.list().await, vec!["dl-00000.parquet"]);
    let (meta, batches) = h.read("dl-00000.parquet").await;
    assert!(matches!(meta.row_group(0).column(0).compression(), parquet::basic::Compression::ZSTD(_)));
    assert_eq!(batches[0].schema(), dead_letter_schema());
}
