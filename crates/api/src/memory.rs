//! Memory plans: what a training node will hold on its device at its peak, estimated from its
//! params and the shape of its model before anything runs, so that a node that cannot fit is
//! refused at load time rather than hours into a run.
//!
//! A kind says where its model's shape comes from ([`ModelSource`]) and, if it trains, how to
//! turn that shape into a plan ([`MemoryRule`]); the engine follows the shapes along the
//! workflow's edges and checks each plan against the node's `gpu_mem_gb` resource and the
//! memory of the device it will run on.

use std::sync::Arc;

use serde::Serialize;

/// Where the shape (HF `config.json`) of the model a node outputs or trains comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// This config (a model built from params).
    Config(serde_json::Value),
    /// `config.json` in a local folder, relative to the workflow file.
    Folder(String),
    /// The model of the first of these inputs that is connected.
    Inputs(Vec<String>),
}

/// One part of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPart {
    /// What it is (`weights`, `activations`, …).
    pub name: String,
    /// Bytes.
    pub bytes: u64,
}

/// A training node's estimated peak memory on its device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPlan {
    /// `cuda` or `cpu`.
    pub device: String,
    /// The parts. The peak is not always their sum (the optimiser's step and the activations
    /// do not live at once): see `peak`.
    pub parts: Vec<MemoryPart>,
    /// The estimated peak, bytes.
    pub peak: u64,
    /// The peak with `gradient_checkpointing` switched the other way.
    pub other_checkpointing: u64,
    /// What would fit when this does not (a smaller setting and its peak).
    pub smaller: Option<String>,
}

impl MemoryPlan {
    /// `12.3 GiB on cuda (weights 1.0, gradients …)`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|p| format!("{} {}", p.name, gib(p.bytes)))
            .collect();
        format!(
            "{} GiB peak on {} ({}; {} GiB with checkpointing {})",
            gib(self.peak),
            self.device,
            parts.join(", "),
            gib(self.other_checkpointing),
            if self.other_checkpointing < self.peak {
                "on"
            } else {
                "off"
            }
        )
    }
}

/// Bytes as GiB with two decimals.
pub fn gib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / (1u64 << 30) as f64)
}

/// Why no memory plan could be made for a node: its model's shape is unknown or unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The node has no model to plan for.
    #[error("`{node}` has no model")]
    NoModel {
        /// The node.
        node: String,
    },
    /// The node's model input is not connected.
    #[error("no model input is connected")]
    NotConnected,
    /// The model folder has no readable `config.json`.
    #[error("no model shape: {path}: {reason}")]
    NoConfig {
        /// The file.
        path: String,
        /// Why it could not be read.
        reason: String,
    },
    /// The config does not say a shape the plan can use.
    #[error("{path}: {reason}")]
    BadConfig {
        /// The file (or `the model's config.json` where it came from a node's params).
        path: String,
        /// What is wrong in it.
        reason: String,
    },
}

/// The function behind a [`MemoryRule`].
type RuleFn = dyn Fn(&serde_json::Value) -> Result<MemoryPlan, PlanError> + Send + Sync;

/// How a kind turns its model's shape (HF `config.json`) into a plan; an `Err` says what in
/// the shape it could not read.
#[derive(Clone)]
pub struct MemoryRule(Arc<RuleFn>);

impl MemoryRule {
    /// The rule `f`.
    pub fn new(
        f: impl Fn(&serde_json::Value) -> Result<MemoryPlan, PlanError> + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(f))
    }
    /// The plan for a model of `config`'s shape.
    pub fn plan(&self, config: &serde_json::Value) -> Result<MemoryPlan, PlanError> {
        (self.0)(config)
    }
}

impl std::fmt::Debug for MemoryRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryRule")
    }
}

/// The memory of the device named `device` on this machine, in bytes: the host's `MemTotal`
/// for `cpu`, the first GPU's total memory as `nvidia-smi` reports it for `cuda`; `None`
/// where it cannot be read.
pub fn device_memory(device: &str) -> Option<u64> {
    match device {
        "cpu" => {
            let text = std::fs::read_to_string("/proc/meminfo").ok()?;
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        }
        "cuda" => {
            let out = std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=memory.total", "--format=csv,noheader,nounits"])
                .output()
                .ok()?;
            let mib: u64 = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()?
                .trim()
                .parse()
                .ok()?;
            Some(mib << 20)
        }
        _ => None,
    }
}
