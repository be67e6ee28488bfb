//! The `correct` node kind: its params and ports (the work is in `plugins/correct`).

use schemars::JsonSchema;
use scorch_agent::python::Sandbox;
use scorch_api::tables::{RepairRecord, TableRow, Task, Trajectory};
use scorch_api::{Declaration, ParamError, Signature};

use crate::policy::{Endpoint, PolicySpec, SamplingParams};
use serde::{Deserialize, Serialize};

/// The `correct` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Correct;

/// Which teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TeacherSpec {
    /// The exact oracle of the built-in suite.
    Oracle,
    /// An LLM behind an OpenAI-compatible endpoint, with optional prompt templates.
    Endpoint(Endpoint),
}

/// Params of `correct`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectParams {
    /// The student (default: the checkpoint connected as `model`).
    #[serde(default = "student")]
    pub student: PolicySpec,
    /// The teacher.
    #[serde(default = "oracle")]
    pub teacher: TeacherSpec,
    /// Repairs per trajectory at most.
    #[serde(default = "three")]
    pub max_repairs: u32,
    /// The student's sampling.
    #[serde(default)]
    pub sampling: SamplingParams,
    /// Most turns per episode (the plan included); unset, each task's own limit (a built-in
    /// task: its op count + 3; other suites: 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_limit: Option<u32>,
    /// `auto`, `cpu` or `cuda`.
    #[serde(default = "crate::policy::default_device")]
    pub device: String,
    /// The python tool's boundary: `bwrap` (the default; where it cannot be set up, the
    /// tool refuses to run) or `none` (no boundary; the node records `python_unsandboxed`).
    #[serde(default, skip_serializing_if = "Sandbox::is_default")]
    pub sandbox: Sandbox,
}

fn student() -> PolicySpec {
    PolicySpec::Student
}
fn oracle() -> TeacherSpec {
    TeacherSpec::Oracle
}
fn three() -> u32 {
    3
}

impl Declaration for Correct {
    type Params = CorrectParams;
    fn kind(&self) -> &'static str {
        "correct"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "Mentored solving: the teacher repairs the student's earliest wrong step, the student continues"
    }
    fn signature(&self, p: &CorrectParams) -> Result<Signature, ParamError> {
        if p.student == PolicySpec::Oracle {
            return Err(ParamError::new(
                "student",
                "the oracle is a teacher; the student is `student` or an endpoint",
            ));
        }
        Ok(p.student.add_inputs(
            Signature::new()
                .input("tasks", Task::port())
                .output("trajectories", Trajectory::port())
                .output("repairs", RepairRecord::port()),
        ))
    }
}
