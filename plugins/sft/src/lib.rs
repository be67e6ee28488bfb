//! The `sft` node: trains a checkpoint on trajectories. The loss covers the assistant turns
//! (the student's own steps and the teacher's repairs and demonstrations); tool observations
//! and malformed steps are masked. Without a `model` input it starts from scratch: a BPE
//! tokenizer trained on the trajectories' text and a small Qwen2.
#![deny(missing_docs)]

use scorch_api::reexports::async_trait;
use scorch_api::{DeclaredPlugin, NodeContext, PluginError};
use scorch_kinds::sft::{LossOn, SftParams};
use scorch_model::checkpoint::load_trainable;
use scorch_model::encode::encode_trajectory_where;
use scorch_model::precision::ComputeKind;
use scorch_model::scratch::from_scratch;
use scorch_model::tokenizer::{END_OF_TEXT, token_id};
use scorch_model::train::{TrainConfig, Trainer, TrainingRun, clip_len, masked_nll};
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
        let model_dir = ctx.optional_blobs("model")?;
        let base_dir = ctx.optional_blobs("base")?;
        let out_dir = ctx.blob_dir("checkpoint")?;
        let cancel = ctx.cancellation().clone();
        let progress = ctx.progress_handle();
        progress.set_total(p.steps as u64);
        let seed = ctx.seed();
        let (device, _) = scorch_model::pick_device(&p.device)?;
        let compute = p.precision.compute_kind(device);
        let state = ctx.state_store().filter(|_| p.save_every > 0);
        let state_dir = ctx.scratch_dir().join("state");
        let steps = ctx
            .blocking(move || -> Result<Vec<TrainStep>, PluginError> {
                // Float32 master weights (LoRA: a frozen base in the compute kind and a
                // float32 adapter); the layers compute in the precision's kind.
                let mut ck = match (&p.init, model_dir) {
                    (Some(init), _) => {
                        let mut ck = from_scratch(init, &trajectories, device, seed)?;
                        ck.model.set_compute(Some(compute));
                        ck
                    }
                    (None, Some(dir)) => load_trainable(
                        &dir,
                        base_dir.as_deref(),
                        device,
                        compute,
                        p.lora.as_ref(),
                        seed,
                    )?,
                    (None, None) => {
                        return Err(PluginError::failed("no `model` input and no `init`"));
                    }
                };
                ck.model.set_train(true);
                ck.model.set_checkpointing(p.gradient_checkpointing);
                let seqs: Vec<(Vec<i64>, Vec<f32>)> = trajectories
                    .iter()
                    .map(|t| {
                        encode_trajectory_where(&ck.tokenizer, ck.chat, t, |_, s| {
                            p.loss_on == LossOn::All || s.author == Author::Teacher
                        })
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
                // Saved only where a state store keeps it.
                let save_every = if state.is_some() { p.save_every } else { 0 };
                let mut run = TrainingRun::new(seed, seqs.len(), p.steps, save_every, state_dir);
                // A run killed or preempted before: go on from its last saved step.
                if let Some(state) = &state
                    && state.load_blocking(run.dir())?.is_some()
                {
                    run.resume::<()>(&mut trainer)?;
                    progress.advance(run.start as u64);
                    progress.message(&format!("resumed at step {} of {}", run.start, p.steps));
                }
                for step in run.start..p.steps {
                    if cancel.is_cancelled() {
                        return Err(PluginError::cancelled());
                    }
                    let mut pick = run.batch(p.batch_size);
                    // By length: each micro-batch then pads to little more than its own rows.
                    pick.sort_by_key(|&i| (seqs[i].0.len(), i));
                    let batch: Vec<(Vec<i64>, Vec<f32>)> =
                        pick.iter().map(|&i| seqs[i].clone()).collect();
                    // The step's loss is the mean over all its scored tokens: a
                    // micro-batch's mean weighs in by its share of them.
                    let value = trainer.accumulate(
                        &ck.model,
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
                    progress.metric("loss", Some(step as u64), value);
                    progress.metric("lr", Some(step as u64), lr);
                    progress.metric("grad_norm", Some(step as u64), grad_norm);
                    progress.advance(1);
                    let entry = TrainStep {
                        step: step as u32,
                        loss: value,
                        lr,
                        grad_norm,
                        reward: 0.0,
                    };
                    if run.finish_step(entry, &trainer, || ())?
                        && let Some(state) = &state
                    {
                        state.save_blocking(run.log.len() as u64, run.dir())?;
                    }
                }
                ck.save(&out_dir)?;
                Ok(run.log)
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
