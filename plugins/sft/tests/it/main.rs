//! The integration tests of `scorch-sft`: one binary (one link), a module per
//! concern.

mod conformance;
