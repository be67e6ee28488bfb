//! scorch: workflows of node plugins run as cached DAGs over Parquet tables in object storage.
#![deny(missing_docs)]

pub mod builtin;
pub mod cache;
pub mod compare;
pub mod dag;
pub mod error;
pub mod interp;
pub mod lease;
pub mod plan;
pub mod plots;
pub mod progress;
pub mod record;
pub mod run;
pub mod spec;
pub mod stats;
pub mod store;
pub mod summary;
pub mod workflow;
pub mod yaml;
