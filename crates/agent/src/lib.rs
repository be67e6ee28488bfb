//! Agents, tools, tasks and teachers: the data side of SCoRe.
//!
//! The node plugins call this crate for the trajectory format, the tools (`calc`, a sandboxed
//! `python`), the built-in task suite, the teachers (the exact oracle of the built-in suite,
//! and an LLM behind an OpenAI-compatible endpoint), answer checking, and the loaders and
//! importers of benchmark and reference files.
#![deny(missing_docs)]

pub mod answer;
pub mod benchmarks;
pub mod calc;
pub mod export;
pub mod format;
pub mod judge;
pub mod llm;
pub mod node;
pub mod oracle;
pub mod python;
pub mod reference;
pub mod reference_rl;
pub mod suite;
pub mod teacher;
pub mod tool;
pub mod tool_bench;
