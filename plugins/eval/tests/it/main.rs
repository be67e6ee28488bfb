//! The integration tests of `scorch-eval`: one binary (one link), a module per
//! concern.

mod conformance;
