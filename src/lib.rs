//! scorch: workflows of node plugins run as cached DAGs over Parquet tables in object storage.
#![deny(missing_docs)]

pub mod yaml;
