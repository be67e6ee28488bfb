//! The `eval` node: a policy on held-out tasks → accuracy per suite and split, pass@k, token
//! F1 for QA, turns and tokens used.
#![deny(missing_docs)]

use std::collections::BTreeMap;

use scorch_agent::answer::best_f1;
use scorch_agent::benchmarks::{answers, kind_of};
use scorch_api::reexports::async_trait;
use scorch_api::{DeclaredPlugin, NodeContext, PluginError};
use scorch_kinds::eval::EvalParams;
use scorch_model::rollouts::{RolloutSpec, rollouts};
use scorch_model::spec::record_sandbox;
use scorch_tables::{EvalResult, Task, Trajectory};

/// The `eval` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Eval;

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
impl DeclaredPlugin for Eval {
    type Declared = scorch_kinds::Eval;
    async fn run(&self, p: EvalParams, ctx: &NodeContext) -> Result<(), PluginError> {
        let tasks: Vec<Task> = ctx.read_rows("tasks").await?;
        let model = ctx.optional_blobs("model")?;
        let base = ctx.optional_blobs("base")?;
        ctx.progress()
            .set_total(tasks.len() as u64 * u64::from(p.samples.max(1)));
        let spec = RolloutSpec {
            policy: &p.policy,
            samples: p.samples,
            sampling: &p.sampling,
            turn_limit: p.turn_limit,
            model_dir: model.as_deref(),
            base_dir: base.as_deref(),
            device: &p.device,
            seed: ctx.seed(),
            sandbox: p.sandbox,
            progress: ctx.progress(),
            tool_workers: p.tool_workers,
            journal: ctx.state_store().map(|s| s.journal()),
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
