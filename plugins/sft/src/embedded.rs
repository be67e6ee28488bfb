//! The embedded trainer: scorch's own loop (tch) in the node's process, on one device.

use scorch_api::{NodeContext, PluginError};
use scorch_kinds::sft::SftParams;
use scorch_model::precision::ComputeKind;
use scorch_model::tokenizer::{END_OF_TEXT, token_id};
use scorch_model::train::{Trainer, TrainingRun, masked_nll};
use scorch_tables::TrainStep;

use crate::{Data, Sequence, entry, next_batch, train_config};

/// Train on `data` as `p` says; the steps' log.
pub(crate) async fn train(
    p: SftParams,
    data: Data,
    ctx: &NodeContext,
) -> Result<Vec<TrainStep>, PluginError> {
    let out_dir = ctx.blob_dir("checkpoint")?;
    let cancel = ctx.cancellation().clone();
    let progress = ctx.progress_handle();
    let (device, _) = scorch_model::pick_device(&p.device)?;
    let compute = p.precision.compute_kind(device);
    let state = ctx.state_store().filter(|_| p.save_every > 0);
    let state_dir = ctx.scratch_dir().join("state");
    ctx.blocking(move || -> Result<Vec<TrainStep>, PluginError> {
        // Float32 master weights (LoRA: a frozen base in the compute kind and a float32
        // adapter); the layers compute in the precision's kind.
        let ck = data.student(&p, device, compute)?;
        let max = ck.model.config.max_position_embeddings as usize;
        let seqs = data.sequences(&p, &ck.tokenizer, ck.chat, max)?;
        let pad = token_id(&ck.tokenizer, END_OF_TEXT)?;
        let mut trainer = Trainer::new(&ck.vs, train_config(&p))?;
        // Saved only where a state store keeps it.
        let save_every = if state.is_some() { p.save_every } else { 0 };
        let mut run = TrainingRun::new(data.seed, seqs.len(), p.steps, save_every, state_dir);
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
            let batch: Vec<Sequence> = next_batch(&mut run, &seqs, p.batch_size)
                .into_iter()
                .map(|i| seqs[i].clone())
                .collect();
            // The step's loss is the mean over all its scored tokens: a micro-batch's mean
            // weighs in by its share of them.
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
            if run.finish_step(entry(step, value, lr, grad_norm), &trainer, || ())?
                && let Some(state) = &state
            {
                state.save_blocking(run.log.len() as u64, run.dir())?;
            }
        }
        ck.save(&out_dir)?;
        Ok(run.log)
    })
    .await
}
