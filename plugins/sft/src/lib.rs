//! The `sft` node: trains a checkpoint on trajectories. The loss covers the assistant turns
//! (the student's own steps and the teacher's repairs and demonstrations); tool observations
//! and malformed steps are masked. Without a `model` input it starts from scratch: a BPE
//! tokenizer trained on the trajectories' text and a small Qwen2.
//!
//! The steps run in the node's process ([`embedded`], the default) or in PyTorch under a
//! distributed launcher ([`torch`]). Both take their data from here: the same encoded
//! sequences, the same batches in the same order, the same micro-batches.
#![deny(missing_docs)]

mod embedded;
mod torch;

use std::path::PathBuf;

use scorch_api::reexports::async_trait;
use scorch_api::{DeclaredPlugin, NodeContext, PluginError};
use scorch_kinds::sft::{LossOn, SftParams};
use scorch_kinds::student::ChatFormat;
use scorch_model::checkpoint::{Checkpoint, load_trainable};
use scorch_model::encode::encode_trajectory_where;
use scorch_model::scratch::from_scratch;
use scorch_model::train::{TrainConfig, TrainingRun, clip_len};
use scorch_tables::{Author, TrainStep, Trajectory};

/// The `sft` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sft;

#[async_trait]
impl DeclaredPlugin for Sft {
    type Declared = scorch_kinds::Sft;
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
        let data = Data {
            trajectories,
            model: ctx.optional_blobs("model")?,
            base: ctx.optional_blobs("base")?,
            seed: ctx.seed(),
        };
        ctx.progress().set_total(p.steps as u64);
        let steps = match p.trainer.torch().cloned() {
            None => embedded::train(p, data, ctx).await?,
            Some(launch) => torch::train(p, launch, data, ctx).await?,
        };
        for s in steps.iter().step_by((steps.len() / 20).max(1)) {
            ctx.metric_at("loss", u64::from(s.step), s.loss);
        }
        if let Some(last) = steps.last() {
            ctx.metric("final_loss", last.loss);
        }
        ctx.write_rows("loss", &steps)
    }
}

/// A sequence's token ids and per-token loss mask.
type Sequence = (Vec<i64>, Vec<f32>);

/// What a node trains on and from.
struct Data {
    trajectories: Vec<Trajectory>,
    /// The `model` input's folder.
    model: Option<PathBuf>,
    /// The `base` input's folder (under a LoRA adapter).
    base: Option<PathBuf>,
    seed: u64,
}

impl Data {
    /// The student to train, on `device` with products in `compute`: a new one (`init`) or
    /// the `model` input (full fine-tuning, or LoRA adapters on its frozen weights).
    fn student(
        &self,
        p: &SftParams,
        device: tch::Device,
        compute: tch::Kind,
    ) -> Result<Checkpoint, PluginError> {
        let mut ck = match (&p.init, &self.model) {
            (Some(init), _) => {
                let mut ck = from_scratch(init, &self.trajectories, device, self.seed)?;
                ck.model.set_compute(Some(compute));
                ck
            }
            (None, Some(dir)) => load_trainable(
                dir,
                self.base.as_deref(),
                device,
                compute,
                p.lora.as_ref(),
                self.seed,
            )?,
            (None, None) => {
                return Err(PluginError::failed("no `model` input and no `init`"));
            }
        };
        ck.model.set_train(true);
        ck.model.set_checkpointing(p.gradient_checkpointing);
        Ok(ck)
    }

    /// Every trajectory as (token ids, loss mask) for a model with `tokenizer`, `chat` format
    /// and `max` positions (it is cut to them).
    fn sequences(
        &self,
        p: &SftParams,
        tokenizer: &tokenizers::Tokenizer,
        chat: ChatFormat,
        max: usize,
    ) -> Result<Vec<Sequence>, PluginError> {
        Ok(self
            .trajectories
            .iter()
            .map(|t| {
                encode_trajectory_where(tokenizer, chat, t, |_, s| {
                    p.loss_on == LossOn::All || s.author == Author::Teacher
                })
                .map(|x| clip_len(x, max))
            })
            .collect::<Result<_, _>>()?)
    }
}

/// The optimiser and schedule of `p`.
fn train_config(p: &SftParams) -> TrainConfig {
    TrainConfig {
        lr: p.lr,
        betas: (0.9, 0.98),
        weight_decay: p.weight_decay,
        warmup_steps: p.warmup_steps,
        total_steps: p.steps,
        min_lr_ratio: p.min_lr_ratio,
        clip: p.clip,
    }
}

/// The next step's sequences, in micro-batch order: the run's next batch, by length, so that
/// each micro-batch pads to little more than its own rows.
fn next_batch(run: &mut TrainingRun, seqs: &[Sequence], size: usize) -> Vec<usize> {
    let mut pick = run.batch(size);
    pick.sort_by_key(|&i| (seqs[i].0.len(), i));
    pick
}

/// A step's entry in the `loss` table.
fn entry(step: usize, loss: f64, lr: f64, grad_norm: f64) -> TrainStep {
    TrainStep {
        step: step as u32,
        loss,
        lr,
        grad_norm,
        reward: 0.0,
    }
}
