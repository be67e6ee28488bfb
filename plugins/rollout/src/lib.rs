//! The `rollout` node: a policy (the student checkpoint, the oracle teacher, or an endpoint)
//! solves a tasks table, `samples` times each, at a temperature, within a turn limit. Many
//! trajectories advance in one batch per model call.
#![deny(missing_docs)]

use scorch_api::reexports::async_trait;
use scorch_api::{DeclaredPlugin, NodeContext, PluginError};
use scorch_kinds::rollout::RolloutParams;
use scorch_tables::Task;

use scorch_model::rollouts::{RolloutSpec, rollouts};
use scorch_model::spec::record_sandbox;

/// The `rollout` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rollout;

#[async_trait]
impl DeclaredPlugin for Rollout {
    type Declared = scorch_kinds::Rollout;
    async fn run(&self, p: RolloutParams, ctx: &NodeContext) -> Result<(), PluginError> {
        let tasks: Vec<Task> = ctx.read_rows("tasks").await?;
        ctx.progress()
            .set_total(tasks.len() as u64 * u64::from(p.samples));
        let model = ctx.optional_blobs("model")?;
        let base = ctx.optional_blobs("base")?;
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
