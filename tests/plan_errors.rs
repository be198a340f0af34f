//! Plan errors (DESIGN §2, §3): a wrong job exits 2 from both `strata run` and
//! `strata explain`, before reading or writing anything, with
//! `error: <file>:<line>:<col>: <message>` on stderr pointing at the part of
//! the statement that is wrong, and a hint of what to do.
//!
//! Every case edits one line of a small valid job; the expected position is
//! computed from the edited text (the marker each case names), so the cases
//! read like the mistakes users make.

mod common;

use std::path::Path;

use common::*;

/// A valid job; every case breaks one thing in it.
fn base(dir: &Path) -> String {
    let input = dir.join("in.jsonl");
    std::fs::write(&input, "{\"id\": 1, \"name\": \"a\"}\n").expect("write input");
    format!(
        "SET job.name = 'plan_errors';\n\
         CREATE TABLE src (id BIGINT NOT NULL, name TEXT)\n\
         WITH (connector = 'file', path = '{input}', format = 'json');\n\
         CREATE TABLE out WITH (connector = 'parquet', path = '{out}/');\n\
         INSERT INTO out\n\
         SELECT id,\n       upper(name) AS name\n\
         FROM src\n\
         WHERE id > 0;\n",
        input = s(&input),
        out = s(&dir.join("out")),
    )
}

/// 1-based (line, column) of the `nth` (0-based) occurrence of `needle` in `text`, plus `shift` characters.
fn position(text: &str, needle: &str, nth: usize, shift: usize) -> (usize, usize) {
    let byte = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("'{needle}' (#{nth}) not in the job:\n{text}"))
        .0;
    let before = &text[..byte];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1
        + shift;
    (line, col)
}

/// Where the error must point.
enum At {
    /// Exactly this line and column.
    Exact(usize, usize),
    /// One of these (line, column) positions.
    OneOf(Vec<(usize, usize)>),
}

struct Case<'a> {
    name: &'a str,
    job: String,
    at: At,
    /// The message must contain all of these.
    message: &'a [&'a str],
    /// ... and at least one of these (the hint of what to do).
    hint: &'a [&'a str],
    vars: &'a [&'a str],
}

fn check(dir: &Path, case: Case) {
    let job = write_job(dir, &format!("{}.sql", case.name), &case.job);
    let out = dir.join("out");
    for cmd in ["run", "explain"] {
        let mut args = vec![cmd, s(&job)];
        for v in case.vars {
            args.extend(["--var", v]);
        }
        let o = strata(dir, &args);
        let what = format!("{} ({cmd})", case.name);
        o.expect_code(2, &what);
        let prefix = format!("error: {}:", s(&job));
        let line = o
            .stderr
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| {
                panic!(
                    "{what}: stderr has no line starting with '{prefix}':\n{}",
                    o.stderr
                )
            });
        let rest = &line[prefix.len()..];
        let mut parts = rest.splitn(3, ':');
        let got_line: usize = parts
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no line number in '{line}'"));
        let got_col: usize = parts
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{what}: no column in '{line}'"));
        match &case.at {
            At::Exact(l, c) => assert_eq!((got_line, got_col), (*l, *c), "{what}: the error must point at {l}:{c}:\n{}\n--- job\n{}", o.stderr, case.job),
            At::OneOf(v) => assert!(
                v.contains(&(got_line, got_col)),
                "{what}: the error must point at one of {v:?} (line, column); got {got_line}:{got_col}:\n{}\n--- job\n{}",
                o.stderr,
                case.job
            ),
        }
        for m in case.message {
            assert!(
                o.stderr.contains(m),
                "{what}: the message must mention {m:?}:\n{}",
                o.stderr
            );
        }
        assert!(
            case.hint.iter().any(|h| o.stderr.contains(h)),
            "{what}: the message must say what to do (one of {:?}):\n{}",
            case.hint,
            o.stderr
        );
        assert!(
            !out.exists(),
            "{what}: a plan error must write nothing: {:?}",
            list_tree(&out)
        );
    }
}

fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "'{from}' not in the job");
    text.replacen(from, to, 1)
}

#[test]
fn unknown_connector() {
    let tmp = tempdir();
    let job = edit(
        &base(tmp.path()),
        "connector = 'parquet'",
        "connector = 'parket'",
    );
    let (l, c) = position(&job, "connector = 'parket'", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "unknown_connector",
            at: At::Exact(l, c),
            message: &["parket"],
            hint: &["available: file, parquet"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn unknown_option() {
    let tmp = tempdir();
    let job = edit(
        &base(tmp.path()),
        "format = 'json')",
        "format = 'json', colour = 'blue')",
    );
    let (l, c) = position(&job, "colour", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "unknown_option",
            at: At::Exact(l, c),
            message: &["unknown option 'colour'"],
            hint: &["known options", "path"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn invalid_option_value() {
    let tmp = tempdir();
    let job = edit(
        &base(tmp.path()),
        "connector = 'parquet', ",
        "connector = 'parquet', compression = 'lzma', ",
    );
    let (l, c) = position(&job, "compression", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "invalid_option_value",
            at: At::Exact(l, c),
            message: &["lzma", "compression"],
            hint: &["expected zstd"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn missing_required_path_of_a_sink() {
    let tmp = tempdir();
    let base = base(tmp.path());
    let sink_path = format!(", path = '{}/'", s(&tmp.path().join("out")));
    let job = edit(&base, &sink_path, "");
    let (l, c) = position(&job, "WITH (connector = 'parquet'", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "missing_sink_path",
            at: At::Exact(l, c),
            message: &["requires option 'path'"],
            hint: &["s3://"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn missing_required_path_of_a_source() {
    let tmp = tempdir();
    let base = base(tmp.path());
    let src_path = format!("path = '{}', ", s(&tmp.path().join("in.jsonl")));
    let job = edit(&base, &src_path, "");
    let (l, c) = position(&job, "WITH (connector = 'file'", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "missing_source_path",
            at: At::Exact(l, c),
            message: &["requires option 'path'"],
            hint: &["set path"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn column_that_does_not_exist() {
    let tmp = tempdir();
    let job = edit(&base(tmp.path()), "upper(name)", "upper(nmae)");
    let (l, c) = position(&job, "nmae", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "no_such_column",
            at: At::Exact(l, c),
            message: &["nmae"],
            hint: &["Did you mean", "check the column name"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn query_type_does_not_fit_a_declared_sink_column() {
    let tmp = tempdir();
    let job = edit(
        &base(tmp.path()),
        "CREATE TABLE out WITH",
        "CREATE TABLE out (id BIGINT, name BIGINT) WITH",
    );
    // The statement's query, or better the select item that does not fit.
    let at = At::OneOf(vec![
        position(&job, "SELECT id", 0, 0),
        position(&job, "upper(name)", 0, 0),
    ]);
    check(
        tmp.path(),
        Case {
            name: "type_mismatch",
            at,
            message: &["'name'", "Int64", "Utf8"],
            hint: &["CAST"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn declared_sink_columns_do_not_match_the_query_count() {
    let tmp = tempdir();
    let job = edit(
        &base(tmp.path()),
        "CREATE TABLE out WITH",
        "CREATE TABLE out (id BIGINT) WITH",
    );
    let (l, c) = position(&job, "SELECT id", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "column_count",
            at: At::Exact(l, c),
            message: &["declares 1 columns but the query returns 2"],
            hint: &["select exactly the declared columns"],
            vars: &[],
            job,
        },
    );
}

/// Regression: a syntax error inside an INSERT's query was reported at the
/// query's first token, while the message itself named the right line and
/// column (`ParserError("... at Line: 9, Column: 12")`).
#[test]
fn bad_sql_syntax_in_a_query() {
    let tmp = tempdir();
    // `WHERE id > > 0`: the error is at the second '>', three lines below the query's start.
    let job = edit(&base(tmp.path()), "WHERE id > 0", "WHERE id > > 0");
    let (l, c) = position(&job, "> > 0", 0, 2);
    check(
        tmp.path(),
        Case {
            name: "syntax_query",
            at: At::Exact(l, c),
            message: &["Expected"],
            hint: &["an expression"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn bad_syntax_in_a_with_clause() {
    let tmp = tempdir();
    let job = edit(&base(tmp.path()), "connector = 'file'", "connector 'file'");
    let (l, c) = position(&job, "'file'", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "syntax_with",
            at: At::Exact(l, c),
            message: &["connector"],
            hint: &["expected '='"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn unknown_set_key() {
    let tmp = tempdir();
    let job = edit(
        &base(tmp.path()),
        "SET job.name",
        "SET epoch.max_rowz = '10';\nSET job.name",
    );
    let (l, c) = position(&job, "epoch.max_rowz", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "unknown_set",
            at: At::Exact(l, c),
            message: &["unknown setting 'epoch.max_rowz'"],
            hint: &["known settings", "epoch.max_rows"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn undefined_variable() {
    let tmp = tempdir();
    let job = edit(
        &base(tmp.path()),
        "WHERE id > 0",
        "WHERE id > ${MIN_ID_UNDEFINED_IN_TESTS}",
    );
    let (l, c) = position(&job, "${MIN_ID", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "undefined_var",
            at: At::Exact(l, c),
            message: &["MIN_ID_UNDEFINED_IN_TESTS"],
            hint: &["--var MIN_ID_UNDEFINED_IN_TESTS=VALUE"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn defined_variable_plans() {
    let tmp = tempdir();
    let job = edit(&base(tmp.path()), "WHERE id > 0", "WHERE id > ${MIN_ID}");
    let path = write_job(tmp.path(), "defined_var.sql", &job);
    strata(tmp.path(), &["explain", s(&path), "--var", "MIN_ID=3"])
        .expect_code(0, "a job whose variable is given");
}

#[test]
fn unknown_function() {
    let tmp = tempdir();
    let job = edit(&base(tmp.path()), "upper(name)", "chunk_txt(name)");
    let (l, c) = position(&job, "chunk_txt", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "unknown_function",
            at: At::Exact(l, c),
            message: &["chunk_txt"],
            hint: &["Did you mean 'chunk_text'", "README"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn unknown_source_table_in_query() {
    let tmp = tempdir();
    let job = edit(&base(tmp.path()), "FROM src", "FROM srcc");
    let (l, c) = position(&job, "srcc", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "unknown_table",
            at: At::Exact(l, c),
            message: &["srcc"],
            hint: &["not found"],
            vars: &[],
            job,
        },
    );
}

#[test]
fn unsupported_column_type() {
    let tmp = tempdir();
    let job = edit(&base(tmp.path()), "name TEXT)", "name GEOGRAPHY)");
    let (l, c) = position(&job, "name GEOGRAPHY", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "column_type",
            at: At::Exact(l, c),
            message: &["GEOGRAPHY"],
            hint: &["use TEXT"],
            vars: &[],
            job,
        },
    );
}

/// Regression: `INSERT INTO` an undeclared table was reported as "table 'out'
/// ... can only be written to" (the declared sink, wrongly taken for a source)
/// instead of naming the undeclared target.
#[test]
fn insert_into_an_undeclared_table() {
    let tmp = tempdir();
    let job = edit(&base(tmp.path()), "INSERT INTO out", "INSERT INTO outt");
    let (l, c) = position(&job, "outt", 0, 0);
    check(
        tmp.path(),
        Case {
            name: "undeclared_target",
            at: At::Exact(l, c),
            message: &["outt"],
            hint: &["CREATE TABLE outt"],
            vars: &[],
            job,
        },
    );
}
