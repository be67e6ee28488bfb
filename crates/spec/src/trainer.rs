//! Which trainer runs a training node's steps: the embedded one (scorch's own loop on tch, in
//! the node's process, one device) or PyTorch under a distributed launcher (`torchrun` or
//! `accelerate`) with DDP, FSDP or DeepSpeed ZeRO-3, on one machine or over a Slurm
//! allocation's nodes.
//!
//! Both train the same sequences, with the same loss masks, in the same order of batches and
//! micro-batches: the node encodes them once and the external trainer reads them
//! pre-tokenized. What differs is where the arithmetic runs and how the state is sharded.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who trains: `{kind: embedded}` (the default) or `{kind: torch, ...}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TrainerParams {
    /// scorch's own training loop (tch) in the node's process, on one device.
    #[default]
    Embedded,
    /// PyTorch under a distributed launcher: one process per device, DDP, FSDP or DeepSpeed
    /// ZeRO-3.
    Torch(TorchTrainer),
}

impl TrainerParams {
    /// Whether it is the default (then params leave it out, and cache keys are unchanged).
    pub fn is_embedded(&self) -> bool {
        *self == Self::Embedded
    }

    /// The external trainer, if this is one.
    pub fn torch(&self) -> Option<&TorchTrainer> {
        match self {
            Self::Embedded => None,
            Self::Torch(t) => Some(t),
        }
    }
}

/// The launcher that starts a torch trainer's processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Launcher {
    /// `torchrun` (`python -m torch.distributed.run`).
    #[default]
    Torchrun,
    /// `accelerate launch` (HF Accelerate).
    Accelerate,
}

/// How the processes share the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every process holds the whole model and optimiser; gradients are averaged.
    #[default]
    Ddp,
    /// PyTorch FSDP (`fully_shard`, per decoder layer): weights, gradients and optimiser
    /// state are sharded over the processes, each layer gathered for its own pass.
    Fsdp,
    /// DeepSpeed ZeRO stage 3: the same sharding by DeepSpeed, with its own accumulation,
    /// clipping and checkpoints.
    DeepspeedZero3,
}

impl Strategy {
    /// Its name in params and in the trainer program.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ddp => "ddp",
            Self::Fsdp => "fsdp",
            Self::DeepspeedZero3 => "deepspeed_zero3",
        }
    }
}

/// PyTorch under a launcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TorchTrainer {
    /// What starts the processes.
    #[serde(default)]
    pub launcher: Launcher,
    /// Processes (one per GPU on CUDA) on each machine.
    #[serde(default = "one")]
    pub processes_per_node: u32,
    /// Machines (more than one needs the Slurm executor: they are one allocation).
    #[serde(default = "one")]
    pub nodes: u32,
    /// How the processes share the model.
    #[serde(default)]
    pub strategy: Strategy,
    /// A launcher config file (for `accelerate`: its `--config_file`), relative to the
    /// workflow's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
}

fn one() -> u32 {
    1
}

impl TorchTrainer {
    /// Processes in all: the world size.
    pub fn world_size(&self) -> u32 {
        self.processes_per_node.saturating_mul(self.nodes)
    }

    /// How many ways the model's state is sharded (1: replicated).
    pub fn shards(&self) -> u64 {
        match self.strategy {
            Strategy::Ddp => 1,
            Strategy::Fsdp | Strategy::DeepspeedZero3 => u64::from(self.world_size()),
        }
    }

    /// Refuse what cannot launch.
    pub fn check(&self) -> Result<(), scorch_api::ParamError> {
        if self.processes_per_node == 0 || self.nodes == 0 {
            return Err(scorch_api::ParamError::new(
                "trainer.processes_per_node",
                "processes_per_node and nodes must be at least 1",
            ));
        }
        if self.processes_per_node.checked_mul(self.nodes).is_none() {
            return Err(scorch_api::ParamError::new(
                "trainer.nodes",
                format!(
                    "{} machines of {} processes each is more processes than can be counted",
                    self.nodes, self.processes_per_node
                ),
            ));
        }
        if self.config.is_some() && self.launcher == Launcher::Torchrun {
            return Err(scorch_api::ParamError::new(
                "trainer.config",
                "a config file is Accelerate's `--config_file` (`launcher: accelerate`); \
                 torchrun takes its processes from `processes_per_node` and `nodes`",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_trainer_is_left_out_and_a_torch_one_reads_with_defaults() {
        let t: TrainerParams =
            serde_json::from_value(serde_json::json!({"kind": "embedded"})).unwrap_or_default();
        assert!(t.is_embedded());
        let t: TrainerParams = serde_json::from_value(
            serde_json::json!({"kind": "torch", "processes_per_node": 2, "strategy": "fsdp"}),
        )
        .unwrap_or_default();
        let torch = t.torch().cloned();
        assert_eq!(
            torch,
            Some(TorchTrainer {
                launcher: Launcher::Torchrun,
                processes_per_node: 2,
                nodes: 1,
                strategy: Strategy::Fsdp,
                config: None,
            })
        );
        assert_eq!(torch.map(|t| t.shards()), Some(2));
        let bad = serde_json::from_value::<TrainerParams>(
            serde_json::json!({"kind": "torch", "strategy": "zero9"}),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn what_cannot_launch_is_refused_by_the_param_it_is_written_in() {
        let torch = |v: serde_json::Value| {
            serde_json::from_value::<TrainerParams>(v)
                .unwrap_or_default()
                .torch()
                .cloned()
                .unwrap()
        };
        let refused = |v: serde_json::Value| torch(v).check().map_err(|e| e.path);
        assert_eq!(
            refused(serde_json::json!({"kind": "torch", "processes_per_node": 0})),
            Err("trainer.processes_per_node".into())
        );
        // No overflow: a world size past u32 is bad input, not a panic.
        let huge = serde_json::json!({"kind": "torch", "processes_per_node": u32::MAX, "nodes": 2});
        assert_eq!(refused(huge.clone()), Err("trainer.nodes".into()));
        assert_eq!(torch(huge).world_size(), u32::MAX);
        assert_eq!(
            refused(serde_json::json!({"kind": "torch", "config": "a.yaml"})),
            Err("trainer.config".into())
        );
        assert_eq!(
            refused(
                serde_json::json!({"kind": "torch", "launcher": "accelerate", "config": "a.yaml", "processes_per_node": 8, "nodes": 2})
            ),
            Ok(())
        );
    }
}
