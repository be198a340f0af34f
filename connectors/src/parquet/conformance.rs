//! The parquet sink's conformance suite: exactly-once staging and publishing,
//! deterministic names, partition layout, rollover, recovery, removal and
//! option plumbing, written once and run against any location.
//!
//! Test support: every check panics on failure. `cargo test` runs the suite
//! against a temporary local folder and `memory://`; integration tests run the
//! same [`run_all`] against an S3 server (`s3://bucket/prefix` plus
//! `'storage.*'` options). Each check works in its own sub-folder of the
//! location, so the location must start empty.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, Date32Array, Decimal128Array, FixedSizeListArray, Float32Array, Int32Array,
    Int64Array, ListArray, MapArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaData;

use strata_pipeline::sink::{EpochInfo, Sink};
use strata_pipeline::storage::{self, StorageLocation};

use crate::{connector, ConnectorContext, TableDecl, TableOptions};

/// Where a suite run writes: a table location and a local staging folder.
#[derive(Clone, Debug)]
pub struct Harness {
    /// Table location (path or URL); must start empty.
    pub location: String,
    /// `'storage.*'` options for the location.
    pub storage: BTreeMap<String, String>,
    /// The job's staging folder (`ConnectorContext::staging_dir`).
    pub staging_dir: PathBuf,
}

impl Harness {
    /// A harness for `location`, staging under `staging_dir`.
    pub fn new(location: &str, storage: BTreeMap<String, String>, staging_dir: &Path) -> Self {
        Self {
            location: location.trim_end_matches('/').to_string(),
            storage,
            staging_dir: staging_dir.to_path_buf(),
        }
    }

    /// The same store, one folder down.
    pub fn sub(&self, name: &str) -> Harness {
        Harness {
            location: format!("{}/{name}", self.location),
            storage: self.storage.clone(),
            staging_dir: self.staging_dir.join(name),
        }
    }

    /// The context sinks are built with.
    pub fn ctx(&self) -> ConnectorContext {
        ConnectorContext {
            job_name: "conformance".into(),
            staging_dir: self.staging_dir.clone(),
        }
    }

    /// Build a sink through the connector registry, as a job would.
    pub async fn sink(
        &self,
        name: &str,
        schema: SchemaRef,
        options: &[(&str, &str)],
    ) -> Arc<dyn Sink> {
        let decl = self.decl(name, options);
        let c = connector("parquet").expect("parquet connector registered");
        let sink = c
            .create_sink(&decl, schema, &self.ctx())
            .await
            .expect("create parquet sink");
        sink.recover().await.expect("recover");
        sink
    }

    /// The declaration of a parquet table at this location.
    pub fn decl(&self, name: &str, options: &[(&str, &str)]) -> TableDecl {
        let mut pairs: Vec<(&str, &str)> = vec![("connector", "parquet"), ("path", &self.location)];
        pairs.extend(self.storage.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        pairs.extend_from_slice(options);
        TableDecl {
            name: name.into(),
            schema: None,
            options: TableOptions::from_pairs(pairs),
        }
    }

    fn resolved(&self) -> StorageLocation {
        storage::resolve(&self.location, &self.storage).expect("resolve location")
    }

    /// Every object under the location (relative names, sorted), hidden files included.
    pub async fn list(&self) -> Vec<String> {
        let loc = self.resolved();
        let mut out = Vec::new();
        match &loc.local_path {
            Some(root) => walk(root, root, &mut out),
            None => {
                let metas: Vec<_> = loc
                    .store
                    .list(Some(&loc.prefix))
                    .try_collect()
                    .await
                    .expect("list objects");
                for m in metas {
                    let rel = m
                        .location
                        .as_ref()
                        .strip_prefix(loc.prefix.as_ref())
                        .unwrap_or(m.location.as_ref());
                    out.push(rel.trim_start_matches('/').to_string());
                }
            }
        }
        out.sort();
        out
    }

    /// Read one object: its metadata and rows.
    pub async fn read(&self, object: &str) -> (Arc<ParquetMetaData>, Vec<RecordBatch>) {
        let loc = self.resolved();
        let data = match &loc.local_path {
            Some(root) => Bytes::from(std::fs::read(root.join(object)).expect("read local object")),
            None => {
                let prefix = loc.prefix.as_ref();
                let path = object_store::path::Path::parse(if prefix.is_empty() {
                    object.to_string()
                } else {
                    format!("{prefix}/{object}")
                })
                .expect("object path");
                loc.store
                    .get(&path)
                    .await
                    .expect("get object")
                    .bytes()
                    .await
                    .expect("object bytes")
            }
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(data).expect("valid parquet");
        let meta = builder.metadata().clone();
        let batches = builder
            .build()
            .expect("reader")
            .collect::<Result<Vec<_>, _>>()
            .expect("read batches");
        (meta, batches)
    }

    /// Every `id` value in every object, sorted.
    pub async fn ids(&self) -> Vec<i64> {
        let mut ids = Vec::new();
        for o in self.list().await {
            for b in self.read(&o).await.1 {
                let col = b.column_by_name("id").expect("id column");
                let col = col
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("id is Int64");
                ids.extend(col.values().iter().copied());
            }
        }
        ids.sort_unstable();
        ids
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn epoch(n: u64, stem: &str) -> EpochInfo {
    EpochInfo {
        epoch: n,
        file_stem: stem.into(),
        started_micros: 0,
    }
}

/// `tenant Utf8?, dt Date32?, id Int64, body Utf8`.
pub fn test_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("tenant", DataType::Utf8, true),
        Field::new("dt", DataType::Date32, true),
        Field::new("id", DataType::Int64, false),
        Field::new("body", DataType::Utf8, true),
    ]))
}

/// Rows `start..start+n` of [`test_schema`]; `tenant` cycles through `tenants`,
/// `body` is `body_len` bytes of poorly compressible text.
pub fn test_rows(start: i64, n: usize, tenants: &[Option<&str>], body_len: usize) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let tenant: StringArray = ids
        .iter()
        .map(|i| tenants[(*i as usize) % tenants.len()])
        .collect();
    let dt = Date32Array::from(
        ids.iter()
            .map(|i| Some(20454 + (*i % 2) as i32))
            .collect::<Vec<_>>(),
    );
    let body: StringArray = ids
        .iter()
        .map(|i| Some(pseudo_text(*i as u64, body_len)))
        .collect();
    RecordBatch::try_new(
        test_schema(),
        vec![
            Arc::new(tenant),
            Arc::new(dt),
            Arc::new(Int64Array::from(ids)),
            Arc::new(body),
        ],
    )
    .expect("test rows match the test schema")
}

/// Deterministic, poorly compressible ASCII text.
pub fn pseudo_text(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b' ' + (x % 94) as u8) as char
        })
        .collect()
}

/// Staged files are invisible until publish, visible after; staging is cleaned.
pub async fn staged_invisible_until_publish(h: &Harness) {
    let sink = h.sink("t", test_schema(), &[]).await;
    let mut w = sink
        .begin_epoch(&epoch(1, "job-t-p0-0-9"))
        .await
        .expect("begin");
    w.write(test_rows(0, 10, &[Some("a")], 16))
        .await
        .expect("write");
    let staged = w.finish().await.expect("finish");
    assert_eq!(
        staged.objects(),
        vec!["job-t-p0-0-9-00000.parquet".to_string()]
    );
    assert!(
        h.list().await.is_empty(),
        "nothing may be visible before publish: {:?}",
        h.list().await
    );
    let stats = staged.publish().await.expect("publish");
    assert_eq!((stats.rows, stats.files), (10, 1));
    assert!(stats.bytes > 0);
    assert_eq!(
        h.list().await,
        vec!["job-t-p0-0-9-00000.parquet".to_string()]
    );
    assert_eq!(h.ids().await, (0..10).collect::<Vec<_>>());
    let leftovers: Vec<String> = {
        let mut v = Vec::new();
        walk(&h.staging_dir, &h.staging_dir, &mut v);
        v
    };
    assert!(leftovers.is_empty(), "staging not cleaned: {leftovers:?}");
}

/// Same stem, same objects; republishing overwrites without duplicates.
pub async fn deterministic_names(h: &Harness) {
    let sink = h.sink("t", test_schema(), &[("rollover.rows", "4")]).await;
    let mut names = Vec::new();
    for attempt in 0..2 {
        let mut w = sink.begin_epoch(&epoch(7, "stem-a")).await.expect("begin");
        // Second attempt: same ranges, same rows.
        w.write(test_rows(0, 10, &[Some("a")], 8))
            .await
            .expect("write");
        let staged = w.finish().await.expect("finish");
        names.push(staged.objects());
        staged.publish().await.expect("publish");
        assert_eq!(h.list().await, names[attempt], "attempt {attempt}");
    }
    assert_eq!(names[0], names[1]);
    assert_eq!(
        names[0],
        vec![
            "stem-a-00000.parquet",
            "stem-a-00001.parquet",
            "stem-a-00002.parquet"
        ]
    );
    assert_eq!(
        h.ids().await,
        (0..10).collect::<Vec<_>>(),
        "rows exactly once after republish"
    );
    // A different epoch gets different names.
    let mut w = sink.begin_epoch(&epoch(8, "stem-b")).await.expect("begin");
    w.write(test_rows(10, 2, &[Some("a")], 8))
        .await
        .expect("write");
    w.finish()
        .await
        .expect("finish")
        .publish()
        .await
        .expect("publish");
    assert_eq!(h.list().await.len(), 4);
    assert_eq!(h.ids().await, (0..12).collect::<Vec<_>>());
}

/// Hive folders; partition columns absent from the files; NULL and special characters.
pub async fn partition_layout(h: &Harness) {
    let sink = h
        .sink("t", test_schema(), &[("partition_by", "tenant, dt")])
        .await;
    let mut w = sink.begin_epoch(&epoch(1, "s")).await.expect("begin");
    w.write(test_rows(
        0,
        8,
        &[Some("a"), None, Some("x/y=z%"), Some("")],
        8,
    ))
    .await
    .expect("write");
    w.write(test_rows(
        8,
        8,
        &[Some("a"), None, Some("x/y=z%"), Some("")],
        8,
    ))
    .await
    .expect("write");
    let staged = w.finish().await.expect("finish");
    // NULL and '' both land in the default partition.
    let expected: Vec<String> = vec![
        "tenant=__HIVE_DEFAULT_PARTITION__/dt=2026-01-02/s-00000.parquet".into(),
        "tenant=a/dt=2026-01-01/s-00000.parquet".into(),
        "tenant=x%2Fy%3Dz%25/dt=2026-01-01/s-00000.parquet".into(),
    ];
    assert_eq!(staged.objects(), expected);
    assert!(h.list().await.is_empty(), "nothing visible before publish");
    staged.publish().await.expect("publish");
    assert_eq!(h.list().await, expected);
    for (o, want) in expected.iter().zip([8, 4, 4]) {
        let (meta, batches) = h.read(o).await;
        let cols: Vec<String> = meta
            .file_metadata()
            .schema_descr()
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        assert_eq!(
            cols,
            vec!["id", "body"],
            "{o}: partition columns must not be in the file"
        );
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, want, "{o}");
    }
    assert_eq!(h.ids().await, (0..16).collect::<Vec<_>>());
}

/// Rollover by rows and by bytes: several files, every row exactly once.
pub async fn rollover(h: &Harness) {
    let rows = h.sub("rows");
    let sink = rows
        .sink("t", test_schema(), &[("rollover.rows", "100")])
        .await;
    let mut w = sink.begin_epoch(&epoch(1, "r")).await.expect("begin");
    for start in (0..1050).step_by(64) {
        let n = 64.min(1050 - start) as usize;
        w.write(test_rows(start, n, &[Some("a")], 8))
            .await
            .expect("write");
    }
    let staged = w.finish().await.expect("finish");
    assert_eq!(staged.objects().len(), 11);
    staged.publish().await.expect("publish");
    for o in rows.list().await.iter().take(10) {
        let n: usize = rows.read(o).await.1.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, 100, "{o}");
    }
    assert_eq!(rows.ids().await, (0..1050).collect::<Vec<_>>());

    let bytes = h.sub("bytes");
    let sink = bytes
        .sink(
            "t",
            test_schema(),
            &[
                ("rollover.bytes", "64KB"),
                ("compression", "none"),
                ("parquet.row_group_size", "16"),
            ],
        )
        .await;
    let mut w = sink.begin_epoch(&epoch(1, "b")).await.expect("begin");
    for start in (0..400).step_by(16) {
        w.write(test_rows(start, 16, &[Some("a")], 1024))
            .await
            .expect("write");
    }
    let staged = w.finish().await.expect("finish");
    let n = staged.objects().len();
    assert!(
        (4..=12).contains(&n),
        "~400 KB in 64 KB files, got {n} files"
    );
    staged.publish().await.expect("publish");
    assert_eq!(bytes.ids().await, (0..400).collect::<Vec<_>>());

    let age = h.sub("interval");
    let sink = age
        .sink("t", test_schema(), &[("rollover.interval", "20ms")])
        .await;
    let mut w = sink.begin_epoch(&epoch(1, "i")).await.expect("begin");
    for start in 0..3 {
        w.write(test_rows(start, 1, &[Some("a")], 8))
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let staged = w.finish().await.expect("finish");
    assert_eq!(staged.objects().len(), 3, "{:?}", staged.objects());
    staged.publish().await.expect("publish");
    assert_eq!(age.ids().await, vec![0, 1, 2]);
}

/// recover() removes stale staging; an empty epoch publishes nothing.
pub async fn recover_and_empty(h: &Harness) {
    let stale = h.staging_dir.join("t").join("old-attempt");
    std::fs::create_dir_all(&stale).expect("create stale staging");
    std::fs::write(stale.join("x.parquet"), b"junk").expect("write stale file");
    let sink = h.sink("t", test_schema(), &[]).await; // calls recover()
    assert!(!stale.exists(), "recover() must wipe stale staging");
    let w = sink.begin_epoch(&epoch(1, "empty")).await.expect("begin");
    let staged = w.finish().await.expect("finish");
    assert!(staged.objects().is_empty());
    let stats = staged.publish().await.expect("publish");
    assert_eq!(stats.files, 0);
    assert!(h.list().await.is_empty());
}

/// remove() deletes published objects and tolerates missing ones.
pub async fn remove(h: &Harness) {
    let sink = h.sink("t", test_schema(), &[("rollover.rows", "5")]).await;
    let mut w = sink.begin_epoch(&epoch(1, "rm")).await.expect("begin");
    w.write(test_rows(0, 10, &[Some("a")], 8))
        .await
        .expect("write");
    let staged = w.finish().await.expect("finish");
    let objects = staged.objects();
    staged.publish().await.expect("publish");
    assert_eq!(h.list().await, objects);
    sink.remove(&objects[1..]).await.expect("remove");
    assert_eq!(h.list().await, objects[..1].to_vec());
    sink.remove(&objects[1..])
        .await
        .expect("removing again is fine");
    assert!(sink
        .remove(&["../escape.parquet".to_string()])
        .await
        .is_err());
}

/// compression and row group size reach the file metadata.
pub async fn file_options(h: &Harness) {
    let cases = [
        ("default", None, Compression::ZSTD(Default::default())),
        ("snappy", Some("snappy"), Compression::SNAPPY),
        ("gzip", Some("gzip"), Compression::GZIP(Default::default())),
    ];
    for (dir, option, want) in cases {
        let sub = h.sub(dir);
        let mut opts = vec![("parquet.row_group_size", "100")];
        if let Some(c) = option {
            opts.push(("compression", c));
        }
        let sink = sub.sink("t", test_schema(), &opts).await;
        let mut w = sink.begin_epoch(&epoch(1, "c")).await.expect("begin");
        w.write(test_rows(0, 1000, &[Some("a")], 32))
            .await
            .expect("write");
        w.finish()
            .await
            .expect("finish")
            .publish()
            .await
            .expect("publish");
        let (meta, _) = sub.read("c-00000.parquet").await;
        assert_eq!(meta.num_row_groups(), 10, "{dir}: row groups of 100 rows");
        let codec = meta.row_group(0).column(0).compression();
        assert_eq!(
            std::mem::discriminant(&codec),
            std::mem::discriminant(&want),
            "{dir}: codec {codec:?}"
        );
    }
}

/// Vectors, decimals, UTC timestamps, structs, lists and maps round-trip.
pub async fn types_round_trip(h: &Harness) {
    let vector = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, true)),
        3,
        Arc::new(Float32Array::from(vec![0.5, 1.0, -2.0, 3.25, 4.0, 5.5])),
        None,
    )
    .expect("vector");
    let cost = Decimal128Array::from(vec![Some(12_345_678_901i128), None])
        .with_precision_and_scale(38, 10)
        .expect("decimal");
    let ts = TimestampMicrosecondArray::from(vec![Some(1_767_225_600_000_000), Some(0)])
        .with_timezone("UTC");
    let st = StructArray::from(vec![
        (
            Arc::new(Field::new("a", DataType::Int32, true)),
            Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("b", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef,
        ),
    ]);
    let list = ListArray::new(
        Arc::new(Field::new("item", DataType::Int64, true)),
        OffsetBuffer::new(vec![0, 2, 3].into()),
        Arc::new(Int64Array::from(vec![1, 2, 3])),
        None,
    );
    let entries = StructArray::from(vec![
        (
            Arc::new(Field::new("keys", DataType::Utf8, false)),
            Arc::new(StringArray::from(vec!["k1", "k2", "k3"])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("values", DataType::Int32, true)),
            Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef,
        ),
    ]);
    let map = MapArray::new(
        Arc::new(Field::new("entries", entries.data_type().clone(), false)),
        OffsetBuffer::new(vec![0, 1, 3].into()),
        entries,
        None,
        false,
    );
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![1, 2])),
        Arc::new(vector),
        Arc::new(cost),
        Arc::new(ts),
        Arc::new(st),
        Arc::new(list),
        Arc::new(map),
    ];
    let fields: Fields = ["id", "vector", "cost_usd", "ts", "meta", "tags", "attrs"]
        .iter()
        .zip(&columns)
        .map(|(n, c)| Field::new(*n, c.data_type().clone(), *n != "id"))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    assert_eq!(
        schema.field(3).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
    let sink = h.sink("t", schema.clone(), &[]).await;
    let mut w = sink.begin_epoch(&epoch(1, "ty")).await.expect("begin");
    w.write(batch.clone()).await.expect("write");
    w.finish()
        .await
        .expect("finish")
        .publish()
        .await
        .expect("publish");
    let (_, batches) = h.read("ty-00000.parquet").await;
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].schema(), schema, "schema round-trips");
    assert_eq!(batches[0], batch, "values round-trip");
}

/// Writes are rejected when a batch does not fit the sink's schema, and the
/// epoch stays failed.
pub async fn rejects_foreign_batches(h: &Harness) {
    let sink = h.sink("t", test_schema(), &[]).await;
    let mut w = sink.begin_epoch(&epoch(1, "bad")).await.expect("begin");
    let other =
        RecordBatch::try_from_iter([("x", Arc::new(Int64Array::from(vec![1])) as ArrayRef)])
            .expect("batch");
    assert!(w.write(other).await.is_err());
    assert!(w.write(test_rows(0, 1, &[Some("a")], 4)).await.is_err());
    assert!(w.finish().await.is_err());
    assert!(h.list().await.is_empty());
}

/// Every check, each in its own sub-folder of `h`.
pub async fn run_all(h: &Harness) {
    staged_invisible_until_publish(&h.sub("visibility")).await;
    deterministic_names(&h.sub("names")).await;
    partition_layout(&h.sub("partitions")).await;
    rollover(&h.sub("rollover")).await;
    recover_and_empty(&h.sub("recover")).await;
    remove(&h.sub("remove")).await;
    file_options(&h.sub("file_options")).await;
    types_round_trip(&h.sub("types")).await;
    rejects_foreign_batches(&h.sub("foreign")).await;
    let names: BTreeSet<String> = h.list().await.into_iter().collect();
    for n in &names {
        assert!(
            n.ends_with(".parquet") && !n.split('/').any(|p| p.starts_with('.')),
            "only committed *.parquet files may be visible: {n}"
        );
    }
}
