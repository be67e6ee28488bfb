//! The teacher: demonstrate a solution, find the student's earliest wrong step, write one
//! replacement step. Every call reports what it cost.

use async_trait::async_trait;
use scorch_tables::{Step, Task};
use serde::{Deserialize, Serialize};

/// What a teacher call cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Model calls.
    pub calls: u64,
    /// Tokens read.
    pub prompt_tokens: u64,
    /// Tokens written.
    pub completion_tokens: u64,
}

impl std::ops::AddAssign for Cost {
    fn add_assign(&mut self, o: Self) {
        self.calls += o.calls;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
    }
}

/// The judge's finding on a trajectory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Every step is right and the final answer is right.
    Correct,
    /// The earliest wrong step, 1-based (the plan is 1), with the judge's analysis.
    Wrong {
        /// Step index.
        step: u32,
        /// Why.
        analysis: String,
    },
    /// The trajectory fails but the judge cannot say where (a "hard sample").
    CannotLocate {
        /// What the judge said.
        analysis: String,
    },
}

/// A teacher failure (an unreachable endpoint, a task it cannot handle).
#[derive(Debug, Clone, thiserror::Error)]
#[error("teacher: {0}")]
pub struct TeacherError(pub String);

/// A node that fails on a teacher error fails with it as its source.
impl From<TeacherError> for scorch_api::PluginError {
    fn from(e: TeacherError) -> Self {
        Self::failed(e.0.clone()).with_source(e)
    }
}

/// A teacher's whole solution of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demonstration {
    /// Plan first, observations filled in.
    pub steps: Vec<Step>,
    /// The final answer, if it gave one.
    pub final_answer: Option<String>,
}

/// The three things SCoRe asks of a teacher.
#[async_trait]
pub trait Teacher: Send + Sync {
    /// A name for records (`oracle`, a model name).
    fn name(&self) -> &str;
    /// Solve `task` from scratch.
    async fn demonstrate(&self, task: &Task) -> Result<(Demonstration, Cost), TeacherError>;
    /// Judge a trajectory's steps (observations included).
    async fn judge(&self, task: &Task, steps: &[Step]) -> Result<(Verdict, Cost), TeacherError>;
    /// Write exactly one step to replace `wrong`, continuing from the verified `prefix`.
    /// The step comes without its observation: the caller executes it.
    async fn repair(
        &self,
        task: &Task,
        prefix: &[Step],
        wrong: &Step,
        analysis: &str,
    ) -> Result<(Step, Cost), TeacherError>;
    /// Whether two candidate steps after `prefix` are equivalent (for the key-step reward).
    async fn equivalent(
        &self,
        task: &Task,
        prefix: &[Step],
        a: &Step,
        b: &Step,
    ) -> Result<(bool, Cost), TeacherError>;
}

/// Rough token count of text: words and punctuation marks.
pub fn count_tokens(text: &str) -> u64 {
    let mut n = 0u64;
    let mut in_word = false;
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' {
            if !in_word {
                n += 1;
                in_word = true;
            }
        } else {
            in_word = false;
            if !c.is_whitespace() {
                n += 1;
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens() {
        assert_eq!(super::count_tokens("Code: 3 * 5"), 5);
        assert_eq!(super::count_tokens(""), 0);
    }
}
