//! Who a node samples from and how: the student checkpoint, the oracle teacher or an
//! OpenAI-compatible endpoint; sampling settings; the device.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    /// Whether this policy runs on the node's device (the student checkpoint does; the oracle
    /// and endpoints do not).
    pub fn uses_device(&self) -> bool {
        matches!(self, Self::Student)
    }

    /// Add the `model` checkpoint input that policy `student` reads (and its optional `base`).
    pub fn add_inputs(&self, sig: scorch_api::Signature) -> scorch_api::Signature {
        match self {
            Self::Student => model_inputs(sig),
            _ => sig,
        }
    }
}

/// The inputs of a node that loads a student: `model`, an HF checkpoint folder or a LoRA
/// adapter folder, and `base`, the folder an adapter was trained on (read only when `model`
/// is an adapter, which records its base's content hash; a different base is an error).
pub fn model_inputs(sig: scorch_api::Signature) -> scorch_api::Signature {
    sig.input("model", scorch_api::PortType::Blobs)
        .optional_input("base", scorch_api::PortType::Blobs)
}

/// Sampling settings in node params: the one sampling type, [`ChatOptions`]
/// (`temperature`, `top_p`, `top_k`, `max_tokens`).
///
/// [`ChatOptions`]: scorch_agent::llm::ChatOptions
pub use scorch_agent::llm::ChatOptions as SamplingParams;

/// Where an endpoint is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Base URL, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The model name the server knows.
    pub model: String,
    /// The environment variable holding the API key (never written to records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per-request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// Retries after a 429, a 5xx or a timeout.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// A folder caching responses by request content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_dir: Option<PathBuf>,
    /// More base URLs serving the same model, a pool with `base_url`: each request goes to
    /// the one with the fewest requests in flight; one that fails is set aside and tried
    /// again later. The response cache and the token counts are the pool's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool: Vec<String>,
}

fn default_concurrency() -> usize {
    16
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    4
}

/// The default `device` of node params: CUDA when present, else the CPU.
pub fn default_device() -> String {
    "auto".into()
}

/// Settle `device: auto` for a node on `hardware` (`cuda` or `cpu`); a named device stays.
pub fn settle_device(device: &mut String, hardware: scorch_api::Hardware) {
    if device == "auto" {
        *device = hardware.device().into();
    }
}

/// An inference server (or a pool of them) that samples `rl`'s rollouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerRollout {
    /// Base URL, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// More servers of the same base: each loads every adapter, and requests go to the one
    /// with the fewest in flight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool: Vec<String>,
    /// The environment variable holding the API key (never written to records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Requests in flight at once.
    #[serde(default = "d_concurrency")]
    pub concurrency: usize,
    /// Per-request timeout in seconds.
    #[serde(default = "d_timeout")]
    pub timeout_s: f64,
    /// A folder the servers can read where each step's adapter is written (default: the
    /// node's scratch folder, which a server on this machine can read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_dir: Option<std::path::PathBuf>,
}

fn d_concurrency() -> usize {
    64
}
fn d_timeout() -> f64 {
    600.0
}

impl ServerRollout {
    /// The endpoint that serves adapter `model`.
    pub fn endpoint(&self, model: &str) -> Endpoint {
        Endpoint {
            base_url: self.base_url.clone(),
            model: model.to_owned(),
            api_key_env: self.api_key_env.clone(),
            concurrency: self.concurrency.max(1),
            timeout_s: self.timeout_s,
            retries: 2,
            cache_dir: None,
            pool: self.pool.clone(),
        }
    }
}
