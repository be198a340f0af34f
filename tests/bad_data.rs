//! Bad input end to end (DESIGN §7): malformed JSON, wrong types, invalid
//! UTF-8, records over `max_record_bytes` and missing NOT NULL fields, in JSON
//! Lines and CSV, under each `bad_data` policy:
//!
//! - `fail`: exit 1, stderr names `file:line` and the reason, nothing published;
//! - `drop`: exit 0, the summary counts the dropped records, the output holds
//!   exactly the good rows;
//! - `dead_letter`: exit 0, Parquet under the `dead_letter` URL with `source`,
//!   `split`, `position`, `location`, `reason` and the original bytes in `raw`;
//!   written + dead-lettered == records.

mod common;

use std::path::{Path, PathBuf};

use arrow::array::{Array, BinaryArray, StringArray, UInt64Array};
use serde_json::{json, Value};

use common::*;

/// `max_record_bytes` of every job here.
const MAX_RECORD: usize = 1024;

/// A kind of bad record: a name, its bytes (no terminator), and what the
/// reason must mention.
struct Bad {
    kind: &'static str,
    raw: Vec<u8>,
    reason: &'static [&'static str],
}

fn json_bad_records() -> Vec<Bad> {
    let mut oversize = br#"{"id": 900, "name": ""#.to_vec();
    oversize.extend(std::iter::repeat_n(b'x', 2 * MAX_RECORD));
    oversize.extend(br#"", "score": 1.0}"#);
    vec![
        Bad {
            kind: "malformed JSON",
            raw: br#"{"id": 901, "name": "m", "score": "#.to_vec(),
            reason: &["malformed JSON"],
        },
        Bad {
            kind: "wrong type",
            raw: br#"{"id": 902, "name": "w", "score": "not a number"}"#.to_vec(),
            reason: &["score", "Float64", "not a number"],
        },
        Bad {
            kind: "invalid UTF-8",
            raw: b"{\"id\": 903, \"name\": \"caf\xc3 \xff\xfe\", \"score\": 1.0}".to_vec(),
            reason: &["invalid UTF-8"],
        },
        Bad {
            kind: "oversize",
            raw: oversize,
            reason: &["max_record_bytes"],
        },
        Bad {
            kind: "missing NOT NULL",
            raw: br#"{"name": "no id", "score": 2.0}"#.to_vec(),
            reason: &["'id'", "NOT NULL"],
        },
    ]
}

/// Good JSON rows: id, name, score.
fn good_json(ids: std::ops::Range<i64>) -> Vec<Value> {
    ids.map(|i| json!({"id": i, "name": format!("name-{i}"), "score": i as f64 + 0.25}))
        .collect()
}

/// A line of the input with its 1-based number and byte offset.
#[derive(Clone, Debug)]
struct Line {
    number: u64,
    offset: u64,
}

/// Write `lines` (each without terminator) as a file, one per line; return
/// each line's number and offset.
fn write_lines(path: &Path, lines: &[Vec<u8>]) -> Vec<Line> {
    let mut data = Vec::new();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        out.push(Line {
            number: i as u64 + 1,
            offset: data.len() as u64,
        });
        data.extend_from_slice(l);
        data.push(b'\n');
    }
    std::fs::write(path, data).expect("write input");
    out
}

struct Job<'a> {
    name: &'a str,
    input: &'a Path,
    format: &'a str,
    columns: &'a str,
    policy: &'a str,
    dead_letter: Option<&'a Path>,
    out: &'a Path,
    epoch_rows: Option<u64>,
}

impl Job<'_> {
    fn text(&self) -> String {
        let mut t = format!("SET job.name = '{}';\n", self.name);
        if let Some(n) = self.epoch_rows {
            t.push_str(&format!("SET epoch.max_rows = '{n}';\n"));
        }
        let dl = self
            .dead_letter
            .map(|d| format!(", dead_letter = '{}/'", s(d)))
            .unwrap_or_default();
        t.push_str(&format!(
            "CREATE TABLE src ({})\nWITH (connector = 'file', path = '{}', format = '{}', max_record_bytes = '1KB', bad_data = '{}'{dl});\n",
            self.columns,
            s(self.input),
            self.format,
            self.policy
        ));
        t.push_str(&format!(
            "CREATE TABLE out WITH (connector = 'parquet', path = '{}/');\n",
            s(self.out)
        ));
        t.push_str("INSERT INTO out SELECT * FROM src;\n");
        t
    }

    fn run(&self, dir: &Path) -> Output {
        let job = write_job(dir, &format!("{}.sql", self.name), &self.text());
        strata(dir, &["run", s(&job)])
    }
}

const JSON_COLUMNS: &str = "id BIGINT NOT NULL, name TEXT, score DOUBLE";

/// The good rows as the sink must hold them.
fn expected_rows(good: &[Value]) -> String {
    let rows: Vec<Row> = good
        .iter()
        .map(|v| v.as_object().expect("object").clone().into_iter().collect())
        .collect();
    canonical_dump(&rows)
}

fn parquet_files(dir: &Path) -> Vec<String> {
    list_tree(dir)
        .into_iter()
        .filter(|e| e.ends_with(".parquet"))
        .collect()
}

#[test]
fn json_fail_names_file_line_and_reason_for_every_kind() {
    let tmp = tempdir();
    for (k, bad) in json_bad_records().into_iter().enumerate() {
        let dir = tmp.path().join(format!("case{k}"));
        std::fs::create_dir_all(&dir).expect("case dir");
        let input = dir.join("input.jsonl");
        let mut lines: Vec<Vec<u8>> = good_json(0..2)
            .iter()
            .map(|v| v.to_string().into_bytes())
            .collect();
        lines.push(bad.raw.clone());
        lines.extend(good_json(2..4).iter().map(|v| v.to_string().into_bytes()));
        write_lines(&input, &lines);
        let out = dir.join("out");
        let o = Job {
            name: "bad_fail",
            input: &input,
            format: "json",
            columns: JSON_COLUMNS,
            policy: "fail",
            dead_letter: None,
            out: &out,
            epoch_rows: None,
        }
        .run(&dir);
        o.expect_code(1, &format!("bad_data = 'fail' with a {} record", bad.kind));
        let at = format!("{}:3", s(&input));
        assert!(
            o.stderr.contains(&at),
            "{}: stderr must name {at}:\n{}",
            bad.kind,
            o.stderr
        );
        for word in bad.reason {
            assert!(
                o.stderr.contains(word),
                "{}: stderr must give the reason (mention {word:?}):\n{}",
                bad.kind,
                o.stderr
            );
        }
        assert!(
            o.stderr.contains("bad_data"),
            "{}: stderr must say how to keep going (bad_data = ...):\n{}",
            bad.kind,
            o.stderr
        );
        assert!(
            parquet_files(&out).is_empty(),
            "{}: a failed epoch must publish nothing: {:?}",
            bad.kind,
            list_tree(&out)
        );
    }
}

/// Good rows with every kind of bad record (and a blank line) between them.
fn mixed_json_input(path: &Path) -> (Vec<Value>, Vec<(Line, Bad)>, u64) {
    let good = good_json(0..12);
    let bads = json_bad_records();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut bad_at = Vec::new();
    let mut g = good.iter();
    for b in &bads {
        lines.push(g.next().expect("good row").to_string().into_bytes());
        lines.push(g.next().expect("good row").to_string().into_bytes());
        bad_at.push(lines.len());
        lines.push(b.raw.clone());
    }
    lines.push(Vec::new()); // a blank line: neither a record nor an error
    lines.extend(g.map(|v| v.to_string().into_bytes()));
    let written = write_lines(path, &lines);
    let bad_lines = bad_at
        .into_iter()
        .map(|i| written[i].clone())
        .zip(bads)
        .collect();
    (good, bad_lines, written.len() as u64 - 1)
}

#[test]
fn json_drop_counts_and_keeps_exactly_the_good_rows() {
    let tmp = tempdir();
    let input = tmp.path().join("mixed.jsonl");
    let (good, bad, records) = mixed_json_input(&input);
    let out = tmp.path().join("out");
    let o = Job {
        name: "bad_drop",
        input: &input,
        format: "json",
        columns: JSON_COLUMNS,
        policy: "drop",
        dead_letter: None,
        out: &out,
        epoch_rows: None,
    }
    .run(tmp.path());
    let sum = o.summary("bad_data = 'drop'");
    let src = sum.source("src");
    assert_eq!(
        (src.records, src.rows, src.dead_lettered, src.dropped),
        (records, good.len() as u64, 0, bad.len() as u64),
        "source counts (records, rows, dead-lettered, dropped):\n{}",
        o.stdout
    );
    assert_eq!(sum.sink("out").rows, good.len() as u64);
    assert_eq!(
        canonical_dump(&table_rows(&out)),
        expected_rows(&good),
        "the output must hold exactly the good rows"
    );
    assert_clean_table(&out, &[]);
}

/// Every dead letter under `dir`: (source, split, position, location, reason, raw).
fn dead_letters(dir: &Path) -> Vec<(String, String, u64, String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for f in read_table(dir) {
        for b in &f.batches {
            let names: Vec<String> = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            for c in ["source", "split", "position", "location", "reason", "raw"] {
                assert!(
                    names.iter().any(|n| n == c),
                    "dead-letter files must have a '{c}' column; they have {names:?}"
                );
            }
            let str_col = |n: &str| {
                b.column_by_name(n)
                    .expect("column")
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap_or_else(|| panic!("'{n}' is text"))
                    .clone()
            };
            let (source, split, location, reason) = (
                str_col("source"),
                str_col("split"),
                str_col("location"),
                str_col("reason"),
            );
            let position = b
                .column_by_name("position")
                .expect("position")
                .as_any()
                .downcast_ref::<UInt64Array>()
                .expect("position is UInt64")
                .clone();
            let raw = b
                .column_by_name("raw")
                .expect("raw")
                .as_any()
                .downcast_ref::<BinaryArray>()
                .expect("raw is Binary")
                .clone();
            for i in 0..b.num_rows() {
                assert!(!raw.is_null(i), "raw is never null");
                out.push((
                    source.value(i).to_string(),
                    split.value(i).to_string(),
                    position.value(i),
                    location.value(i).to_string(),
                    reason.value(i).to_string(),
                    raw.value(i).to_vec(),
                ));
            }
        }
    }
    out.sort_by_key(|d| d.2);
    out
}

fn check_dead_letters(dlq: &Path, input: &Path, bad: &[(Line, Bad)]) {
    let letters = dead_letters(dlq);
    assert_eq!(
        letters.len(),
        bad.len(),
        "one dead letter per bad record: {:?}",
        letters.iter().map(|l| &l.4).collect::<Vec<_>>()
    );
    let url = format!("file://{}", s(input));
    for ((source, split, position, location, reason, raw), (line, b)) in letters.iter().zip(bad) {
        assert_eq!(source, "src", "{}: source", b.kind);
        assert_eq!(split, &url, "{}: split is the file's URL", b.kind);
        assert_eq!(
            *position, line.offset,
            "{}: position is the record's byte offset",
            b.kind
        );
        assert_eq!(
            location,
            &format!("{}:{}", s(input), line.number),
            "{}: location is file:line",
            b.kind
        );
        for word in b.reason {
            assert!(
                reason.contains(word),
                "{}: reason {reason:?} must mention {word:?}",
                b.kind
            );
        }
        if b.raw.len() > MAX_RECORD {
            // Documented in connectors/src/file/text.rs: an oversize record's raw
            // holds its first max_record_bytes bytes, so memory stays bounded.
            assert_eq!(
                raw.as_slice(),
                &b.raw[..MAX_RECORD],
                "{}: raw holds the record's first max_record_bytes bytes",
                b.kind
            );
        } else {
            assert_eq!(
                raw, &b.raw,
                "{}: raw must be the original bytes, exactly",
                b.kind
            );
        }
    }
}

#[test]
fn json_dead_letter_keeps_original_bytes_reason_and_position() {
    let tmp = tempdir();
    let input = tmp.path().join("mixed.jsonl");
    let (good, bad, records) = mixed_json_input(&input);
    let out = tmp.path().join("out");
    let dlq = tmp.path().join("dlq");
    // Small epochs: bad records spread over several epochs and dead-letter files.
    let o = Job {
        name: "bad_dl",
        input: &input,
        format: "json",
        columns: JSON_COLUMNS,
        policy: "dead_letter",
        dead_letter: Some(&dlq),
        out: &out,
        epoch_rows: Some(4),
    }
    .run(tmp.path());
    let sum = o.summary("bad_data = 'dead_letter'");
    let src = sum.source("src");
    assert!(
        sum.epochs > 1,
        "the run must span several epochs:\n{}",
        o.stdout
    );
    assert_eq!(
        (src.records, src.rows, src.dead_lettered, src.dropped),
        (records, good.len() as u64, bad.len() as u64, 0),
        "source counts (records, rows, dead-lettered, dropped):\n{}",
        o.stdout
    );
    let written = sum.sink("out").rows;
    assert_eq!(
        written + src.dead_lettered,
        src.records,
        "written + dead-lettered == records"
    );
    assert_eq!(
        canonical_dump(&table_rows(&out)),
        expected_rows(&good),
        "the output must hold exactly the good rows"
    );
    check_dead_letters(&dlq, &input, &bad);
    assert_clean_table(&out, &[]);
    assert_clean_table(&dlq, &[]);
}

// ---------------------------------------------------------------------------
// CSV

const CSV_COLUMNS: &str = "id BIGINT NOT NULL, name TEXT, score DOUBLE";

fn csv_bad_records() -> Vec<Bad> {
    vec![
        Bad {
            kind: "wrong type",
            raw: b"abc,wrong-type,1.5".to_vec(),
            reason: &["'id'", "Int64", "abc"],
        },
        Bad {
            kind: "field count",
            raw: b"7,too,many,fields".to_vec(),
            reason: &["expected 3 fields, found 4"],
        },
        Bad {
            kind: "empty NOT NULL",
            raw: b",no-id,2.5".to_vec(),
            reason: &["'id'", "NOT NULL"],
        },
        Bad {
            kind: "invalid UTF-8",
            raw: b"8,caf\xc3 \xff,3.5".to_vec(),
            reason: &["invalid UTF-8"],
        },
    ]
}

/// Header, good rows and every bad kind; returns (good rows, bad lines, records).
fn mixed_csv_input(path: &Path) -> (Vec<Value>, Vec<(Line, Bad)>, u64) {
    let good: Vec<Value> = (0..6)
        .map(|i| json!({"id": 100 + i, "name": format!("n{i}"), "score": i as f64 * 0.5}))
        .collect();
    let csv = |v: &Value| {
        format!(
            "{},{},{}",
            v["id"],
            v["name"].as_str().expect("name"),
            v["score"].as_f64().expect("score")
        )
        .into_bytes()
    };
    let mut lines: Vec<Vec<u8>> = vec![b"id,name,score".to_vec()];
    let mut bad_at = Vec::new();
    let bads = csv_bad_records();
    let mut g = good.iter();
    for _ in &bads {
        lines.push(csv(g.next().expect("good")));
        bad_at.push(lines.len());
        lines.push(Vec::new()); // filled with the bad record below, at index bad_at
    }
    lines.extend(g.map(csv));
    for (i, b) in bad_at.iter().zip(&bads) {
        lines[*i] = b.raw.clone();
    }
    let written = write_lines(path, &lines);
    let bad_lines = bad_at
        .into_iter()
        .map(|i| written[i].clone())
        .zip(bads)
        .collect();
    (good, bad_lines, written.len() as u64 - 1)
}

#[test]
fn csv_fail_names_file_line_and_reason() {
    let tmp = tempdir();
    let input = tmp.path().join("mixed.csv");
    let (_, bad, _) = mixed_csv_input(&input);
    let out = tmp.path().join("out");
    let o = Job {
        name: "csv_fail",
        input: &input,
        format: "csv",
        columns: CSV_COLUMNS,
        policy: "fail",
        dead_letter: None,
        out: &out,
        epoch_rows: None,
    }
    .run(tmp.path());
    o.expect_code(1, "CSV with bad_data = 'fail'");
    let (first, b) = &bad[0];
    let at = format!("{}:{}", s(&input), first.number);
    assert!(
        o.stderr.contains(&at),
        "stderr must name {at} (line numbers count the header):\n{}",
        o.stderr
    );
    for word in b.reason {
        assert!(
            o.stderr.contains(word),
            "stderr must give the reason (mention {word:?}):\n{}",
            o.stderr
        );
    }
    assert!(
        parquet_files(&out).is_empty(),
        "a failed epoch must publish nothing: {:?}",
        list_tree(&out)
    );
}

#[test]
fn csv_drop_counts_and_keeps_exactly_the_good_rows() {
    let tmp = tempdir();
    let input = tmp.path().join("mixed.csv");
    let (good, bad, records) = mixed_csv_input(&input);
    let out = tmp.path().join("out");
    let o = Job {
        name: "csv_drop",
        input: &input,
        format: "csv",
        columns: CSV_COLUMNS,
        policy: "drop",
        dead_letter: None,
        out: &out,
        epoch_rows: None,
    }
    .run(tmp.path());
    let sum = o.summary("CSV with bad_data = 'drop'");
    let src = sum.source("src");
    assert_eq!(
        (src.records, src.rows, src.dead_lettered, src.dropped),
        (records, good.len() as u64, 0, bad.len() as u64),
        "{}",
        o.stdout
    );
    assert_eq!(canonical_dump(&table_rows(&out)), expected_rows(&good));
}

#[test]
fn csv_dead_letter_keeps_original_bytes_reason_and_position() {
    let tmp = tempdir();
    let input = tmp.path().join("mixed.csv");
    let (good, bad, records) = mixed_csv_input(&input);
    let out = tmp.path().join("out");
    let dlq: PathBuf = tmp.path().join("dlq");
    let o = Job {
        name: "csv_dl",
        input: &input,
        format: "csv",
        columns: CSV_COLUMNS,
        policy: "dead_letter",
        dead_letter: Some(&dlq),
        out: &out,
        epoch_rows: Some(3),
    }
    .run(tmp.path());
    let sum = o.summary("CSV with bad_data = 'dead_letter'");
    let src = sum.source("src");
    assert_eq!(
        (src.records, src.rows, src.dead_lettered, src.dropped),
        (records, good.len() as u64, bad.len() as u64, 0),
        "{}",
        o.stdout
    );
    assert_eq!(
        sum.sink("out").rows + src.dead_lettered,
        src.records,
        "written + dead-lettered == records"
    );
    assert_eq!(canonical_dump(&table_rows(&out)), expected_rows(&good));
    check_dead_letters(&dlq, &input, &bad);
    assert_clean_table(&dlq, &[]);
}
