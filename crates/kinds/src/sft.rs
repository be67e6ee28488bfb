//! The `sft` node kind: its params and ports (the work is in `plugins/sft`).

use schemars::JsonSchema;
use scorch_api::{Declaration, Hardware, ParamError, PortType, Signature};
use scorch_tables::{TableRow, TrainStep, Trajectory};
use serde::{Deserialize, Serialize};

use crate::student::{InitParams, LoraParams, Precision};
use crate::trainer::TrainerParams;

/// Which steps of a trajectory carry loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LossOn {
    /// Every well-formed step.
    #[default]
    All,
    /// Only the steps the teacher wrote.
    Teacher,
}

impl LossOn {
    /// Whether it is the default.
    pub fn is_all(&self) -> bool {
        *self == Self::All
    }
}

/// The `sft` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sft;

/// Params of `sft`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SftParams {
    /// Optimiser steps.
    #[serde(default = "d_steps")]
    pub steps: usize,
    /// Sequences per step.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Peak learning rate.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Warm-up steps.
    #[serde(default = "d_warmup")]
    pub warmup_steps: usize,
    /// Cosine floor as a fraction of `lr`.
    #[serde(default = "d_floor")]
    pub min_lr_ratio: f64,
    /// Gradient clipping.
    #[serde(default = "d_clip")]
    pub clip: f64,
    /// AdamW weight decay.
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Train on correct trajectories only.
    #[serde(default = "yes")]
    pub only_correct: bool,
    /// Which steps carry loss: `all` the well-formed ones, or only those the `teacher` wrote
    /// (DAgger's labels after the student's own steps).
    #[serde(default, skip_serializing_if = "LossOn::is_all")]
    pub loss_on: LossOn,
    /// Start from scratch with this model (then no `model` input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitParams>,
    /// `auto`, `cpu` or `cuda`.
    #[serde(default = "crate::policy::default_device")]
    pub device: String,
    /// Most tokens (sequences x padded length) in one forward and backward pass: a batch is
    /// split into micro-batches whose gradients add up to the whole batch's.
    #[serde(default = "d_micro_batch_tokens")]
    pub micro_batch_tokens: usize,
    /// `auto` (bfloat16 compute where the hardware has it, else float32), `f32`, or `bf16`:
    /// bfloat16 matrix products over float32 weights and optimiser state.
    #[serde(default, skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
    /// Activation checkpointing per decoder layer (HF's `gradient_checkpointing`): the forward
    /// pass keeps only each layer's input and the backward pass recomputes the layer, so a
    /// micro-batch's activations take one layer's memory instead of every layer's, for one
    /// more forward pass of compute. The gradients are the same.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// Train LoRA adapters on the frozen `model` instead of every weight; the checkpoint is then
    /// a PEFT adapter folder. Unset: full fine-tuning. Given an adapter as `model` (with its
    /// base as `base`), the node goes on training that adapter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraParams>,
    /// Save the training state (weights, optimiser, data order) into the store every this
    /// many steps, so that a killed or preempted node resumes from there (0: never). A resumed
    /// run ends with the same checkpoint as one that was never stopped.
    #[serde(default = "d_save_every")]
    pub save_every: usize,
    /// Who trains: `{kind: embedded}` (scorch's loop, in the node's process, on one device)
    /// or `{kind: torch, launcher: torchrun, processes_per_node: 8, nodes: 2, strategy:
    /// fsdp}` (PyTorch under a distributed launcher, on this machine or over a Slurm
    /// allocation). Both train on the same encoded sequences in the same order.
    #[serde(default, skip_serializing_if = "TrainerParams::is_embedded")]
    pub trainer: TrainerParams,
}

fn d_save_every() -> usize {
    50
}

fn d_micro_batch_tokens() -> usize {
    // A step's rows go by length into micro-batches of this many padded tokens: smaller ones
    // pad less (warm start, 30 steps x 32: 36.3 s at 8,192, 31.9 s at 2,048).
    2_048
}
fn d_steps() -> usize {
    300
}
fn d_batch() -> usize {
    32
}
fn d_lr() -> f64 {
    1e-3
}
fn d_warmup() -> usize {
    10
}
fn d_floor() -> f64 {
    0.1
}
fn d_clip() -> f64 {
    1.0
}
fn d_wd() -> f64 {
    0.01
}
fn yes() -> bool {
    true
}

impl Declaration for Sft {
    type Params = SftParams;
    fn kind(&self) -> &'static str {
        "sft"
    }
    fn version(&self) -> &'static str {
        // 2: AdamW computed here instead of by libtorch (its state can be saved), which
        // changes the last bits of the weights.
        "2"
    }
    fn description(&self) -> &'static str {
        "Trains a checkpoint on trajectories (loss on assistant turns only)"
    }
    fn signature(&self, p: &SftParams) -> Result<Signature, ParamError> {
        if p.steps == 0 || p.batch_size == 0 {
            return Err(ParamError::new(
                "steps",
                "steps and batch_size must be positive",
            ));
        }
        if p.micro_batch_tokens == 0 {
            return Err(ParamError::new(
                "micro_batch_tokens",
                "must be positive (tokens per forward and backward pass)",
            ));
        }
        if let Some(init) = &p.init {
            if init.num_attention_heads <= 0 || init.hidden_size % init.num_attention_heads != 0 {
                return Err(ParamError::new(
                    "init.num_attention_heads",
                    format!(
                        "hidden_size {} does not divide into {} heads",
                        init.hidden_size, init.num_attention_heads
                    ),
                ));
            }
            if init.num_key_value_heads <= 0
                || init.num_attention_heads % init.num_key_value_heads != 0
            {
                return Err(ParamError::new(
                    "init.num_key_value_heads",
                    format!(
                        "{} heads do not group into {} key/value heads",
                        init.num_attention_heads, init.num_key_value_heads
                    ),
                ));
            }
            if (init.hidden_size / init.num_attention_heads) % 2 != 0 {
                return Err(ParamError::new(
                    "init.hidden_size",
                    "the head width (hidden_size / heads) must be even for rotary embeddings",
                ));
            }
        }
        crate::student::check_checkpointing(p.gradient_checkpointing, p.lora.as_ref())?;
        if let Some(torch) = p.trainer.torch() {
            torch.check()?;
            if p.lora.is_some() {
                return Err(ParamError::new(
                    "trainer",
                    "the torch trainer fine-tunes every weight; LoRA trains with `trainer: {kind: embedded}`",
                ));
            }
        }
        if let Some(lora) = &p.lora {
            lora.check()?;
            if p.init.is_some() {
                return Err(ParamError::new(
                    "lora",
                    "LoRA adapts a trained `model`; a student started with `init` trains in full",
                ));
            }
        }
        let mut sig = Signature::new()
            .input("trajectories", Trajectory::port())
            .optional_input("more", Trajectory::port())
            .output("checkpoint", PortType::Blobs)
            .output("loss", TrainStep::port());
        if p.init.is_none() {
            sig = crate::policy::model_inputs(sig);
        }
        let training = crate::memory::Training {
            device: p.device.clone(),
            bf16: p.precision == Precision::Bf16,
            lora: p.lora.clone(),
            tokens: p.micro_batch_tokens as u64,
            checkpointing: p.gradient_checkpointing,
            reference: false,
            rollout_tokens: 0,
            shards: p.trainer.torch().map_or(1, |t| t.shards()),
        };
        if let Some(torch) = p.trainer.torch() {
            sig = sig.processes(scorch_api::Processes {
                nodes: torch.nodes,
                per_node: torch.processes_per_node,
                gpus: p.device == "cuda",
            });
            if let Some(config) = &torch.config {
                sig = sig.reads_local("trainer.config", config);
            }
        }
        Ok(sig
            .model(crate::memory::source(p.init.as_ref()))
            .memory(crate::memory::rule(training)))
    }
    fn settle(&self, p: &mut SftParams, hardware: Hardware) {
        crate::policy::settle_device(&mut p.device, hardware);
        p.precision.settle(&p.device);
    }
}
