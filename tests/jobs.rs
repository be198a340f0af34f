//! Every `jobs/*.sql` is a test case: it runs on its sample data and the
//! canonical dump of each sink's output (rows sorted, one JSON object per
//! line, floats rounded, Hive partition values included) must equal the
//! golden file `jobs/expected/<job>/<sink>.jsonl`. `strata explain` must
//! accept every job too.
//!
//! Each job runs in a fresh temporary working directory holding a link to the
//! repository's `jobs/` folder, so job defaults such as
//! `${INPUT:-jobs/data/docs.jsonl}` resolve as they do from the repository
//! root; `--var OUT=<tmp>/out` sends every output to the temporary directory.
//! A variable the job uses without a default (other than `OUT`) fails the case:
//! example jobs must run as they are. Jobs that call a chat model through
//! `${LLM_ENDPOINT}`, or take their model's provider options from `${LLM}`, get the fake
//! OpenAI-compatible endpoint of `operators/tests/common/fake_endpoints.rs` (deterministic
//! answers).
//!
//! Regenerate the golden files after an intended change with
//!
//! ```text
//! STRATA_UPDATE_GOLDEN=1 cargo test -p strata --test jobs
//! ```
//!
//! and review the diff. On a mismatch the actual dump is kept under
//! `target/tmp/jobs-actual/<job>/<sink>.jsonl`.

mod common;
#[path = "../operators/tests/common/fake_endpoints.rs"]
mod fake_endpoints;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use libtest_mimic::{Arguments, Failed, Trial};

use common::*;

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    for job in job_files() {
        let name = job
            .file_stem()
            .expect("job file name")
            .to_string_lossy()
            .to_string();
        let j = job.clone();
        trials.push(Trial::test(
            format!("run_matches_golden::{name}"),
            move || run_matches_golden(&j),
        ));
        trials.push(Trial::test(format!("explain::{name}"), move || {
            explain(&job)
        }));
    }
    trials.push(Trial::test(
        "every_golden_folder_has_a_job",
        golden_folders_have_jobs,
    ));
    libtest_mimic::run(&args, trials).exit();
}

/// `jobs/*.sql`, sorted.
fn job_files() -> Vec<PathBuf> {
    let mut jobs: Vec<PathBuf> = std::fs::read_dir(repo().join("jobs"))
        .expect("read jobs/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    jobs.sort();
    assert!(!jobs.is_empty(), "no jobs/*.sql found");
    jobs
}

fn expected_dir(job: &str) -> PathBuf {
    repo().join("jobs").join("expected").join(job)
}

fn updating() -> bool {
    std::env::var("STRATA_UPDATE_GOLDEN").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `${NAME}` / `${NAME:-default}` references of a job text: (name, has default).
fn job_vars(text: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else { break };
        let body = &after[..end];
        let (name, has_default) = match body.split_once(":-") {
            Some((n, _)) => (n.trim(), true),
            None => (body.trim(), false),
        };
        out.push((name.to_string(), has_default));
        rest = &after[end + 1..];
    }
    out
}

/// A working directory like the repository root: `jobs/` is a link to the
/// repository's, everything written lands in the temporary directory.
fn workdir() -> tempfile::TempDir {
    let tmp = tempdir();
    std::os::unix::fs::symlink(repo().join("jobs"), tmp.path().join("jobs"))
        .expect("link jobs/ into the working directory");
    tmp
}

/// The fake OpenAI-compatible endpoint that jobs using `${LLM_ENDPOINT}` are pointed at
/// (started on first use, on its own runtime, for the whole test binary).
static FAKE_LLM: LazyLock<String> = LazyLock::new(|| {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the fake endpoint");
        rt.block_on(async move {
            let fake = fake_endpoints::FakeEndpoint::start().await;
            tx.send(fake.openai_url()).expect("hand over the URL");
            std::future::pending::<()>().await;
        });
    });
    rx.recv().expect("the fake endpoint starts")
});

/// `--var` arguments for `job`: `OUT` always, `LLM_ENDPOINT` (the fake endpoint) for jobs
/// that call a chat model, nothing else (defaults apply).
fn var_args(job: &Path, out: &Path) -> Result<Vec<String>, Failed> {
    let text = std::fs::read_to_string(job).map_err(|e| format!("read {}: {e}", job.display()))?;
    for (name, has_default) in job_vars(&text) {
        if name != "OUT" && !has_default && std::env::var_os(&name).is_none() {
            return Err(format!(
                "{} uses ${{{name}}} without a default: example jobs must run as they are, give it one (${{{name}:-...}})",
                job.display()
            )
            .into());
        }
    }
    let mut args = vec!["--var".into(), format!("OUT={}", s(out))];
    if job_vars(&text)
        .iter()
        .any(|(name, _)| name == "LLM_ENDPOINT")
    {
        args.extend(["--var".into(), format!("LLM_ENDPOINT={}", *FAKE_LLM)]);
    }
    // Jobs whose chat model takes its provider options from `${LLM}` (local by default) run
    // against the fake endpoint too: the golden files hold its deterministic answers
    // (tests/ai.rs runs the local model end to end).
    if job_vars(&text).iter().any(|(name, _)| name == "LLM") {
        args.extend([
            "--var".into(),
            format!(
                "LLM=provider = 'openai', endpoint = '{}', model = 'SmolLM2-135M-Instruct', \
                 'limits.requests_per_minute' = '3000', 'price.input_per_1m' = '0.15', \
                 'price.output_per_1m' = '0.60'",
                *FAKE_LLM
            ),
        ]);
    }
    Ok(args)
}

fn rel_job(job: &Path) -> String {
    format!(
        "jobs/{}",
        job.file_name().expect("file name").to_string_lossy()
    )
}

fn explain(job: &Path) -> Result<(), Failed> {
    let tmp = workdir();
    let out = tmp.path().join("out");
    let mut args = vec!["explain".to_string(), rel_job(job)];
    args.extend(var_args(job, &out)?);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = strata(tmp.path(), &argv);
    if o.code != Some(0) {
        return Err(format!(
            "strata explain {} exited {:?}\n--- stdout\n{}\n--- stderr\n{}",
            rel_job(job),
            o.status,
            o.stdout,
            o.stderr
        )
        .into());
    }
    for needed in ["job:", "sources:", "sinks:", "plan for INSERT INTO"] {
        if !o.stdout.contains(needed) {
            return Err(format!(
                "strata explain {} printed no '{needed}':\n{}",
                rel_job(job),
                o.stdout
            )
            .into());
        }
    }
    if out.exists() {
        return Err(format!(
            "strata explain {} wrote outputs under {}: {:?}",
            rel_job(job),
            out.display(),
            list_tree(&out)
        )
        .into());
    }
    Ok(())
}

fn run_matches_golden(job: &Path) -> Result<(), Failed> {
    let name = job
        .file_stem()
        .expect("job name")
        .to_string_lossy()
        .to_string();
    let tmp = workdir();
    let out = tmp.path().join("out");
    let mut args = vec!["run".to_string(), rel_job(job)];
    args.extend(var_args(job, &out)?);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = strata(tmp.path(), &argv);
    let summary = o.summary(&format!("strata run {}", rel_job(job)));
    if summary.sinks.is_empty() {
        return Err(format!("the run of {} reports no sink:\n{}", rel_job(job), o.stdout).into());
    }
    for (src, c) in &summary.sources {
        if c.records != c.rows + c.dead_lettered + c.dropped {
            return Err(format!(
                "source {src}: records {} != rows {} + dead-lettered {} + dropped {}",
                c.records, c.rows, c.dead_lettered, c.dropped
            )
            .into());
        }
    }

    let expected = expected_dir(&name);
    let mut failures = Vec::new();
    for (sink, figures) in &summary.sinks {
        let dir = local_path_of(&figures.location);
        if !dir.starts_with(tmp.path()) {
            failures.push(format!(
                "sink {sink} wrote to {} instead of under OUT={}",
                dir.display(),
                out.display()
            ));
            continue;
        }
        let files = if dir.exists() {
            read_table(&dir)
        } else {
            Vec::new()
        };
        if dir.exists() {
            assert_only_parquet(&dir);
        }
        let rows: Vec<Row> = files.iter().flat_map(|f| f.rows()).collect();
        if rows.len() as u64 != figures.rows || files.len() as u64 != figures.files {
            failures.push(format!(
                "sink {sink}: the summary says {} rows in {} file(s), the folder holds {} rows in {} file(s)",
                figures.rows,
                figures.files,
                rows.len(),
                files.len()
            ));
        }
        let dump = canonical_dump(&rows);
        let golden = expected.join(format!("{sink}.jsonl"));
        if updating() {
            std::fs::create_dir_all(&expected)
                .map_err(|e| format!("create {}: {e}", expected.display()))?;
            std::fs::write(&golden, &dump)
                .map_err(|e| format!("write {}: {e}", golden.display()))?;
            continue;
        }
        let want = match std::fs::read_to_string(&golden) {
            Ok(w) => w,
            Err(e) => {
                failures.push(format!(
                    "golden file {} is missing ({e}): create it with STRATA_UPDATE_GOLDEN=1 cargo test -p strata --test jobs, then review it",
                    golden.display()
                ));
                continue;
            }
        };
        if want != dump {
            let kept = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join("jobs-actual")
                .join(&name)
                .join(format!("{sink}.jsonl"));
            let _ = std::fs::create_dir_all(kept.parent().expect("parent"));
            let _ = std::fs::write(&kept, &dump);
            failures.push(format!(
                "sink {sink}: output differs from {}\n{}\nactual output kept at {}; if the change is intended, regenerate with \
                 STRATA_UPDATE_GOLDEN=1 cargo test -p strata --test jobs",
                golden.display(),
                first_difference(&want, &dump),
                kept.display()
            ));
        }
    }

    // Golden files of sinks the job no longer has.
    let sinks: BTreeSet<String> = summary.sinks.keys().map(|s| format!("{s}.jsonl")).collect();
    if let Ok(rd) = std::fs::read_dir(&expected) {
        for e in rd.flatten() {
            let file = e.file_name().to_string_lossy().to_string();
            if file.ends_with(".jsonl") && !sinks.contains(&file) {
                if updating() {
                    let _ = std::fs::remove_file(e.path());
                } else {
                    failures.push(format!("golden file {} belongs to no sink of the job (sinks: {sinks:?}); remove it or regenerate", e.path().display()));
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n\n").into())
    }
}

/// A short description of where two dumps first differ.
fn first_difference(want: &str, got: &str) -> String {
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let clip = |s: &str| {
        if s.len() > 400 {
            format!(
                "{}...",
                &s[..s.char_indices().nth(400).map(|(i, _)| i).unwrap_or(s.len())]
            )
        } else {
            s.to_string()
        }
    };
    for i in 0..w.len().max(g.len()) {
        if w.get(i) != g.get(i) {
            return format!(
                "expected {} rows, got {}; first difference at line {}:\n  expected: {}\n  actual:   {}",
                w.len(),
                g.len(),
                i + 1,
                w.get(i).map(|s| clip(s)).unwrap_or_else(|| "(end)".into()),
                g.get(i).map(|s| clip(s)).unwrap_or_else(|| "(end)".into())
            );
        }
    }
    "the dumps differ only in line endings".into()
}

/// `jobs/expected/<job>/` exists only for jobs that exist.
fn golden_folders_have_jobs() -> Result<(), Failed> {
    let jobs: BTreeSet<String> = job_files()
        .iter()
        .map(|j| j.file_stem().expect("stem").to_string_lossy().to_string())
        .collect();
    let Ok(rd) = std::fs::read_dir(repo().join("jobs").join("expected")) else {
        return Ok(());
    };
    let orphans: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !jobs.contains(n))
        .collect();
    if orphans.is_empty() {
        Ok(())
    } else {
        Err(
            format!("jobs/expected/ holds golden folders of no job: {orphans:?} (remove them)")
                .into(),
        )
    }
}
