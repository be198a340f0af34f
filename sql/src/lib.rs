//! strata-sql: being written.
