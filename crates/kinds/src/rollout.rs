//! The `rollout` node kind: its params and ports (the work is in `plugins/rollout`).

use schemars::JsonSchema;
use scorch_api::{Declaration, Hardware, ParamError, Signature};
use scorch_tables::{TableRow, Task, Trajectory};
use serde::{Deserialize, Serialize};

use crate::episodes::episode_params;
use crate::policy::{PolicySpec, SamplingParams};

/// The `rollout` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rollout;

episode_params! {
    /// Params of `rollout`.
    #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RolloutParams {
        /// Which policy.
        #[serde(default = "student")]
        pub policy: PolicySpec,
        /// Samples per task.
        #[serde(default = "one")]
        pub samples: u32,
        /// Sampling settings.
        #[serde(default)]
        pub sampling: SamplingParams,
        /// Keep only correct trajectories.
        #[serde(default)]
        pub only_correct: bool,
    }
}

fn student() -> PolicySpec {
    PolicySpec::Student
}
fn one() -> u32 {
    1
}

impl Declaration for Rollout {
    type Params = RolloutParams;
    fn kind(&self) -> &'static str {
        "rollout"
    }
    fn version(&self) -> &'static str {
        // 2: each request samples with a seed of its own (the run's seed, the episode's place,
        // the turn): a sampled policy's outputs no longer depend on its batch, and an endpoint
        // is sent a different seed per sample.
        "2"
    }
    fn description(&self) -> &'static str {
        "A policy solves a tasks table with tools: trajectories"
    }
    fn signature(&self, p: &RolloutParams) -> Result<Signature, ParamError> {
        if p.samples == 0 {
            return Err(ParamError::new("samples", "at least one sample per task"));
        }
        Ok(p.policy.add_inputs(
            Signature::new()
                .input("tasks", Task::port())
                .output("trajectories", Trajectory::port()),
        ))
    }
    fn settle(&self, p: &mut RolloutParams, hardware: Hardware) {
        if p.policy.uses_device() {
            crate::policy::settle_device(&mut p.device, hardware);
        }
    }
}
