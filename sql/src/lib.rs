//! strata-sql: the job language.
//!
//! Job files -> `${VAR}` substitution ([`vars`]) -> statements ([`parser`]) ->
//! a validated, runnable job ([`planner`]). Owns positions in plan errors and the
//! SQL-to-Arrow type mapping ([`types`]). Does not execute anything itself.

pub mod athena;
pub mod error;
pub mod parser;
pub mod planner;
pub mod types;
pub mod vars;

pub use error::{Pos, Result, SqlError};
pub use planner::{
    plan_file, plan_query_script, plan_text, CostEstimate, Explain, PlanOptions, PlannedJob,
};
