//! Tools: what executes a step's code and returns its observation.

use crate::calc::{self, CalcResult};

/// The result of executing one step's code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// The observation the policy sees next.
    pub observation: String,
    /// Set when the code called `final_answer(...)`.
    pub final_answer: Option<String>,
    /// The code failed (an error, a refusal, a timeout).
    pub failed: bool,
}

/// A tool with per-trajectory state.
pub trait Tool: Send {
    /// Execute one step's code.
    fn execute(&mut self, code: &str) -> ToolOutput;
}

/// The calculator as a tool.
#[derive(Debug, Clone, Copy, Default)]
pub struct CalcTool;

impl Tool for CalcTool {
    fn execute(&mut self, code: &str) -> ToolOutput {
        match calc::run(code) {
            Ok(CalcResult::Value(v)) => ToolOutput {
                observation: v.to_string(),
                final_answer: None,
                failed: false,
            },
            Ok(CalcResult::Final(v)) => ToolOutput {
                observation: v.to_string(),
                final_answer: Some(v.to_string()),
                failed: false,
            },
            Err(e) => ToolOutput {
                observation: e.to_string(),
                final_answer: None,
                failed: true,
            },
        }
    }
}
