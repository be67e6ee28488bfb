//! The integration tests of `scorch-exec`: one binary (one link), a module per
//! concern.

mod conformance;
