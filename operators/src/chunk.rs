//! Token-bounded text chunking: the algorithm behind `chunk_text`.
//!
//! Owns how a document is cut into chunks of at most `max_tokens` tokens, with optional
//! overlap, preferring semantic boundaries. It knows nothing of Arrow or SQL (see
//! `udfs::chunk_text` for the UDF).
//!
//! # Why not the `text-splitter` crate
//!
//! `text-splitter` (and LangChain) re-tokenize candidate pieces many times per document while
//! they search for the largest piece that fits: a binary search over candidate sizes at every
//! semantic level. WordPiece tokenization runs at a few MB/s per core, so those repeated passes
//! dominate, and the 3x-over-LangChain target is out of reach that way. `text-splitter` 0.33
//! also pins `tokenizers` 0.23 with the C `onig` regex backend. Here every document is
//! tokenized **once**, with offsets; split points are chosen among token boundaries, ranked
//! by the text between the two tokens:
//!
//! | level | boundary |
//! |---|---|
//! | 6..=11 | (markdown mode) before a heading, `#` = 11 ... `######` = 6 |
//! | 5 | (markdown mode) before a code fence or thematic break |
//! | 4 | paragraph: a blank line |
//! | 3 | line break |
//! | 2 | sentence end (`.`, `!`, `?`, `;`, CJK full stops) followed by whitespace |
//! | 1 | whitespace between words |
//! | 0 | between two pre-tokenized words not separated by whitespace (punctuation, CJK) |
//! | -1 | inside a word (between word pieces) |
//!
//! A chunk starts at a boundary and ends at the farthest boundary of the highest level found
//! among those it can reach within `max_tokens` tokens: paragraphs are merged while they fit,
//! a paragraph too long is cut at its last line break that fits, and so on down to words —
//! the result LangChain's recursive splitter gives. A chunk's token count is the number of
//! tokens of the document's encoding it spans. That equals the count of the chunk tokenized
//! alone as long as both ends lie between pre-tokenized words (BERT's normalizer and
//! pre-tokenizer work per character and per word); when an end lies inside a word (a word
//! longer than `max_tokens` tokens) the chunk is re-tokenized alone and shrunk until it fits.
//!
//! # Offsets and coverage
//!
//! The cut between two tokens is placed after any non-whitespace characters that follow the
//! first token (characters the normalizer drops, such as variation selectors or zero-width
//! joiners), so consecutive chunk spans tile the whole input and every non-whitespace
//! character lands in a chunk. Each chunk's text is its span with surrounding whitespace
//! trimmed; offsets are Unicode code points, end exclusive.

use rayon::prelude::*;
use tokenizers::Encoding;

use crate::error::{OperatorError, Result};
use crate::tokenizer::TextTokenizer;

/// How boundaries are ranked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ChunkMode {
    /// Paragraphs > lines > sentences > words.
    #[default]
    Recursive,
    /// Like `Recursive`, with markdown headings (by depth), code fences and thematic breaks
    /// ranked above paragraphs.
    Markdown,
}

impl std::str::FromStr for ChunkMode {
    type Err = OperatorError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "recursive" => Ok(Self::Recursive),
            "markdown" => Ok(Self::Markdown),
            other => Err(OperatorError::InvalidArgument {
                function: "chunk_text",
                message: format!(
                    "unknown mode '{other}': use 'recursive' (the default) or 'markdown'"
                ),
            }),
        }
    }
}

/// Validated chunking options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkOptions {
    max_tokens: usize,
    overlap_tokens: usize,
    mode: ChunkMode,
}

impl ChunkOptions {
    /// `max_tokens` > 0 and `overlap_tokens` < `max_tokens`, else an error saying so.
    pub fn new(max_tokens: i64, overlap_tokens: i64, mode: ChunkMode) -> Result<Self> {
        let invalid = |message: String| OperatorError::InvalidArgument {
            function: "chunk_text",
            message,
        };
        if max_tokens <= 0 {
            return Err(invalid(format!(
                "max_tokens must be a positive integer, got {max_tokens}"
            )));
        }
        if overlap_tokens < 0 {
            return Err(invalid(format!(
                "overlap_tokens must be >= 0, got {overlap_tokens}"
            )));
        }
        if overlap_tokens >= max_tokens {
            return Err(invalid(format!(
                "overlap_tokens ({overlap_tokens}) must be smaller than max_tokens ({max_tokens}); \
                 use for example an overlap of max_tokens / 8"
            )));
        }
        let max_tokens =
            usize::try_from(max_tokens).map_err(|_| invalid("max_tokens is too large".into()))?;
        let overlap_tokens = usize::try_from(overlap_tokens)
            .map_err(|_| invalid("overlap_tokens is too large".into()))?;
        Ok(Self {
            max_tokens,
            overlap_tokens,
            mode,
        })
    }

    /// Most tokens in one chunk.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// Tokens a chunk may share with the previous one.
    pub fn overlap_tokens(&self) -> usize {
        self.overlap_tokens
    }

    /// Boundary ranking.
    pub fn mode(&self) -> ChunkMode {
        self.mode
    }
}

/// One chunk of a document. Byte offsets slice the input `&str`; char offsets are Unicode
/// code points (what SQL `substr` counts), end exclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Position of the chunk in its document, from 0.
    pub index: usize,
    /// Byte offset of the first byte of the chunk text.
    pub byte_start: usize,
    /// Byte offset just past the chunk text.
    pub byte_end: usize,
    /// Code-point offset of the first character.
    pub start_char: usize,
    /// Code-point offset just past the last character.
    pub end_char: usize,
    /// Tokens in the chunk text (without special tokens).
    pub tokens: usize,
}

impl Chunk {
    /// The chunk's text within its document.
    pub fn text<'a>(&self, doc: &'a str) -> &'a str {
        &doc[self.byte_start..self.byte_end]
    }
}

const LEVEL_MID_WORD: i8 = -1;
const LEVEL_WORD_ADJACENT: i8 = 0;
const LEVEL_WORD: i8 = 1;
const LEVEL_SENTENCE: i8 = 2;
const LEVEL_LINE: i8 = 3;
const LEVEL_PARAGRAPH: i8 = 4;
const LEVEL_MD_BLOCK: i8 = 5;
const LEVEL_MD_HEADING_H6: i8 = 6;

/// Cut `text` into chunks of at most `opts.max_tokens()` tokens of `tokenizer`.
///
/// Empty or whitespace-only text gives no chunks. See the module docs for the guarantees.
pub fn chunk_text(
    tokenizer: &TextTokenizer,
    text: &str,
    opts: &ChunkOptions,
) -> Result<Vec<Chunk>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let encoding = tokenizer.encode(text)?;
    let boundaries = Boundaries::new(text, &encoding, opts.mode);
    let mut out = Vec::new();
    let mut chars = CharCursors::default();
    let mut emit = |span_start: usize, span_end: usize, tokens: usize, out: &mut Vec<Chunk>| {
        let (byte_start, byte_end) = trim_span(text, span_start, span_end);
        if byte_start < byte_end {
            let start_char = chars.start.advance(text, byte_start);
            let end_char = chars.end.advance(text, byte_end);
            out.push(Chunk {
                index: out.len(),
                byte_start,
                byte_end,
                start_char,
                end_char,
                tokens,
            });
        }
    };

    let n = boundaries.token_count();
    if n == 0 {
        // Only characters the tokenizer drops (control characters, ...): one chunk of 0 tokens
        // keeps them covered.
        emit(0, text.len(), 0, &mut out);
        return Ok(out);
    }
    let max = opts.max_tokens;
    let mut start = 0usize; // boundary index where the current chunk starts
    let mut prev_end = 0usize; // boundary index where the previous chunk ended
    loop {
        let lo = start.max(prev_end) + 1; // the chunk must reach past the previous one
        let hi = (start + max).min(n);
        let mut end = if hi == n {
            n
        } else {
            boundaries.best_end(lo, hi)
        };
        let mut tokens = end - start;
        if boundaries.level(start) == LEVEL_MID_WORD || boundaries.level(end) == LEVEL_MID_WORD {
            // A cut inside a word: the pieces may tokenize differently on their own.
            loop {
                tokens = tokenizer.count(boundaries.span_text(text, start, end))?;
                if tokens <= max || end <= lo {
                    break;
                }
                end -= 1;
            }
            if tokens > max {
                // Even one word piece re-tokenizes to more than max_tokens (only possible for
                // tiny max_tokens): fall back to cutting that piece by characters.
                split_by_chars(
                    tokenizer,
                    text,
                    boundaries.cut(start),
                    boundaries.cut(end),
                    max,
                    &mut |s, e, t| emit(s, e, t, &mut out),
                )?;
                if end == n {
                    break;
                }
                prev_end = end;
                start = end;
                continue;
            }
        }
        emit(boundaries.cut(start), boundaries.cut(end), tokens, &mut out);
        if end == n {
            break;
        }
        prev_end = end;
        start = boundaries.overlap_start(start, end, opts.overlap_tokens);
    }
    Ok(out)
}

/// [`chunk_text`] over many texts in parallel on rayon's pool (the global one, or the pool
/// the caller runs in). `None` texts give `None`. This is what the UDF runs per batch: the
/// CPU-bound tokenization happens on rayon's threads, not on the async runtime's workers.
pub fn chunk_texts(
    tokenizer: &TextTokenizer,
    texts: &[Option<&str>],
    opts: &ChunkOptions,
) -> Result<Vec<Option<Vec<Chunk>>>> {
    texts
        .par_iter()
        .map(|t| t.map(|t| chunk_text(tokenizer, t, opts)).transpose())
        .collect()
}

/// Cut `text[from..to]` into pieces of at most `max` tokens, character by character.
fn split_by_chars(
    tokenizer: &TextTokenizer,
    text: &str,
    from: usize,
    to: usize,
    max: usize,
    emit: &mut dyn FnMut(usize, usize, usize),
) -> Result<()> {
    let mut piece_start = from;
    let mut last_fit: Option<(usize, usize)> = None; // (end, tokens)
    let mut pos = from;
    while pos < to {
        let Some(c) = text[pos..].chars().next() else {
            break;
        };
        let next = pos + c.len_utf8();
        let tokens = tokenizer.count(&text[piece_start..next])?;
        if tokens > max {
            match last_fit {
                Some((end, t)) => {
                    emit(piece_start, end, t);
                    piece_start = end;
                    last_fit = None;
                    continue; // retry this character in a new piece
                }
                None => {
                    // A single character over the limit: nothing smaller exists.
                    emit(piece_start, next, tokens);
                    piece_start = next;
                }
            }
        } else {
            last_fit = Some((next, tokens));
        }
        pos = next;
    }
    if let Some((end, t)) = last_fit {
        if end > piece_start {
            emit(piece_start, end, t);
        }
    }
    Ok(())
}

/// Token boundaries of one encoded document: where each cut falls and how good it is.
///
/// Boundary `k` lies between token `k - 1` and token `k`; boundary 0 is the start of the text
/// and boundary `n` its end.
struct Boundaries {
    /// Byte position of each cut, `n + 1` entries, non-decreasing.
    cuts: Vec<usize>,
    /// Level of each boundary (see the module docs), `n + 1` entries.
    levels: Vec<i8>,
}

impl Boundaries {
    fn new(text: &str, enc: &Encoding, mode: ChunkMode) -> Self {
        let offsets = enc.get_offsets();
        let words = enc.get_word_ids();
        let n = offsets.len();
        let bytes = text.as_bytes();
        let mut cuts = Vec::with_capacity(n + 1);
        let mut levels = Vec::with_capacity(n + 1);
        cuts.push(0);
        levels.push(i8::MAX);
        for k in 1..n {
            let prev_end = char_floor(text, offsets[k - 1].1).max(*cuts.last().unwrap_or(&0));
            let next_start = char_floor(text, offsets[k].0).max(prev_end);
            let gap = &text[prev_end..next_start];
            // The cut goes after non-whitespace residue that follows the previous token.
            let ws = gap.find(char::is_whitespace).unwrap_or(gap.len());
            cuts.push(prev_end + ws);
            let newlines = gap.bytes().filter(|&b| b == b'\n').count();
            let level = if newlines >= 2 {
                LEVEL_PARAGRAPH
            } else if newlines == 1 {
                LEVEL_LINE
            } else if ws < gap.len() {
                if ends_sentence(&text[..prev_end]) {
                    LEVEL_SENTENCE
                } else {
                    LEVEL_WORD
                }
            } else if words[k - 1].is_some() && words[k - 1] == words[k] {
                LEVEL_MID_WORD
            } else if ends_cjk_sentence(&text[..prev_end]) {
                LEVEL_SENTENCE
            } else {
                LEVEL_WORD_ADJACENT
            };
            let level = if mode == ChunkMode::Markdown && newlines >= 1 {
                level.max(markdown_level(&bytes[next_start..]))
            } else {
                level
            };
            levels.push(level);
        }
        cuts.push(text.len());
        levels.push(i8::MAX);
        Self { cuts, levels }
    }

    fn token_count(&self) -> usize {
        self.cuts.len() - 1
    }

    fn level(&self, k: usize) -> i8 {
        self.levels[k]
    }

    fn cut(&self, k: usize) -> usize {
        self.cuts[k]
    }

    fn span_text<'a>(&self, text: &'a str, from: usize, to: usize) -> &'a str {
        &text[self.cuts[from]..self.cuts[to]]
    }

    /// The farthest boundary of the highest level in `lo..=hi` (non-empty, `hi < n`).
    fn best_end(&self, lo: usize, hi: usize) -> usize {
        let mut best = hi;
        let mut best_level = i8::MIN;
        // Scanning backwards keeps the farthest boundary on ties.
        for k in (lo..=hi).rev() {
            let l = self.levels[k];
            if l > best_level {
                best_level = l;
                best = k;
            }
        }
        best
    }

    /// Where the chunk after `start..end` starts: the earliest word boundary that leaves at
    /// most `overlap` tokens of `start..end` in it (else the earliest boundary between words),
    /// never inside a word; `end` when no overlap is wanted or possible.
    fn overlap_start(&self, start: usize, end: usize, overlap: usize) -> usize {
        if overlap == 0 {
            return end;
        }
        let from = end.saturating_sub(overlap).max(start + 1);
        let first_at = |min_level: i8| (from..end).find(|&k| self.levels[k] >= min_level);
        first_at(LEVEL_WORD)
            .or_else(|| first_at(LEVEL_WORD_ADJACENT))
            .unwrap_or(end)
    }
}

/// `pos` clamped to `text` and moved back to a character boundary (byte-level tokenizers may
/// report offsets inside a multi-byte character).
fn char_floor(text: &str, pos: usize) -> usize {
    let mut p = pos.min(text.len());
    while !text.is_char_boundary(p) {
        p -= 1;
    }
    p
}

/// Does `before` end with a sentence terminator (possibly followed by closing quotes)?
fn ends_sentence(before: &str) -> bool {
    let mut it = before
        .chars()
        .rev()
        .skip_while(|c| matches!(c, '"' | '\'' | ')' | ']' | '”' | '’' | '»'));
    matches!(
        it.next(),
        Some('.' | '!' | '?' | ';' | '。' | '！' | '？' | '…')
    )
}

/// CJK full stops end sentences without a following space.
fn ends_cjk_sentence(before: &str) -> bool {
    matches!(before.chars().next_back(), Some('。' | '！' | '？' | '；'))
}

/// Level of a boundary that starts a new line at `line` in markdown mode.
fn markdown_level(line: &[u8]) -> i8 {
    let hashes = line.iter().take_while(|&&b| b == b'#').count();
    if (1..=6).contains(&hashes) && matches!(line.get(hashes), Some(b' ' | b'\t') | None) {
        // `#` (h1) ranks highest: 11; `######` (h6): 6.
        return LEVEL_MD_HEADING_H6 + (6 - hashes as i8);
    }
    if line.starts_with(b"```") || line.starts_with(b"~~~") {
        return LEVEL_MD_BLOCK;
    }
    let rule = |c: u8| {
        let marks = line
            .iter()
            .take_while(|&&b| b == c || b == b' ')
            .filter(|&&b| b == c)
            .count();
        let rest = line.iter().find(|&&b| b != c && b != b' ');
        marks >= 3 && matches!(rest, None | Some(b'\n' | b'\r'))
    };
    if rule(b'-') || rule(b'*') || rule(b'_') {
        return LEVEL_MD_BLOCK;
    }
    i8::MIN
}

/// `text[start..end]` without leading and trailing whitespace.
fn trim_span(text: &str, start: usize, end: usize) -> (usize, usize) {
    let span = &text[start..end];
    let trimmed_start = span.len() - span.trim_start().len();
    let trimmed = span.trim();
    (start + trimmed_start, start + trimmed_start + trimmed.len())
}

/// Byte -> code-point conversion for positions that only move forward.
#[derive(Default)]
struct CharCursors {
    start: Cursor,
    end: Cursor,
}

#[derive(Default)]
struct Cursor {
    byte: usize,
    chars: usize,
}

impl Cursor {
    fn advance(&mut self, text: &str, byte: usize) -> usize {
        if byte >= self.byte {
            self.chars += text[self.byte..byte].chars().count();
        } else {
            // Not expected (chunk starts and ends only move forward), but stay correct.
            self.chars -= text[byte..self.byte].chars().count();
        }
        self.byte = byte;
        self.chars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_levels_rank_headings_by_depth() {
        assert_eq!(markdown_level(b"# Title\n"), 11);
        assert_eq!(markdown_level(b"###### Deep"), 6);
        assert_eq!(markdown_level(b"####### not a heading"), i8::MIN);
        assert_eq!(markdown_level(b"#hashtag"), i8::MIN);
        assert_eq!(markdown_level(b"```rust\n"), LEVEL_MD_BLOCK);
        assert_eq!(markdown_level(b"- - -\n"), LEVEL_MD_BLOCK);
        assert_eq!(markdown_level(b"- item"), i8::MIN);
    }

    #[test]
    fn sentence_ends() {
        assert!(ends_sentence("It works."));
        assert!(ends_sentence("He said \"stop!\""));
        assert!(!ends_sentence("e.g"));
        assert!(ends_cjk_sentence("でした。"));
    }

    #[test]
    fn spans_trim_whitespace_and_offsets_snap_to_chars() {
        assert_eq!(trim_span("  ab c \n", 0, 8), (2, 6));
        assert_eq!(trim_span("   ", 0, 3).0, trim_span("   ", 0, 3).1);
        assert_eq!(char_floor("é", 1), 0);
        assert_eq!(char_floor("é", 9), 2);
    }
}
