//! Tokenizers for counting and chunking: loading, model-path resolution, a process-wide cache.
//!
//! Owns how a model name or path becomes a `tokenizer.json` ([`resolve_tokenizer_path`]),
//! loading it with counting-friendly settings ([`TextTokenizer`]) and sharing loaded tokenizers
//! across the process ([`load_tokenizer`]). It never downloads anything: model directories come
//! from `scripts/fetch_models.sh`.
//!
//! Counting convention: token counts exclude special tokens (`[CLS]`, `[SEP]`). A chunk of
//! `max_tokens` tokens therefore needs `max_tokens + 2` positions in the embedding model, which
//! is what a user sizing chunks against a context window of, say, 256 word pieces expects to
//! subtract once, not per chunk. The `tokenizer.json` of all-MiniLM-L6-v2 enables padding and
//! truncation at 128 tokens; both are switched off here, otherwise every count would read 128.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tokenizers::{Encoding, Tokenizer};

use crate::error::{OperatorError, Result};

/// Directory name (under the models directory) of the default tokenizer: the local embedding
/// model's.
pub const DEFAULT_TOKENIZER_MODEL: &str = "all-MiniLM-L6-v2";

/// File name of a Hugging Face tokenizer inside a model directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A loaded tokenizer with padding and truncation off.
#[derive(Debug)]
pub struct TextTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

impl TextTokenizer {
    /// Load a `tokenizer.json`, switching padding and truncation off.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(OperatorError::TokenizerNotFound {
                path: path.to_path_buf(),
            });
        }
        let mut inner = Tokenizer::from_file(path).map_err(|e| OperatorError::Asset {
            what: "tokenizer".into(),
            path: path.display().to_string(),
            message: format!("{e} (re-run scripts/fetch_models.sh if the file is damaged)"),
        })?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| OperatorError::Asset {
                what: "tokenizer".into(),
                path: path.display().to_string(),
                message: format!("cannot switch truncation off: {e}"),
            })?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// The file this tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tokens in `text`, without special tokens.
    pub fn count(&self, text: &str) -> Result<usize> {
        if text.is_empty() {
            return Ok(0);
        }
        // `encode_fast` skips offset tracking, which counting does not need.
        let enc = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| self.tokenize_error(e))?;
        Ok(enc.len())
    }

    /// Encode `text` without special tokens, with byte offsets into `text` and word ids.
    pub fn encode(&self, text: &str) -> Result<Encoding> {
        self.inner
            .encode(text, false)
            .map_err(|e| self.tokenize_error(e))
    }

    fn tokenize_error(&self, e: tokenizers::Error) -> OperatorError {
        OperatorError::Tokenize {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

/// Where a model spec's `tokenizer.json` lives.
///
/// - `None`: the default tokenizer, `<models_dir>/all-MiniLM-L6-v2/tokenizer.json`.
/// - a path ending in `.json`: that file.
/// - anything else: a model directory holding `tokenizer.json`.
///
/// Relative paths resolve against `models_dir` (`$STRATA_MODELS`, else `./models`); when
/// nothing exists there but the relative path exists from the working directory (e.g.
/// `models/all-MiniLM-L6-v2`), that one is used.
pub fn resolve_tokenizer_path(models_dir: &Path, model: Option<&str>) -> PathBuf {
    let spec = Path::new(model.unwrap_or(DEFAULT_TOKENIZER_MODEL));
    let to_file = |p: PathBuf| {
        if p.extension().is_some_and(|e| e == "json") {
            p
        } else {
            p.join(TOKENIZER_FILE)
        }
    };
    if spec.is_absolute() {
        return to_file(spec.to_path_buf());
    }
    let under_models = to_file(models_dir.join(spec));
    if !under_models.exists() {
        let from_cwd = to_file(spec.to_path_buf());
        if model.is_some() && from_cwd.is_file() {
            return from_cwd;
        }
    }
    under_models
}

/// Load (once per process) the tokenizer at `path`; later calls share it.
pub fn load_tokenizer(path: &Path) -> Result<Arc<TextTokenizer>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<TextTokenizer>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = lock(cache).get(path) {
        return Ok(Arc::clone(t));
    }
    // Loaded outside the lock: parsing a tokenizer takes tens of milliseconds. Two threads may
    // race to load the same file; the first insert wins and both get equal tokenizers.
    let loaded = Arc::new(TextTokenizer::from_file(path)?);
    Ok(Arc::clone(
        lock(cache).entry(path.to_path_buf()).or_insert(loaded),
    ))
}

/// Resolve and load a model's tokenizer (see [`resolve_tokenizer_path`]).
pub fn tokenizer_for(models_dir: &Path, model: Option<&str>) -> Result<Arc<TextTokenizer>> {
    load_tokenizer(&resolve_tokenizer_path(models_dir, model))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map half-updated (single insert).
    m.lock().unwrap_or_else(|p| p.into_inner())
}
