//! scorch's engine: workflows of node plugins run as cached DAGs over Parquet tables in
//! object storage. It knows the plugin contract (`scorch-api`) and nothing of machine
//! learning: node kinds come from a [`scorch_api::Registry`] that the binary builds.
#![deny(missing_docs)]

pub mod attempt;
pub mod cache;
pub mod cluster;
pub mod dag;
pub mod error;
pub mod events;
pub mod executor;
pub mod gc;
pub mod interp;
pub mod job;
pub mod layout;
pub mod lease;
pub mod plan;
pub mod progress;
pub mod record;
pub mod run;
pub mod schema;
pub mod slurm;
pub mod spec;
pub mod store;
pub mod worker;
pub mod workflow;
pub mod yaml;
