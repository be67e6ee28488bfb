//! The integration tests of `scorch-rollout`: one binary (one link), a module per
//! concern.

mod conformance;
