//! The plugins built into the `scorch` binary.

use scorch_api::Registry;

/// Every built-in node kind.
pub fn registry() -> Registry {
    let score = Registry::new()
        .with(scorch_agent::node::TasksPlugin)
        .with(scorch_rollout::Rollout)
        .with(scorch_sft::Sft)
        .with(scorch_eval::Eval)
        .with(scorch_correct::Correct)
        .with(scorch_filter::Filter)
        .with(scorch_rl::Rl)
        .with(scorch_exec::Exec)
        .with(scorch_exec::Folder);
    scorch_demo::register(score)
}
