//! The `eval` node: a policy on held-out tasks → accuracy per suite and split, pass@k, token
//! F1 for QA, turns and tokens used.
#![deny(missing_docs)]

use std::collections::BTreeMap;

use scorch_agent::answer::best_f1;
use scorch_agent::benchmarks::{answers, kind_of};
use scorch_agent::python::Sandbox;
use scorch_api::reexports::async_trait;
use scorch_api::reexports::schemars::{self, JsonSchema};
use scorch_api::tables::{EvalResult, TableRow, Task, Trajectory};
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, Signature};
use scorch_model::rollouts::{RolloutSpec, rollouts};
use scorch_model::spec::{PolicySpec, SamplingParams, record_sandbox};
use serde::{Deserialize, Serialize};

/// The `eval` plugin.
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
    #[serde(default = "scorch_model::spec::default_device")]
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

/// Distinct final answers over trajectories (a missing answer counts as one value).
fn answer_diversity(ts: &[&Trajectory]) -> f64 {
    let distinct: std::collections::BTreeSet<Option<&str>> = ts
        .iter()
        .map(|t| t.final_answer.as_deref().map(str::trim))
        .collect();
    distinct.len() as f64 / ts.len().max(1) as f64
}

/// Aggregate trajectories into results rows, one per (suite, split).
pub fn summarize(label: &str, tasks: &[Task], trajectories: &[Trajectory]) -> Vec<EvalResult> {
    let by_id: BTreeMap<&str, &Task> = tasks.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let mut groups: BTreeMap<(String, String), Vec<&Trajectory>> = BTreeMap::new();
    for t in trajectories {
        if let Some(task) = by_id.get(t.task_id.as_str()) {
            groups
                .entry((task.suite.clone(), task.split.clone()))
                .or_default()
                .push(t);
        }
    }
    groups
        .into_iter()
        .map(|((suite, split), ts)| {
            let n = ts.len() as u32;
            let correct = ts.iter().filter(|t| t.correct).count() as u32;
            let mut per_task: BTreeMap<&str, bool> = BTreeMap::new();
            for t in &ts {
                *per_task.entry(t.task_id.as_str()).or_default() |= t.correct;
            }
            let f1: f64 = if kind_of(&suite) == "qa" {
                ts.iter()
                    .map(|t| {
                        best_f1(
                            t.final_answer.as_deref().unwrap_or(""),
                            &answers(by_id[t.task_id.as_str()]),
                        )
                    })
                    .sum::<f64>()
                    / f64::from(n.max(1))
            } else {
                0.0
            };
            EvalResult {
                label: label.to_owned(),
                suite,
                split,
                n,
                correct,
                accuracy: f64::from(correct) / f64::from(n.max(1)),
                pass_at_k: per_task.values().filter(|c| **c).count() as f64
                    / per_task.len().max(1) as f64,
                mean_f1: f1,
                mean_turns: ts.iter().map(|t| f64::from(t.turns)).sum::<f64>()
                    / f64::from(n.max(1)),
                mean_tokens: ts
                    .iter()
                    .map(|t| {
                        t.steps
                            .iter()
                            .map(|s| f64::from(s.completion_tokens))
                            .sum::<f64>()
                    })
                    .sum::<f64>()
                    / f64::from(n.max(1)),
                answer_diversity: answer_diversity(&ts),
            }
        })
        .collect()
}

#[async_trait]
impl Plugin for Eval {
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
    async fn run(&self, p: EvalParams, ctx: &NodeContext) -> Result<(), PluginError> {
        let tasks: Vec<Task> = ctx.read_rows("tasks").await?;
        let model = ctx.optional_blobs("model")?;
        ctx.progress()
            .set_total(tasks.len() as u64 * u64::from(p.samples.max(1)));
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
        let (trajectories, _) = rollouts(&spec, &tasks).await?;
        let results = summarize(&p.label, &tasks, &trajectories);
        for r in &results {
            ctx.metric(&format!("accuracy.{}.{}", r.suite, r.split), r.accuracy);
        }
        ctx.write_rows("results", &results)?;
        ctx.write_rows("trajectories", &trajectories)
    }
}
