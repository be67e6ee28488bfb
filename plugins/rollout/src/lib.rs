//! The `rollout` node: a policy (the student checkpoint, the oracle teacher, or an endpoint)
//! solves a tasks table, `samples` times each, at a temperature, within a turn limit. Many
//! trajectories advance in one batch per model call.
#![deny(missing_docs)]

use scorch_api::reexports::async_trait;
use scorch_api::reexports::schemars::{self, JsonSchema};
use scorch_api::tables::{TableRow, Task, Trajectory};
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, Signature};
use scorch_model::spec::{PolicySpec, SamplingParams};
use serde::{Deserialize, Serialize};

use scorch_agent::python::Sandbox;
use scorch_model::rollouts::{RolloutSpec, rollouts};
use scorch_model::spec::record_sandbox;

/// The `rollout` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rollout;

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
    /// Most turns per episode (the plan included); unset, each task's own limit (a built-in
    /// task: its op count + 3; other suites: 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_limit: Option<u32>,
    /// `auto`, `cpu` or `cuda`.
    #[serde(default = "scorch_model::spec::default_device")]
    pub device: String,
    /// Keep only correct trajectories.
    #[serde(default)]
    pub only_correct: bool,
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

#[async_trait]
impl Plugin for Rollout {
    type Params = RolloutParams;
    fn kind(&self) -> &'static str {
        "rollout"
    }
    fn version(&self) -> &'static str {
        "1"
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
    async fn run(&self, p: RolloutParams, ctx: &NodeContext) -> Result<(), PluginError> {
        let tasks: Vec<Task> = ctx.read_rows("tasks").await?;
        ctx.progress()
            .set_total(tasks.len() as u64 * u64::from(p.samples));
        let model = ctx.optional_blobs("model")?;
        let spec = RolloutSpec {
            policy: &p.policy,
            samples: p.samples,
            sampling: &p.sampling,
            turn_limit: p.turn_limit,
            model_dir: model.as_deref(),
            device: &p.device,
            seed: ctx.seed(),
            sandbox: p.sandbox,
            progress: ctx.progress(),
        };
        record_sandbox(ctx, p.sandbox);
        let (mut rows, tokens) = rollouts(&spec, &tasks).await?;
        ctx.check_cancelled()?;
        let correct = rows.iter().filter(|t| t.correct).count();
        ctx.metric("success", correct as f64 / rows.len().max(1) as f64);
        ctx.metric("prompt_tokens", tokens.0 as f64);
        ctx.metric("completion_tokens", tokens.1 as f64);
        if p.only_correct {
            rows.retain(|t| t.correct);
        }
        ctx.write_rows("trajectories", &rows)
    }
}
