//! Criterion bench of the whole engine in-process: a JSON Lines file through
//! `jobs/passthrough.sql` into ZSTD Parquet (read, decode, plan execution, encode,
//! staged publish and checkpoint). `benches/e2e.sh` runs the same job through the
//! binary at 1M rows against DuckDB.

use std::collections::BTreeMap;
use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ROWS: usize = 50_000;

fn corpus(path: &std::path::Path) -> u64 {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create corpus"));
    let words = [
        "pipeline",
        "token",
        "budget",
        "embedding",
        "tenant",
        "latency",
        "vector",
        "chunk",
        "summary",
        "invoice",
        "región",
        "東京",
        "naïve",
    ];
    for i in 0..ROWS {
        let mut body = String::with_capacity(900);
        let mut k = i;
        while body.len() < 850 {
            k = k
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            body.push_str(words[(k >> 33) as usize % words.len()]);
            body.push(' ');
        }
        writeln!(
            f,
            r#"{{"doc_id":"doc-{i:07}","tenant":"t{}","title":"Title {i}","body":"{body}","ts":"2026-03-01T12:{:02}:00Z","lang":"en"}}"#,
            i % 5,
            i % 60
        )
        .expect("write corpus");
    }
    f.flush().expect("flush corpus");
    std::fs::metadata(path).expect("corpus size").len()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.jsonl");
    let bytes = corpus(&input);
    let job = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/jobs/passthrough.sql"))
        .expect("read job");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("file_to_parquet");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    let mut n = 0;
    g.bench_function("passthrough_50k_rows_1KB", |b| {
        b.iter(|| {
            n += 1;
            let out = dir.path().join(format!("out-{n}"));
            let mut vars = BTreeMap::new();
            vars.insert("INPUT".to_string(), input.display().to_string());
            vars.insert("OUT".to_string(), out.display().to_string());
            let opts = strata_sql::PlanOptions {
                vars,
                checkpoint: Some(out.join("ckpt").display().to_string()),
                ..Default::default()
            };
            rt.block_on(async {
                let planned = strata_sql::plan_text("passthrough.sql", &job, "passthrough", &opts)
                    .await
                    .expect("plan");
                let summary =
                    strata_pipeline::run(planned.job, strata_pipeline::Shutdown::default())
                        .await
                        .expect("run");
                assert_eq!(
                    summary.sinks.values().map(|s| s.stats.rows).sum::<u64>(),
                    ROWS as u64
                );
            });
            std::fs::remove_dir_all(&out).ok();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
