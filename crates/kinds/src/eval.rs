//! The `eval` node kind: its params and ports (the work is in `plugins/eval`).

use schemars::JsonSchema;
use scorch_agent::python::Sandbox;
use scorch_api::tables::{EvalResult, TableRow, Task, Trajectory};
use scorch_api::{Declaration, ParamError, Signature};

use crate::policy::{PolicySpec, SamplingParams};
use serde::{Deserialize, Serialize};

/// The `eval` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Eval;

/// Params of `eval`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalParams {
    /// The arm's name in the results.
    pub label: String,
    /// Which policy.
    #[serde(default = "student")]
    pub policy: PolicySpec,
    /// Samples per task (pass@k uses them all).
    #[serde(default = "one")]
    pub samples: u32,
    /// Sampling (greedy by default).
    #[serde(default = "greedy")]
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
fn one() -> u32 {
    1
}
fn greedy() -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        ..SamplingParams::default()
    }
}

impl Declaration for Eval {
    type Params = EvalParams;
    fn kind(&self) -> &'static str {
        "eval"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "Evaluates a policy on tasks: accuracy, pass@k, F1, turns and tokens per suite and split"
    }
    fn signature(&self, p: &EvalParams) -> Result<Signature, ParamError> {
        if p.label.trim().is_empty() {
            return Err(ParamError::new("label", "give the arm a name"));
        }
        Ok(p.policy.add_inputs(
            Signature::new()
                .input("tasks", Task::port())
                .output("results", EvalResult::port())
                .output("trajectories", Trajectory::port()),
        ))
    }
}
