//! strata-pipeline: the runtime every job runs on.
//!
//! It owns the epoch loop (read -> execute -> stage -> publish -> commit), the
//! checkpoint (offset log, manifests, commit markers), the [`Source`] and [`Sink`]
//! traits that connectors implement, the bad-data policy, metrics and progress.
//! It knows nothing about SQL text, connector option names or model providers.

pub mod bad_data;
pub mod checkpoint;
pub mod error;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod storage;
pub mod table;
pub mod telemetry;
pub mod window;

pub use bad_data::{BadDataPolicy, BadRecord};
pub use error::{PipelineError, Result};
pub use runtime::{dry_run, run, InsertBinding, Job, Shutdown, SourceBinding};
pub use sink::{EpochWriter, SideOutput, Sink, SinkStats, StagedEpoch};
pub use source::{CommitHook, EpochLimits, Source, SourceEpoch, SplitRange};
pub use table::EpochTable;
pub use window::WindowBinding;
