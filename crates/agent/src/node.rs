//! The `tasks` node: a tasks table from the built-in suite or a benchmark file.

use scorch_api::reexports::async_trait;
use scorch_api::reexports::schemars::{self, JsonSchema};
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, Signature};
use scorch_tables::{TableRow, Task};
use serde::{Deserialize, Serialize};

use crate::suite::{Split, tasks};

/// The `tasks` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct TasksPlugin;

/// Params of `tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TasksParams {
    /// `builtin` (the generated suite) or a benchmark JSONL file (relative to the workflow).
    #[serde(default = "builtin")]
    pub source: String,
    /// For the built-in suite: `train`, `test` or `hard`.
    #[serde(default = "train")]
    pub split: String,
    /// How many tasks (for a file: at most this many; 0 = all).
    #[serde(default = "hundred")]
    pub count: u64,
    /// Index of the first task.
    #[serde(default)]
    pub offset: u64,
    /// The suite's seed (the node's own seed when absent).
    #[serde(default)]
    pub suite_seed: Option<u64>,
}

fn builtin() -> String {
    "builtin".into()
}
fn train() -> String {
    "train".into()
}
fn hundred() -> u64 {
    100
}

#[async_trait]
impl Plugin for TasksPlugin {
    type Params = TasksParams;
    fn kind(&self) -> &'static str {
        "tasks"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "A tasks table: the built-in arithmetic suite, or a benchmark file"
    }
    fn signature(&self, p: &TasksParams) -> Result<Signature, ParamError> {
        if p.offset.checked_add(p.count).is_none() {
            return Err(ParamError::new(
                "count",
                format!(
                    "offset {} plus count {} runs past the last task number (2^64 - 1)",
                    p.offset, p.count
                ),
            ));
        }
        if p.source == "builtin" && Split::parse(&p.split).is_none() {
            return Err(
                ParamError::new("split", format!("unknown split `{}`", p.split))
                    .with_hint("use train, test or hard"),
            );
        }
        let signature = Signature::new().output("tasks", Task::port());
        Ok(if p.source == "builtin" {
            signature
        } else {
            signature.reads_local("source", &p.source)
        })
    }
    async fn run(&self, p: TasksParams, ctx: &NodeContext) -> Result<(), PluginError> {
        let rows = if p.source == "builtin" {
            let split = Split::parse(&p.split).ok_or_else(|| PluginError::failed("bad split"))?;
            tasks(p.suite_seed.unwrap_or(ctx.seed()), split, p.offset, p.count)
        } else {
            let path = ctx.workflow_dir().join(&p.source);
            let all =
                crate::benchmarks::load(&path).map_err(|e| PluginError::failed(e.to_string()))?;
            let take = if p.count == 0 {
                usize::MAX
            } else {
                p.count as usize
            };
            all.into_iter().skip(p.offset as usize).take(take).collect()
        };
        ctx.metric("tasks", rows.len() as f64);
        ctx.write_rows("tasks", &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scorch_api::conformance::{Case, check_plugin};

    #[tokio::test]
    async fn tasks_conforms() {
        let r = check_plugin(
            &TasksPlugin,
            &[Case::new("train", serde_json::json!({"count": 5}))],
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
    }

    #[test]
    fn task_numbers_past_the_last_are_refused_at_count() {
        use scorch_api::DynPlugin;
        let max = u64::MAX;
        let refused = TasksPlugin.check(&serde_json::json!({"offset": max, "count": 1}));
        assert_eq!(refused.err().map(|e| e.path), Some("count".to_owned()));
        let last = TasksPlugin.check(&serde_json::json!({"offset": max - 1, "count": 1}));
        assert!(last.is_ok());
    }
}
