//! The `eval` node kind: its params and ports (the work is in `plugins/eval`).

use schemars::JsonSchema;
use scorch_api::{Declaration, Hardware, ParamError, Signature};
use scorch_tables::{EvalResult, TableRow, Task, Trajectory};
use serde::{Deserialize, Serialize};

use crate::episodes::episode_params;
use crate::policy::{PolicySpec, SamplingParams};

/// The `eval` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Eval;

episode_params! {
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
    }
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
        // 2: each request samples with a seed of its own (the run's seed, the episode's place,
        // the turn): a sampled policy's outputs no longer depend on its batch, and an endpoint
        // is sent a different seed per sample.
        "2"
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
    fn settle(&self, p: &mut EvalParams, hardware: Hardware) {
        if p.policy.uses_device() {
            crate::policy::settle_device(&mut p.device, hardware);
        }
    }
}
