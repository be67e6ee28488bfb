//! The integration tests of `scorch-engine`: one binary (one link), a module per
//! concern.

mod store_conformance;
