//! Errors of the job language. Plan errors carry the file, line and column of
//! the statement part they are about, and say what to do.

/// Result alias for the SQL layer.
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// Errors raised while reading and planning a job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The job is wrong: bad syntax, unknown option or column, type mismatch.
    #[error("{file}:{line}:{column}: {message}")]
    Plan {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
    /// The job file cannot be read.
    #[error("cannot read job file '{file}': {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A connector could not reach what it needs (storage, network): a runtime
    /// failure of a job that may well be right.
    #[error("table '{table}': {source}")]
    Connect {
        table: String,
        #[source]
        source: strata_connectors::ConnectorError,
    },
    /// Building the runtime failed (storage, checkpoint).
    #[error(transparent)]
    Pipeline(#[from] strata_pipeline::PipelineError),
}

impl SqlError {
    /// Whether this is a plan error (exit code 2) rather than a runtime failure.
    pub fn is_plan_error(&self) -> bool {
        matches!(self, SqlError::Plan { .. } | SqlError::Read { .. })
    }
}

/// A position in the job file (1-based).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    /// Line.
    pub line: u64,
    /// Column.
    pub column: u64,
}

impl Pos {
    /// Build a plan error at this position.
    pub fn error(&self, file: &str, message: impl Into<String>) -> SqlError {
        SqlError::Plan {
            file: file.to_string(),
            line: self.line.max(1),
            column: self.column.max(1),
            message: message.into(),
        }
    }
}

impl From<sqlparser::tokenizer::Location> for Pos {
    fn from(l: sqlparser::tokenizer::Location) -> Self {
        Pos {
            line: l.line,
            column: l.column,
        }
    }
}
