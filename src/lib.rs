//! scorch: workflows of node plugins run as cached DAGs over Parquet tables in object storage.
#![deny(missing_docs)]

pub mod dag;
pub mod error;
pub mod interp;
pub mod spec;
pub mod workflow;
pub mod yaml;
