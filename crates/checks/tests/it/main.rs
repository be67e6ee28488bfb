//! The integration tests of `scorch-checks`: one binary (one link), a module per
//! concern.

mod import_cycles;
mod string_errors;
