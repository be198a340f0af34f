//! The command line's contract (DESIGN §3) beyond single features: exit codes
//! tell a job that is wrong (2) from a run that failed (1), and output off a
//! terminal is plain log lines.

mod common;

use common::*;

fn job(dir: &std::path::Path, input: &str, extra_source_options: &str) -> std::path::PathBuf {
    let out = dir.join("out");
    write_job(
        dir,
        "job.sql",
        &format!(
            "SET job.name = 'cli';\n\
             CREATE TABLE src (id BIGINT NOT NULL) WITH (connector = 'file', path = '{input}', format = 'json'{extra_source_options});\n\
             CREATE TABLE out WITH (connector = 'parquet', path = '{}/');\n\
             INSERT INTO out SELECT id FROM src;\n",
            s(&out)
        ),
    )
}

/// Regression: an object store that cannot be reached was reported as a plan
/// error (exit 2, "the job is wrong"), so a scheduler would not retry a run
/// that only met a storage outage. It is a runtime failure: exit 1.
#[test]
fn unreachable_storage_is_a_runtime_failure_not_a_plan_error() {
    let tmp = tempdir();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let opts = format!(", 'storage.endpoint' = 'http://127.0.0.1:{port}', 'storage.allow_http' = 'true', 'storage.access_key_id' = 'x', 'storage.secret_access_key' = 'y'");
    let path = job(tmp.path(), "s3://no-such-bucket/in/", &opts);
    let mut cmd = strata_cmd(tmp.path());
    cmd.args(["run", s(&path)]).env("AWS_REGION", "us-east-1");
    let o = run_cmd(cmd);
    assert!(
        o.stderr.contains("s3://no-such-bucket/in"),
        "the error names the location:\n{}",
        o.stderr
    );
    o.expect_code(1, "a run whose storage cannot be reached");
}

#[test]
fn a_missing_input_is_a_plan_error_at_the_path_option() {
    let tmp = tempdir();
    let missing = tmp.path().join("nope.jsonl");
    let path = job(tmp.path(), s(&missing), "");
    let o = strata(tmp.path(), &["run", s(&path)]);
    o.expect_code(2, "a job whose input path does not exist");
    let text = std::fs::read_to_string(&path).expect("job");
    let line = text
        .lines()
        .position(|l| l.contains("path = '"))
        .expect("path line")
        + 1;
    let col = text
        .lines()
        .nth(line - 1)
        .expect("line")
        .find("path = '")
        .expect("path")
        + 1;
    assert!(
        o.stderr.contains(&format!("{}:{line}:{col}:", s(&path))),
        "the error points at the path option ({line}:{col}):\n{}",
        o.stderr
    );
    assert!(o.stderr.contains("does not exist"), "{}", o.stderr);
}

/// Regression: log lines carried ANSI colour escapes even when stderr was a
/// file or a pipe (CI logs, `2> run.log`); off a terminal they must be plain.
#[test]
fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let tmp = tempdir();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\": 1}\n{\"id\": 2}\n").expect("input");
    let path = job(tmp.path(), s(&input), "");
    let mut cmd = strata_cmd(tmp.path());
    cmd.env_remove("NO_COLOR").args(["run", s(&path)]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = cmd.output().expect("run strata");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("INFO"), "the run logs on stderr:\n{err}");
    assert!(
        !err.contains('\u{1b}'),
        "stderr is a pipe: no ANSI escapes expected:\n{}",
        err.replace('\u{1b}', "\\e")
    );
}
