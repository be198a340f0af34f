//! Evaluate `detect_pii`'s detectors on a labelled corpus and measure their speed.
//!
//! ```text
//! python3 scripts/pii_corpus.py --seed 424242 --docs 2000 > /tmp/pii_corpus.jsonl
//! cargo run --release -p strata-operators --example pii_eval -- /tmp/pii_corpus.jsonl [--mb 100]
//! ```
//!
//! Prints precision, recall and F1 per entity type, span-level: a detection is a true
//! positive when a labelled entity of the same type overlaps it (each label counts once);
//! any other detection is a false positive of its type, and every unmatched label a false
//! negative. Then single-thread throughput (MB/s per core) over the corpus and, with
//! `--mb N`, over N MB of realistic prose (the bodies of jobs/data/docs.jsonl, repeated,
//! with the corpus documents spliced in one per 20 KB).

use std::collections::BTreeMap;
use std::time::Instant;

use strata_operators::pii::{EntitySet, PiiDetector};

#[derive(Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .ok_or("usage: pii_eval CORPUS.jsonl [--mb N]")?;
    let mb: usize = match args.iter().position(|a| a == "--mb") {
        Some(i) => args.get(i + 1).ok_or("--mb needs a number")?.parse()?,
        None => 0,
    };
    let detector = PiiDetector::default();
    let types = EntitySet::structured();
    let mut docs = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let text = v["text"]
            .as_str()
            .ok_or("document without text")?
            .to_string();
        let mut gold = Vec::new();
        for e in v["entities"]
            .as_array()
            .ok_or("document without entities")?
        {
            gold.push((
                e["type"].as_str().ok_or("entity without type")?.to_string(),
                e["start"].as_u64().ok_or("entity without start")? as usize,
                e["end"].as_u64().ok_or("entity without end")? as usize,
            ));
        }
        docs.push((text, gold));
    }

    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut examples: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let started = Instant::now();
    let mut bytes = 0usize;
    for (text, gold) in &docs {
        bytes += text.len();
        let found = detector.detect(text, types)?;
        let mut used = vec![false; gold.len()];
        for d in &found {
            let name = d.entity_type.name();
            let hit = gold.iter().enumerate().position(|(i, (t, s, e))| {
                !used[i] && t == name && *s < d.end_char && d.start_char < *e
            });
            match hit {
                Some(i) => {
                    used[i] = true;
                    counts.entry(name.to_string()).or_default().tp += 1;
                }
                None => {
                    counts.entry(name.to_string()).or_default().fp += 1;
                    let snippet: String = text
                        .chars()
                        .skip(d.start_char)
                        .take(d.end_char - d.start_char)
                        .collect();
                    examples
                        .entry(format!("FP {name}"))
                        .or_default()
                        .push(snippet);
                }
            }
        }
        for (i, (t, s, e)) in gold.iter().enumerate() {
            if !used[i] {
                counts.entry(t.clone()).or_default().fn_ += 1;
                let snippet: String = text.chars().skip(*s).take(e - s).collect();
                examples.entry(format!("FN {t}")).or_default().push(snippet);
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();

    println!(
        "{:<42} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "entity", "tp", "fp", "fn", "P", "R", "F1"
    );
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    for (name, c) in &counts {
        let p = c.tp as f64 / (c.tp + c.fp).max(1) as f64;
        let r = c.tp as f64 / (c.tp + c.fn_).max(1) as f64;
        let f = if p + r > 0.0 {
            2.0 * p * r / (p + r)
        } else {
            0.0
        };
        println!(
            "{name:<42} {:>6} {:>6} {:>6} {p:>6.3} {r:>6.3} {f:>6.3}",
            c.tp, c.fp, c.fn_
        );
        if !matches!(name.as_str(), "NAME" | "ADDRESS") {
            tp += c.tp;
            fp += c.fp;
            fn_ += c.fn_;
        }
    }
    let p = tp as f64 / (tp + fp).max(1) as f64;
    let r = tp as f64 / (tp + fn_).max(1) as f64;
    println!(
        "{:<42} {tp:>6} {fp:>6} {fn_:>6} {p:>6.3} {r:>6.3} {:>6.3}",
        "ALL STRUCTURED (micro)",
        2.0 * p * r / (p + r).max(1e-9)
    );
    if std::env::var_os("PII_EVAL_EXAMPLES").is_some() {
        for (k, v) in &examples {
            println!("{k}: {:?}", &v[..v.len().min(5)]);
        }
    }
    println!(
        "\nthroughput on the corpus (PII-dense): {:.1} MB/s on one core ({} docs, {:.2} MB)",
        bytes as f64 / 1e6 / secs,
        docs.len(),
        bytes as f64 / 1e6
    );

    if mb > 0 {
        let prose = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../jobs/data/docs.jsonl"
        ))?;
        let bodies: Vec<String> = prose
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["body"].as_str().map(str::to_string))
            .collect();
        let mut texts = Vec::new();
        let (mut total, mut i) = (0usize, 0usize);
        let mut cur = String::new();
        while total < mb << 20 {
            cur.push_str(&bodies[i % bodies.len()]);
            cur.push('\n');
            if cur.len() >= 20_000 {
                cur.push_str(&docs[i % docs.len()].0);
                total += cur.len();
                texts.push(std::mem::take(&mut cur));
            }
            i += 1;
        }
        let started = Instant::now();
        let mut n = 0;
        for t in &texts {
            n += detector.detect(t, types)?.len();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "throughput on {:.0} MB of prose (~20 KB docs): {:.1} MB/s on one core, {n} detections",
            total as f64 / 1e6,
            total as f64 / 1e6 / secs
        );
    }
    Ok(())
}
