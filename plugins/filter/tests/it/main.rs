//! The integration tests of `scorch-filter`: one binary (one link), a module per
//! concern.

mod conformance;
