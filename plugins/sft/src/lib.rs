//! The `sft` node: trains a checkpoint on trajectories. The loss covers the assistant turns
//! (the student's own steps and the teacher's repairs and demonstrations); tool observations
//! and malformed steps are masked. Without a `model` input it starts from scratch: a BPE
//! tokenizer trained on the trajectories' text and a small Qwen2.
#![deny(missing_docs)]

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use scorch_api::reexports::async_trait;
use scorch_api::reexports::schemars::{self, JsonSchema};
use scorch_api::tables::{TableRow, TrainStep, Trajectory};
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, PortType, Signature};
use scorch_model::checkpoint::Checkpoint;
use scorch_model::encode::encode_trajectory;
use scorch_model::precision::Precision;
pub use scorch_model::scratch::InitParams;
use scorch_model::scratch::from_scratch;
use scorch_model::tokenizer::{END_OF_TEXT, token_id};
use scorch_model::train::{TrainConfig, Trainer, clip_len, masked_nll};
use serde::{Deserialize, Serialize};
use tch::Kind;

/// The `sft` plugin.
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
    /// Start from scratch with this model (then no `model` input).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitParams>,
    /// `auto`, `cpu` or `cuda`.
    #[serde(default = "scorch_model::spec::default_device")]
    pub device: String,
    /// Most tokens (sequences x padded length) in one forward and backward pass: a batch is
    /// split into micro-batches whose gradients add up to the whole batch's.
    #[serde(default = "d_micro_batch_tokens")]
    pub micro_batch_tokens: usize,
    /// `auto` (bfloat16 compute where the hardware has it, else float32), `f32`, or `bf16`:
    /// bfloat16 matrix products over float32 weights and optimiser state.
    #[serde(default, skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
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

#[async_trait]
impl Plugin for Sft {
    type Params = SftParams;
    fn kind(&self) -> &'static str {
        "sft"
    }
    fn version(&self) -> &'static str {
        "1"
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
        let mut sig = Signature::new()
            .input("trajectories", Trajectory::port())
            .optional_input("more", Trajectory::port())
            .output("checkpoint", PortType::Blobs)
            .output("loss", TrainStep::port());
        if p.init.is_none() {
            sig = sig.input("model", PortType::Blobs);
        }
        Ok(sig)
    }
    async fn run(&self, p: SftParams, ctx: &NodeContext) -> Result<(), PluginError> {
        let mut trajectories: Vec<Trajectory> = ctx.read_rows("trajectories").await?;
        if ctx.has_input("more") {
            trajectories.extend(ctx.read_rows::<Trajectory>("more").await?);
        }
        if p.only_correct {
            trajectories.retain(|t| t.correct);
        }
        if trajectories.is_empty() {
            return Err(PluginError::failed(
                "no trajectory to train on (after only_correct)",
            ));
        }
        let model_dir = ctx.optional_blobs("model")?;
        let out_dir = ctx.blob_dir("checkpoint")?;
        let cancel = ctx.cancellation().clone();
        let progress = ctx.progress_handle();
        progress.set_total(p.steps as u64);
        let seed = ctx.seed();
        let (device, _) = scorch_model::pick_device(&p.device)?;
        let compute = p.precision.compute_kind(device);
        let steps = ctx
            .blocking(move || -> Result<Vec<TrainStep>, PluginError> {
                // Float32 master weights; the layers compute in the precision's kind.
                let mut ck = match (&p.init, model_dir) {
                    (Some(init), _) => from_scratch(init, &trajectories, device, seed)?,
                    (None, Some(dir)) => Checkpoint::load(&dir, device, Kind::Float)?,
                    (None, None) => {
                        return Err(PluginError::failed("no `model` input and no `init`"));
                    }
                };
                ck.model.set_compute(Some(compute));
                let seqs: Vec<(Vec<i64>, Vec<f32>)> = trajectories
                    .iter()
                    .map(|t| {
                        encode_trajectory(&ck.tokenizer, ck.chat, t)
                            .map(|x| clip_len(x, ck.model.config.max_position_embeddings as usize))
                    })
                    .collect::<Result<_, _>>()?;
                let pad = token_id(&ck.tokenizer, END_OF_TEXT)?;
                let config = TrainConfig {
                    lr: p.lr,
                    betas: (0.9, 0.98),
                    weight_decay: p.weight_decay,
                    warmup_steps: p.warmup_steps,
                    total_steps: p.steps,
                    min_lr_ratio: p.min_lr_ratio,
                    clip: p.clip,
                };
                let mut trainer = Trainer::new(&ck.vs, config)?;
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut order: Vec<usize> = Vec::new();
                let mut log = Vec::with_capacity(p.steps);
                for step in 0..p.steps {
                    if cancel.is_cancelled() {
                        return Err(PluginError::cancelled());
                    }
                    let mut pick = Vec::with_capacity(p.batch_size);
                    while pick.len() < p.batch_size.min(seqs.len()) {
                        if order.is_empty() {
                            order = (0..seqs.len()).collect();
                            order.shuffle(&mut rng);
                        }
                        pick.extend(order.pop());
                    }
                    // By length: each micro-batch then pads to little more than its own rows.
                    pick.sort_by_key(|&i| (seqs[i].0.len(), i));
                    let batch: Vec<(Vec<i64>, Vec<f32>)> =
                        pick.iter().map(|&i| seqs[i].clone()).collect();
                    // The step's loss is the mean over all its scored tokens: a
                    // micro-batch's mean weighs in by its share of them.
                    let value = trainer.accumulate(
                        &batch,
                        p.micro_batch_tokens,
                        pad,
                        device,
                        |b, _, scored| {
                            let (loss, n) = masked_nll(&ck.model, b);
                            loss * (n / scored)
                        },
                    )?;
                    let (lr, grad_norm) = trainer.step()?;
                    progress.message(&format!("loss {value:.3}"));
                    progress.advance(1);
                    log.push(TrainStep {
                        step: step as u32,
                        loss: value,
                        lr,
                        grad_norm,
                        reward: 0.0,
                    });
                }
                ck.save(&out_dir)?;
                Ok(log)
            })
            .await?;
        for s in steps.iter().step_by((steps.len() / 20).max(1)) {
            ctx.metric_at("loss", u64::from(s.step), s.loss);
        }
        if let Some(last) = steps.last() {
            ctx.metric("final_loss", last.loss);
        }
        ctx.write_rows("loss", &steps)
    }
}
