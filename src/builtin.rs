//! The node kinds built into `scorch`. Kinds that need libtorch (rollout, sft, eval, correct,
//! rl) are declared here (`scorch-kinds`) and run in `scorch-worker`, so that `scorch` itself
//! never loads libtorch.

use std::path::PathBuf;

use scorch_api::Registry;
use scorch_engine::worker::Remote;

/// Every built-in node kind.
pub fn registry() -> Registry {
    let worker = worker_program();
    let score = Registry::new()
        .with(scorch_agent::node::TasksPlugin)
        .with(Remote::new(scorch_kinds::Rollout, worker.clone()))
        .with(Remote::new(scorch_kinds::Sft, worker.clone()))
        .with(Remote::new(scorch_kinds::Eval, worker.clone()))
        .with(Remote::new(scorch_kinds::Correct, worker.clone()))
        .with(Remote::new(scorch_kinds::Rl, worker))
        .with(scorch_filter::Filter)
        .with(scorch_exec::Exec)
        .with(scorch_exec::Folder);
    scorch_demo::register(score)
}

/// The worker binary: `SCORCH_WORKER` if set, else `scorch-worker` beside the running
/// executable, else beside its folder (where cargo puts test binaries).
pub fn worker_program() -> PathBuf {
    if let Some(p) = std::env::var_os("SCORCH_WORKER") {
        return PathBuf::from(p);
    }
    let name = "scorch-worker";
    let exe = std::env::current_exe().ok();
    let dirs = exe
        .iter()
        .flat_map(|e| e.ancestors().skip(1).take(2))
        .map(|d| d.join(name));
    let mut first = None;
    for candidate in dirs {
        if candidate.is_file() {
            return candidate;
        }
        first.get_or_insert(candidate);
    }
    first.unwrap_or_else(|| PathBuf::from(name))
}
