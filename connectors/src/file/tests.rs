//! Tests of the file source.
