//! The `rollout` node: a policy (the student checkpoint, the oracle teacher, or an endpoint)
//! solves a tasks table, `samples` times each, at a temperature, within a turn limit. Many
//! trajectories advance in one batch per model call.
#![deny(missing_docs)]

use scorch_agent::answer::{best_f1, math_equal};
use scorch_agent::benchmarks::{answers, kind_of};
use scorch_agent::oracle::Oracle;
use scorch_agent::teacher::Teacher;
use scorch_api::reexports::async_trait;
use scorch_api::reexports::schemars::{self, JsonSchema};
use scorch_api::tables::{Author, StopReason, TableRow, Task, Trajectory};
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, Signature};
use scorch_model::episode::{self, Episode};
use scorch_model::spec::{PolicySpec, SamplingParams, chat_policy, system_for, tool_for};
use serde::{Deserialize, Serialize};

pub use scorch_agent::python::Sandbox;

/// Record in the node's metrics that model-written code ran without the boundary.
pub fn record_sandbox(ctx: &NodeContext, sandbox: Sandbox) {
    if sandbox == Sandbox::None {
        ctx.metric("python_unsandboxed", 1.0);
    }
}

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

/// Whether `answer` solves `task` (exact for the built-in suite; normalised for math;
/// token F1 ≥ 0.5 for QA and search).
pub fn is_correct(task: &Task, answer: Option<&str>) -> bool {
    let Some(a) = answer else { return false };
    if task.suite == "builtin" {
        return a.trim() == task.answer.trim();
    }
    match kind_of(&task.suite) {
        "math" => math_equal(a, &task.answer),
        _ => best_f1(a, &answers(task)) >= 0.5,
    }
}

/// A trajectory row of a finished episode.
pub fn trajectory_of(ep: &Episode, policy: &str, sample: u32) -> Trajectory {
    Trajectory {
        trajectory_id: format!("{}/{policy}/{sample}", ep.task.task_id),
        task_id: ep.task.task_id.clone(),
        policy: policy.to_owned(),
        sample,
        question: ep.task.question.clone(),
        steps: ep.steps.clone(),
        final_answer: ep.final_answer.clone(),
        correct: is_correct(&ep.task, ep.final_answer.as_deref()),
        stop_reason: ep.stop.unwrap_or(StopReason::TurnLimit),
        turns: ep.steps.len() as u32,
        metadata: "{}".into(),
    }
}

/// How to roll out: the policy and its settings.
#[derive(Debug, Clone)]
pub struct RolloutSpec<'a> {
    /// Which policy.
    pub policy: &'a PolicySpec,
    /// Samples per task.
    pub samples: u32,
    /// Sampling settings.
    pub sampling: &'a SamplingParams,
    /// Most turns per episode; `None`: each task's own limit.
    pub turn_limit: Option<u32>,
    /// The student checkpoint, for `policy: student`.
    pub model_dir: Option<&'a std::path::Path>,
    /// `auto`, `cpu` or `cuda`.
    pub device: &'a str,
    /// Sampler seed.
    pub seed: u64,
    /// The python tool's boundary.
    pub sandbox: Sandbox,
}

/// Run the policy on every task, `samples` times. Returns the trajectories and (prompt,
/// completion) tokens spent.
pub async fn rollouts(
    r: &RolloutSpec<'_>,
    tasks: &[Task],
) -> Result<(Vec<Trajectory>, (u64, u64)), PluginError> {
    let fail = |e: scorch_model::ModelError| PluginError::failed(e.to_string());
    let samples = r.samples.max(1);
    let mut out = Vec::new();
    let mut tokens = (0, 0);
    match chat_policy(r.policy, r.model_dir, r.device).map_err(fail)? {
        None => {
            for t in tasks {
                let (demo, cost) = Oracle
                    .demonstrate(t)
                    .await
                    .map_err(|e| PluginError::failed(e.0))?;
                tokens.0 += cost.prompt_tokens;
                tokens.1 += cost.completion_tokens;
                for sample in 0..samples {
                    let mut ep = Episode::new(
                        t.clone(),
                        tool_for(t, r.sandbox).map_err(fail)?,
                        r.turn_limit,
                    );
                    // The oracle plays under the same turn limit as any policy: a
                    // demonstration longer than the limit ends at it, unanswered.
                    let fits = demo.steps.len() <= ep.turn_limit as usize;
                    ep.steps = demo.steps.clone();
                    ep.steps.truncate(ep.turn_limit as usize);
                    ep.final_answer = demo.final_answer.clone().filter(|_| fits);
                    ep.stop = Some(if ep.final_answer.is_some() {
                        StopReason::FinalAnswer
                    } else {
                        StopReason::TurnLimit
                    });
                    out.push(trajectory_of(&ep, "oracle", sample));
                }
            }
        }
        Some(policy) => {
            let mut slots: Vec<Option<Episode>> =
                Vec::with_capacity(tasks.len() * samples as usize);
            for t in tasks {
                for _ in 0..samples {
                    slots.push(Some(Episode::new(
                        t.clone(),
                        tool_for(t, r.sandbox).map_err(fail)?,
                        r.turn_limit,
                    )));
                }
            }
            // Episodes of one suite share a system prompt; each group is one batch.
            let systems: Vec<&str> = tasks
                .iter()
                .flat_map(|t| std::iter::repeat_n(system_for(&t.task_id), samples as usize))
                .collect();
            let mut groups = systems.clone();
            groups.sort_unstable();
            groups.dedup();
            for system in groups {
                let idx: Vec<usize> = (0..slots.len()).filter(|&i| systems[i] == system).collect();
                let mut batch: Vec<Episode> = idx.iter().filter_map(|&i| slots[i].take()).collect();
                let t = episode::run(
                    policy.as_ref(),
                    &mut batch,
                    system,
                    &r.sampling.options(r.seed),
                    Author::Student,
                )
                .await
                .map_err(fail)?;
                tokens.0 += t.0;
                tokens.1 += t.1;
                for (i, ep) in idx.into_iter().zip(batch) {
                    slots[i] = Some(ep);
                }
            }
            for (i, ep) in slots.iter().enumerate() {
                if let Some(ep) = ep {
                    out.push(trajectory_of(ep, policy.name(), i as u32 % samples));
                }
            }
        }
    }
    Ok((out, tokens))
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
        ctx.progress().advance(rows.len() as u64);
        ctx.write_rows("trajectories", &rows)
    }
}
