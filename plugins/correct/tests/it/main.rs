//! The integration tests of `scorch-correct`: one binary (one link), a module per
//! concern.

mod common;
mod conformance;
mod dagger;
mod journal;
mod teacher_overlap;
