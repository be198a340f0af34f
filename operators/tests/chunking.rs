//! Invariants of `chunk_text`'s splitter, checked against the real all-MiniLM-L6-v2 tokenizer.

mod common;

use std::collections::BTreeSet;

use strata_operators::{chunk_text, Chunk, ChunkMode, ChunkOptions, OperatorError, TextTokenizer};

use common::{default_tokenizer, models_dir, sample_bodies};

const MULTILINGUAL: &str = "Café crème, naïve façade — Zoë’s résumé.\n\n\
    東京リージョンでの遅延は平均十二ミリ秒でした。模型部署在北京数据中心，延迟很低。\n\
    Emoji: ❤️ 👩‍💻 🇫🇷 🎉 and family 👨‍👩‍👧 done!\n\n\
    Straße, Größe und Maß bleiben unverändert. ¿Cuántos tokens consume cada petición?\r\n\
    supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic\n\n\
    \u{200B}zero\u{200D}width and control\u{0007}chars, tabs\tand   spaces.   ";

/// Check every documented invariant of `chunks` for `text` and return them.
fn check(tok: &TextTokenizer, text: &str, opts: &ChunkOptions) -> Vec<Chunk> {
    let chunks = chunk_text(tok, text, opts).expect("chunking succeeds");
    let chars: Vec<char> = text.chars().collect();
    let mut covered = BTreeSet::new();
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i, "chunk indexes count from 0");
        let t = c.text(text);
        assert!(!t.is_empty(), "no empty chunk");
        assert_eq!(t, t.trim(), "chunk {i} is trimmed");
        // substr(input, start_char + 1, end_char - start_char) == text
        let by_chars: String = chars[c.start_char..c.end_char].iter().collect();
        assert_eq!(by_chars, t, "code-point offsets of chunk {i} give its text");
        let recount = tok.count(t).expect("count");
        assert_eq!(
            c.tokens, recount,
            "chunk {i} reports its token count: {t:?}"
        );
        assert!(
            c.tokens <= opts.max_tokens(),
            "chunk {i} has {} > {} tokens: {t:?}",
            c.tokens,
            opts.max_tokens()
        );
        covered.extend(c.start_char..c.end_char);
        if i > 0 {
            let p = &chunks[i - 1];
            assert!(
                c.start_char >= p.start_char && c.end_char > p.end_char,
                "chunks move forward"
            );
            if opts.overlap_tokens() == 0 {
                assert!(
                    c.start_char >= p.end_char,
                    "no overlap without overlap_tokens"
                );
            } else if c.start_char < p.end_char {
                let shared: String = chars[c.start_char..p.end_char].iter().collect();
                let n = tok.count(&shared).expect("count");
                assert!(
                    n <= opts.overlap_tokens(),
                    "overlap of {n} tokens > {}",
                    opts.overlap_tokens()
                );
            }
        }
    }
    for (i, ch) in chars.iter().enumerate() {
        if !ch.is_whitespace() {
            assert!(
                covered.contains(&i),
                "character {ch:?} at {i} is in no chunk (opts {opts:?})"
            );
        }
    }
    chunks
}

fn opts(max: i64, overlap: i64, mode: ChunkMode) -> ChunkOptions {
    ChunkOptions::new(max, overlap, mode).expect("valid options")
}

#[test]
fn invariants_hold_on_multibyte_text_for_many_sizes() {
    let tok = default_tokenizer();
    for mode in [ChunkMode::Recursive, ChunkMode::Markdown] {
        for (max, overlap) in [
            (1, 0),
            (2, 1),
            (3, 0),
            (5, 2),
            (8, 0),
            (16, 4),
            (32, 8),
            (64, 0),
            (256, 32),
        ] {
            check(&tok, MULTILINGUAL, &opts(max, overlap, mode));
        }
    }
}

#[test]
fn invariants_hold_on_the_sample_corpus() {
    let tok = default_tokenizer();
    let bodies = sample_bodies();
    assert!(bodies.len() >= 100, "the sample corpus has its documents");
    for (i, body) in bodies.iter().take(60).enumerate() {
        let mode = if i % 2 == 0 {
            ChunkMode::Recursive
        } else {
            ChunkMode::Markdown
        };
        check(&tok, body, &opts(64, 8, mode));
        check(&tok, body, &opts(256, 32, mode));
    }
}

#[test]
fn empty_and_blank_text_give_no_chunks() {
    let tok = default_tokenizer();
    for text in ["", " ", "\n\n\t  \r\n"] {
        assert!(chunk_text(&tok, text, &opts(16, 0, ChunkMode::Recursive))
            .expect("ok")
            .is_empty());
    }
}

#[test]
fn text_that_fits_is_one_chunk() {
    let tok = default_tokenizer();
    let chunks = check(
        &tok,
        "  Hello, world!  ",
        &opts(16, 0, ChunkMode::Recursive),
    );
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].text("  Hello, world!  "), "Hello, world!");
    assert_eq!(
        (chunks[0].start_char, chunks[0].end_char, chunks[0].tokens),
        (2, 15, 4)
    );
}

#[test]
fn recursive_mode_prefers_paragraphs_then_lines_then_sentences() {
    let tok = default_tokenizer();
    let para = |w: &str| format!("{w} alpha beta gamma. {w} delta epsilon zeta eta theta.");
    // Paragraphs of 11 tokens: a chunk of 30 holds two whole paragraphs, never a part of one.
    let text = (0..6)
        .map(|i| para(&format!("p{i}")))
        .collect::<Vec<_>>()
        .join("\n\n");
    for c in check(&tok, &text, &opts(30, 0, ChunkMode::Recursive)) {
        let t = c.text(&text);
        assert!(
            t.starts_with('p') && t.ends_with("theta."),
            "chunk is whole paragraphs: {t:?}"
        );
    }
    // One long paragraph of sentences: chunks end at sentence ends.
    let text = (0..12)
        .map(|i| format!("Sentence number {i} talks about tokens and chunks."))
        .collect::<Vec<_>>()
        .join(" ");
    for c in check(&tok, &text, &opts(25, 0, ChunkMode::Recursive)) {
        assert!(
            c.text(&text).ends_with('.'),
            "chunk ends at a sentence end: {:?}",
            c.text(&text)
        );
    }
}

#[test]
fn markdown_mode_starts_chunks_at_headings() {
    let tok = default_tokenizer();
    let mut text = String::from("# Guide\n\nIntro text about the pipeline.\n\n");
    for i in 0..6 {
        text.push_str(&format!(
            "## Section {i}\n\nThe section explains step {i} of the job.\n\nIt has a second paragraph here.\n\n"
        ));
    }
    let md = check(&tok, &text, &opts(40, 0, ChunkMode::Markdown));
    assert!(md.len() > 1);
    for c in &md {
        assert!(
            c.text(&text).starts_with('#'),
            "markdown chunk starts at a heading: {:?}",
            c.text(&text)
        );
    }
    // The recursive mode only sees paragraphs, so some chunk starts in a section's body.
    let rec = check(&tok, &text, &opts(40, 0, ChunkMode::Recursive));
    assert!(
        rec.iter().any(|c| !c.text(&text).starts_with('#')),
        "recursive mode ignores headings"
    );
}

#[test]
fn overlap_repeats_the_end_of_the_previous_chunk() {
    let tok = default_tokenizer();
    let text = (0..200)
        .map(|i| format!("word{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let chunks = check(&tok, &text, &opts(20, 5, ChunkMode::Recursive));
    assert!(chunks.len() > 5);
    for w in chunks.windows(2) {
        assert!(w[1].start_char < w[0].end_char, "chunks overlap");
    }
}

#[test]
fn words_longer_than_max_tokens_are_cut_and_still_fit() {
    let tok = default_tokenizer();
    let text = "supercalifragilisticexpialidocious".repeat(2)
        + " ok "
        + &"ＡＢＣ中文にほんごテキスト".repeat(3);
    for max in [1, 2, 3, 7] {
        check(&tok, &text, &opts(max, 0, ChunkMode::Recursive));
    }
}

#[test]
fn invalid_options_say_what_to_do() {
    let msg = |r: Result<ChunkOptions, OperatorError>| r.expect_err("invalid").to_string();
    assert!(msg(ChunkOptions::new(0, 0, ChunkMode::Recursive))
        .contains("max_tokens must be a positive integer"));
    assert!(msg(ChunkOptions::new(10, 10, ChunkMode::Recursive))
        .contains("must be smaller than max_tokens"));
    assert!(msg(ChunkOptions::new(10, -1, ChunkMode::Recursive))
        .contains("overlap_tokens must be >= 0"));
    let e = "html"
        .parse::<ChunkMode>()
        .expect_err("unknown mode")
        .to_string();
    assert!(e.contains("'recursive'") && e.contains("'markdown'"), "{e}");
}

#[test]
fn token_counts_exclude_special_tokens_and_ignore_padding() {
    // tokenizer.json pads and truncates to 128: counting must switch both off.
    let tok = default_tokenizer();
    assert_eq!(tok.count("Hello, world!").expect("count"), 4);
    assert_eq!(tok.count("").expect("count"), 0);
    let long = "token ".repeat(300);
    assert_eq!(tok.count(&long).expect("count"), 300);
}

#[test]
fn tokenizers_resolve_by_name_dir_and_file() {
    let dir = models_dir();
    let by_name = strata_operators::tokenizer_for(&dir, Some("all-MiniLM-L6-v2")).expect("by name");
    let file = dir.join("all-MiniLM-L6-v2/tokenizer.json");
    let by_file = strata_operators::tokenizer_for(&dir, file.to_str()).expect("by file");
    assert_eq!(
        by_name.count("naïve café").expect("count"),
        by_file.count("naïve café").expect("count")
    );
}

#[test]
fn missing_tokenizer_tells_to_fetch_models() {
    let e = strata_operators::tokenizer_for(std::path::Path::new("/nonexistent/models"), None)
        .expect_err("no such model")
        .to_string();
    assert!(
        e.contains("/nonexistent/models/all-MiniLM-L6-v2/tokenizer.json"),
        "{e}"
    );
    assert!(e.contains("scripts/fetch_models.sh"), "{e}");
}
