//! The `scorch` binary's library half: the registry of built-in node kinds. The engine is
//! `scorch-engine`, the SCoRe reporting `scorch-report`.
#![deny(missing_docs)]

pub mod builtin;
