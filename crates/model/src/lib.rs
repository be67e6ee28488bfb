//! Policies for scorch: a Qwen2-architecture student trained and sampled in Rust with tch,
//! and (in later modules) OpenAI-compatible endpoints behind the same interface.
#![deny(missing_docs)]

pub mod adapters;
pub mod bench;
pub mod bench_rollout;
pub mod chat;
pub mod checkpoint;
pub mod continuous;
pub mod encode;
pub mod endpoint_error;
pub mod episode;
pub mod generate;
pub mod local;
pub mod lora;
pub mod openai;
pub mod policy;
pub mod precision;
pub mod prefix;
pub mod qwen2;
pub mod recompute;
pub mod rollouts;
pub mod scratch;
pub mod serve;
pub mod spec;
pub mod testing;
mod text;
pub mod tokenizer;
pub mod train;

/// Why a model could not be loaded, run or saved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A bad `config.json`.
    #[error("model config: {0}")]
    Config(String),
    /// A checkpoint folder that cannot be read or written.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A tensor operation failed.
    #[error("torch: {0}")]
    Torch(String),
    /// Tokenisation failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A teacher (the oracle or an endpoint) failed.
    #[error(transparent)]
    Teacher(#[from] scorch_agent::teacher::TeacherError),
    /// A policy's endpoint failed.
    #[error("endpoint: {0}")]
    Endpoint(#[from] endpoint_error::EndpointError),
    /// The node's journal of ended episodes could not be written or read.
    #[error("the journal of ended episodes: {0}")]
    Journal(#[source] scorch_api::PluginError),
}

/// A node that fails on a model error fails with it as its source.
impl From<ModelError> for scorch_api::PluginError {
    fn from(e: ModelError) -> Self {
        Self::failed(e.to_string()).with_source(e)
    }
}

impl From<tch::TchError> for ModelError {
    fn from(e: tch::TchError) -> Self {
        Self::Torch(e.to_string())
    }
}

/// Give libtorch's intra-op and inter-op pools `n` threads each: call before any tensor work.
pub fn set_threads(n: i32) {
    tch::set_num_threads(n);
    tch::set_num_interop_threads(n);
}

/// `auto` picks CUDA (with bfloat16) when present, else the CPU (float32).
pub fn pick_device(name: &str) -> Result<(tch::Device, tch::Kind), ModelError> {
    match name {
        "auto" if tch::Cuda::is_available() => Ok((tch::Device::Cuda(0), tch::Kind::BFloat16)),
        "auto" | "cpu" => Ok((tch::Device::Cpu, tch::Kind::Float)),
        "cuda" if tch::Cuda::is_available() => Ok((tch::Device::Cuda(0), tch::Kind::BFloat16)),
        "cuda" => Err(ModelError::Config(
            "device `cuda` asked for, but CUDA is not available".into(),
        )),
        other => Err(ModelError::Config(format!(
            "unknown device `{other}` (auto, cpu, cuda)"
        ))),
    }
}
