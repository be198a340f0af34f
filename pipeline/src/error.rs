//! The pipeline's error type. Variants carry the context a user needs: which
//! source/sink, where (file and line, topic/partition/offset), and what to do.

use std::path::PathBuf;

/// Result alias for the pipeline crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Errors raised by the runtime and by connectors implementing its traits.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A record could not be decoded and the source's policy is `bad_data = 'fail'`.
    #[error("bad record in source '{source_name}' at {location}: {reason} (set bad_data = 'dead_letter' or 'drop' on the source to keep going)")]
    BadRecord {
        source_name: String,
        location: String,
        reason: String,
    },
    /// Reading from a source failed.
    #[error("source '{name}': {message}")]
    Source { name: String, message: String },
    /// Writing to a sink failed.
    #[error("sink '{name}': {message}")]
    Sink { name: String, message: String },
    /// Object store access failed.
    #[error("object store error at '{location}': {source}")]
    ObjectStore {
        location: String,
        #[source]
        source: object_store::Error,
    },
    /// Local file access failed.
    #[error("I/O error at '{}': {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The checkpoint is unreadable or inconsistent.
    #[error("checkpoint at '{location}': {message}")]
    Checkpoint { location: String, message: String },
    /// A window aggregate's state could not be read, written or split.
    #[error("window state: {message}")]
    Window { message: String },
    /// Query execution failed.
    #[error("query for sink '{sink}' failed: {source}")]
    Execution {
        sink: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// An invalid storage URL or option.
    #[error("invalid storage location '{location}': {message}")]
    Storage { location: String, message: String },
    /// Arrow error while building or converting batches.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

impl PipelineError {
    /// Shorthand for a [`PipelineError::Source`].
    pub fn source(name: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Source {
            name: name.into(),
            message: message.to_string(),
        }
    }
    /// Shorthand for a [`PipelineError::Sink`].
    pub fn sink(name: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self::Sink {
            name: name.into(),
            message: message.to_string(),
        }
    }
}
