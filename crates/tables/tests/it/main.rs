//! The integration tests of `scorch-tables`: one binary (one link), a module per
//! concern.

mod common;
mod row_writer;
mod table_writer;
