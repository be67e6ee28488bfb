//! The contract between the scorch engine and its node plugins.
//!
//! A node plugin is one kind of workflow node (`rollout`, `sft`, `exec`, ...). It declares
//! its kind, a version, typed parameters, and named inputs and outputs ([`Signature`]);
//! the engine type-checks a workflow against those declarations before anything runs,
//! then calls [`Plugin::run`] with a [`NodeContext`] that reads the node's inputs and
//! collects its outputs.
//!
//! Plugin crates depend on this crate alone, never on the engine. Every plugin crate
//! should run the shared [`conformance`] suite in its tests.
#![deny(missing_docs)]

pub mod backoff;
mod column_encoders;
pub mod conformance;
mod context;
mod error;
pub mod hardware;
pub mod memory;
mod parquet_format;
pub mod parquet_io;

mod parquet_sink;
mod plugin;
mod port;
mod progress;
pub mod resume;
mod row_writer;
pub mod tables;
pub mod testing;

pub use context::{InputArtifact, NodeContext, NodeContextParts, TableInput, TableWriter};
pub use error::{ParamError, PluginError, PluginErrorKind};
pub use hardware::Hardware;
pub use memory::{MemoryPlan, MemoryRule, ModelSource};
pub use parquet_sink::{CHUNK_ROWS, ROW_GROUP_BYTES, ROW_GROUP_ROWS, RowGroupLimits};
pub use plugin::{
    Checked, Declaration, DeclaredPlugin, DynPlugin, Plugin, Registry, check_params, did_you_mean,
    parse_checked, settle_params, unknown_field_hint,
};
pub use port::{
    ColumnMismatch, InputPort, LocalFile, OutputPort, PortMismatch, PortType, Processes, Signature,
    TableSpec, check_compatible, check_schema,
};
pub use progress::{Metric, NoProgress, ProgressSink};
pub use row_writer::RowWriter;

/// Re-exports so plugin crates use the same Arrow, Parquet and object_store as the engine.
pub mod reexports {
    pub use arrow_array;
    pub use arrow_schema;
    pub use async_trait::async_trait;
    pub use object_store;
    pub use parquet;
    pub use schemars;
    pub use tokio_util::sync::CancellationToken;
}
