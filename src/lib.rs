//! The library half of the two binaries: the registry of built-in node kinds (`scorch`), and
//! the commands that need libtorch, which `scorch` hands to `scorch-worker`. The engine is
//! `scorch-engine`, the SCoRe reporting `scorch-report`.
#![deny(missing_docs)]

pub mod builtin;
pub mod exit;
pub mod model_commands;
pub mod start;
