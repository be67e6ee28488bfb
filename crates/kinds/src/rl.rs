//! The `rl` node kind: its params and ports (the work is in `plugins/rl`).

use schemars::JsonSchema;
use scorch_api::{Declaration, Hardware, ParamError, PortType, Signature};
use scorch_tables::{RlGroup, RlPrompt, TableRow, Task, TrainStep};
use serde::{Deserialize, Serialize};

use crate::episodes::episode_params;
use crate::policy::SamplingParams;
use crate::student::{LoraParams, Precision};

/// The `rl` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rl;

/// The reward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reward {
    /// SCoRe's key-step reward.
    KeyStep,
    /// 1 for a right final answer, else 0 (an ablation).
    Sparse,
}

episode_params! {
    /// Params of `rl`.
    #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct RlParams {
        /// Optimiser steps.
        #[serde(default = "d_steps")]
        pub steps: usize,
        /// Prompts per step.
        #[serde(default = "d_prompts")]
        pub prompts_per_step: usize,
        /// Samples per prompt (G).
        #[serde(default = "d_group")]
        pub group_size: usize,
        /// Learning rate (constant after warm-up).
        #[serde(default = "d_lr")]
        pub lr: f64,
        /// PPO-style ratio clipping.
        #[serde(default = "d_clip")]
        pub clip_eps: f64,
        /// KL to the starting checkpoint (0: off): the k3 estimate per scored token,
        /// `exp(ref - logp) - (ref - logp) - 1`, times this, added to the loss (TRL's `beta`).
        #[serde(default)]
        pub kl_coef: f64,
        /// Passes over each step's episodes (TRL's `num_iterations`, PPO's epochs): from the
        /// second on, the policy has moved since it sampled them, so the ratio to the sampling
        /// policy's log-probabilities differs from 1 and clipping acts.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        pub ppo_epochs: usize,
        /// Optimiser steps per pass: the step's episodes split into this many mini-batches
        /// (whole groups, in order), each its own update.
        #[serde(default = "one", skip_serializing_if = "is_one")]
        pub mini_batches: usize,
        /// Start from the verified prefix (false: the full horizon, an ablation).
        #[serde(default = "yes")]
        pub from_prefix: bool,
        /// The reward.
        #[serde(default = "key_step")]
        pub reward: Reward,
        /// Sampling of the rollouts.
        #[serde(default)]
        pub sampling: SamplingParams,
        /// Where the rollouts are sampled: `{kind: local}` (the learner's model, in process) or
        /// `{kind: endpoint, base_url, ...}` (an inference server of the base that loads the
        /// learner's adapter after every update; needs `lora`).
        #[serde(default, skip_serializing_if = "RolloutSpec::is_local")]
        pub rollout: RolloutSpec,
        /// Most tokens (sequences x padded length) in one forward and backward pass: a step's
        /// episodes are split into micro-batches whose gradients add up to the whole batch's,
        /// which bounds memory however many and however long the episodes are.
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
        /// Save the training state (weights, optimiser, prompt order, counts) into the store
        /// every this many steps, so that a killed or preempted node resumes from there (0:
        /// never). A resumed run ends with the same checkpoint as one that was never stopped.
        #[serde(default = "d_save_every")]
        pub save_every: usize,
    }
}

fn d_save_every() -> usize {
    10
}

pub use scorch_spec::policy::ServerRollout;

/// Where `rl` samples its rollouts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RolloutSpec {
    /// The learner's own model, in process, one turn-synchronous batch at a time.
    #[default]
    Local,
    /// An OpenAI-compatible server of the base model (vLLM with `--enable-lora` and
    /// `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`, or `scorch serve`). Before each step's rollouts
    /// the learner writes its adapter into `adapter_dir` and loads it into every server
    /// (`POST /v1/load_lora_adapter` with `lora_name`/`lora_path`); the rollouts' requests
    /// name it as their `model`; it is unloaded after them. The server only samples: the
    /// log-probabilities of the loss are the learner's.
    Endpoint(ServerRollout),
}

impl RolloutSpec {
    /// Whether this is the default, in-process rollouts.
    pub fn is_local(&self) -> bool {
        *self == Self::Local
    }
}

fn d_micro_batch_tokens() -> usize {
    8_192
}
fn d_steps() -> usize {
    20
}
fn d_prompts() -> usize {
    8
}
fn d_group() -> usize {
    16
}
fn d_lr() -> f64 {
    1e-4
}
fn d_clip() -> f64 {
    0.2
}
fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_one(n: &usize) -> bool {
    *n == 1
}
fn key_step() -> Reward {
    Reward::KeyStep
}

impl Declaration for Rl {
    type Params = RlParams;
    fn kind(&self) -> &'static str {
        "rl"
    }
    fn version(&self) -> &'static str {
        // 2: AdamW computed here instead of by libtorch (its state can be saved), which
        // changes the last bits of the weights. 3: each request samples with a seed of its
        // own (the run's seed, the episode's place, the turn), whatever its batch. 4: writes
        // each group's rewards (`groups`).
        "4"
    }
    fn description(&self) -> &'static str {
        "GRPO from verified prefixes with the key-step reward"
    }
    fn signature(&self, p: &RlParams) -> Result<Signature, ParamError> {
        if p.group_size < 2 {
            return Err(ParamError::new(
                "group_size",
                "GRPO needs at least 2 samples per prompt",
            ));
        }
        if p.steps == 0 || p.prompts_per_step == 0 {
            return Err(ParamError::new(
                "steps",
                "steps and prompts_per_step must be positive",
            ));
        }
        if p.micro_batch_tokens == 0 {
            return Err(ParamError::new(
                "micro_batch_tokens",
                "must be positive (tokens per forward and backward pass)",
            ));
        }
        if p.prompts_per_step.checked_mul(p.group_size).is_none() {
            return Err(ParamError::new(
                "group_size",
                format!(
                    "{} prompts of {} episodes each is more episodes than can be counted",
                    p.prompts_per_step, p.group_size
                ),
            ));
        }
        if p.ppo_epochs == 0 {
            return Err(ParamError::new("ppo_epochs", "must be at least 1"));
        }
        if p.mini_batches == 0 || p.mini_batches > p.prompts_per_step {
            return Err(ParamError::new(
                "mini_batches",
                format!(
                    "must be between 1 and prompts_per_step ({}): each mini-batch holds whole groups",
                    p.prompts_per_step
                ),
            ));
        }
        crate::student::check_checkpointing(p.gradient_checkpointing, p.lora.as_ref())?;
        if let Some(lora) = &p.lora {
            lora.check()?;
        }
        if let RolloutSpec::Endpoint(server) = &p.rollout {
            if p.lora.is_none() {
                return Err(ParamError::new(
                    "rollout",
                    "server rollouts load the learner into the server as a LoRA adapter after \
                     every update: set `lora` too (or use `rollout: {kind: local}`)",
                ));
            }
            if server.base_url.trim().is_empty() {
                return Err(ParamError::new("rollout.base_url", "give the server's URL"));
            }
        }
        // In-process rollouts keep every episode of a step in one batch, each up to its turn
        // limit of sampled turns.
        let rows = (p.prompts_per_step * p.group_size) as u64;
        let turns = u64::from(p.turn_limit.unwrap_or(8));
        let training = crate::memory::Training {
            device: p.device.clone(),
            bf16: p.precision == Precision::Bf16,
            lora: p.lora.clone(),
            tokens: p.micro_batch_tokens as u64,
            checkpointing: p.gradient_checkpointing,
            reference: p.kl_coef > 0.0,
            rollout_tokens: if p.rollout.is_local() {
                rows.saturating_mul(turns)
                    .saturating_mul(p.sampling.max_tokens as u64)
            } else {
                0
            },
            shards: 1,
        };
        Ok(crate::policy::model_inputs(Signature::new())
            .input("rl_prompts", RlPrompt::port())
            .input("tasks", Task::port())
            .output("checkpoint", PortType::Blobs)
            .output("metrics", TrainStep::port())
            .output("groups", RlGroup::port())
            .model(crate::memory::source(None))
            .memory(crate::memory::rule(training)))
    }
    fn settle(&self, p: &mut RlParams, hardware: Hardware) {
        crate::policy::settle_device(&mut p.device, hardware);
        p.precision.settle(&p.device);
    }
}
