//! strata-operators: the functions jobs call from SQL, as DataFusion UDFs.
//!
//! Owns the function registry ([`functions`], [`register_all`]), tokenizers and
//! model assets. Knows nothing of the runtime, connectors or epochs.

pub mod chunk;
pub mod error;
pub mod models;
pub mod pii;
pub mod registry;
pub mod tokenizer;
pub mod udfs;

pub use chunk::{chunk_text, chunk_texts, Chunk, ChunkMode, ChunkOptions};
pub use error::{OperatorError, Result};
pub use registry::{functions, register_all, OperatorConfig};
pub use tokenizer::{load_tokenizer, resolve_tokenizer_path, tokenizer_for, TextTokenizer};
