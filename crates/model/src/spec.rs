//! What node params say about policies: which policy, how to sample, where to run.

use std::path::Path;
use std::sync::Arc;

use schemars::JsonSchema;
use scorch_agent::format::{CALC_SYSTEM, PYTHON_SYSTEM};
use scorch_agent::python::{PythonOptions, PythonTool, Sandbox};
use scorch_agent::tool::{CalcTool, Tool};
use scorch_api::tables::Task;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::checkpoint::Checkpoint;
use crate::local::{LocalModel, SampleOptions};
use crate::openai::{Endpoint, OpenAiClient};
use crate::policy::Policy;

/// Which policy a node samples from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PolicySpec {
    /// The checkpoint connected as the node's `model` input.
    Student,
    /// The built-in suite's exact oracle teacher.
    Oracle,
    /// An OpenAI-compatible endpoint.
    Endpoint(Endpoint),
}

impl PolicySpec {
    /// Add the `model` checkpoint input that policy `student` reads.
    pub fn add_inputs(&self, sig: scorch_api::Signature) -> scorch_api::Signature {
        match self {
            Self::Student => sig.input("model", scorch_api::PortType::Blobs),
            _ => sig,
        }
    }
}

/// Sampling settings in node params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    /// 0: greedy.
    #[serde(default = "one")]
    pub temperature: f64,
    /// Nucleus sampling.
    #[serde(default = "one")]
    pub top_p: f64,
    /// Most tokens per turn.
    #[serde(default = "max_tokens")]
    pub max_tokens: usize,
}

fn one() -> f64 {
    1.0
}
fn max_tokens() -> usize {
    96
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            max_tokens: max_tokens(),
        }
    }
}

impl SamplingParams {
    /// As sampling options with a seed.
    pub fn options(&self, seed: u64) -> SampleOptions {
        SampleOptions {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: 0,
            max_tokens: self.max_tokens,
            stop: Vec::new(),
            seed,
        }
    }
}

/// The default `device` of node params: CUDA when present, else the CPU.
pub fn default_device() -> String {
    "auto".into()
}

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

/// Load a student checkpoint folder on `device` (`auto`, `cpu`, `cuda`).
pub fn load_student(dir: &Path, device: &str) -> Result<LocalModel, ModelError> {
    let (device, kind) = crate::pick_device(device)?;
    Ok(LocalModel::new(
        "student",
        Checkpoint::load(dir, device, kind)?,
    ))
}

/// The chat policy of a spec (`None` for the oracle, which is not a chat model).
pub fn chat_policy(
    spec: &PolicySpec,
    model_dir: Option<&Path>,
    device: &str,
) -> Result<Option<Arc<dyn Policy>>, ModelError> {
    Ok(match spec {
        PolicySpec::Oracle => None,
        PolicySpec::Student => {
            let dir = model_dir.ok_or_else(|| {
                ModelError::Config("policy `student` needs the `model` input".into())
            })?;
            Some(Arc::new(load_student(dir, device)?))
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
