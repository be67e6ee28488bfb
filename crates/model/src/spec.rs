//! From what node params say (`scorch_spec::policy`) to what runs: the policy, its tools, the
//! system prompt.

use std::path::Path;
use std::sync::Arc;

use scorch_agent::format::{CALC_SYSTEM, PYTHON_SYSTEM};
use scorch_agent::python::{PythonOptions, PythonTool, Sandbox};
use scorch_agent::tool::{CalcTool, Tool};
use scorch_spec::policy::PolicySpec;
use scorch_tables::Task;

use crate::ModelError;
use crate::checkpoint::Checkpoint;
use crate::local::{Batching, LocalModel};
use crate::openai::OpenAiClient;
use crate::policy::Policy;

/// The system prompt for a task's suite.
pub fn system_for(task_id: &str) -> &'static str {
    if task_id.starts_with("builtin-") {
        CALC_SYSTEM
    } else {
        PYTHON_SYSTEM
    }
}

/// The tool for a task: the calculator for the built-in suite, Python (inside `sandbox`)
/// otherwise.
pub fn tool_for(task: &Task, sandbox: Sandbox) -> Result<Box<dyn Tool>, ModelError> {
    if task.suite == "builtin" {
        Ok(Box::new(CalcTool))
    } else {
        PythonTool::new(PythonOptions {
            sandbox,
            ..PythonOptions::default()
        })
        .map(|t| Box::new(t) as Box<dyn Tool>)
        .map_err(|e| ModelError::Config(e.0))
    }
}

/// Load a student on `device` (`auto`, `cpu`, `cuda`) to sample from: the checkpoint folder
/// `dir`, or the LoRA adapter there on its `base` (merged into the weights: sampling then
/// costs what the base's does).
pub fn load_student(
    dir: &Path,
    base: Option<&Path>,
    device: &str,
) -> Result<LocalModel, ModelError> {
    let (device, kind) = crate::pick_device(device)?;
    let mut ck = Checkpoint::load_model(dir, base, device, kind)?;
    ck.merge_adapter();
    Ok(LocalModel::new("student", ck).with_batching(Batching::from_env()?))
}

/// The chat policy of a spec (`None` for the oracle, which is not a chat model); a student
/// is the checkpoint at `model_dir` (an adapter: on `base_dir`).
pub fn chat_policy(
    spec: &PolicySpec,
    model_dir: Option<&Path>,
    base_dir: Option<&Path>,
    device: &str,
) -> Result<Option<Arc<dyn Policy>>, ModelError> {
    Ok(match spec {
        PolicySpec::Oracle => None,
        PolicySpec::Student => {
            let dir = model_dir.ok_or_else(|| {
                ModelError::Config("policy `student` needs the `model` input".into())
            })?;
            Some(Arc::new(load_student(dir, base_dir, device)?))
        }
        PolicySpec::Endpoint(e) => Some(Arc::new(
            OpenAiClient::new(e.clone()).map_err(|e| ModelError::Config(e.0))?,
        )),
    })
}

/// Record in the node's metrics that model-written code ran without the boundary.
pub fn record_sandbox(ctx: &scorch_api::NodeContext, sandbox: Sandbox) {
    if sandbox == Sandbox::None {
        ctx.metric("python_unsandboxed", 1.0);
    }
}
