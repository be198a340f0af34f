//! Connector errors. Option errors name the option so the SQL layer can point at
//! its line and column in the job file.

/// Result alias for connectors.
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// Errors raised while building or running connectors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// An option the connector does not know.
    #[error("unknown option '{option}' for connector '{connector}'; known options: {known}")]
    UnknownOption {
        connector: String,
        option: String,
        known: String,
    },
    /// A required option is missing.
    #[error("connector '{connector}' requires option '{option}': {hint}")]
    MissingOption {
        connector: String,
        option: String,
        hint: String,
    },
    /// An option has a value that cannot be used.
    #[error("invalid value '{value}' for option '{option}': {message}")]
    InvalidOption {
        option: String,
        value: String,
        message: String,
    },
    /// The declared columns do not fit the connector or its data.
    #[error("{0}")]
    Schema(String),
    /// The connector cannot be used this way (e.g. a sink-only connector as source).
    #[error("{0}")]
    Unsupported(String),
    /// Errors from the runtime (storage, I/O).
    #[error(transparent)]
    Pipeline(#[from] strata_pipeline::PipelineError),
}
