//! The integration tests of `scorch-agent`: one binary (one link), a module per
//! concern.

mod builtin_suite;
mod llm_teacher;
mod oracle_property;
mod python_sandbox;
mod reference_data;
