//! Training pieces used by `sft` and `rl`: token-level loss with a mask (only the policy's
//! own turns count), log-probabilities of given completions, AdamW, gradient clipping,
//! warmup + cosine schedule, gradient accumulation.
//!
//! AdamW is written here over the variables' tensors rather than taken from libtorch (whose
//! optimiser state tch cannot read or write), so that a run's state (weights, moments, step)
//! can be saved and a preempted node resume exactly where it stopped.

use tch::{Device, Kind, Tensor, nn};

use crate::ModelError;
use crate::qwen2::Qwen2;

/// Optimiser and schedule settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// AdamW betas.
    pub betas: (f64, f64),
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Optimiser steps in all (the cosine reaches its floor there).
    pub total_steps: usize,
    /// The cosine's floor, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm to this (0: off).
    pub clip: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            betas: (0.9, 0.98),
            weight_decay: 0.01,
            warmup_steps: 10,
            total_steps: 300,
            min_lr_ratio: 0.1,
            clip: 1.0,
        }
    }
}

/// The learning rate at optimiser step `step` (0-based).
pub fn lr_at(c: &TrainConfig, step: usize) -> f64 {
    if step < c.warmup_steps {
        return c.lr * (step + 1) as f64 / c.warmup_steps as f64;
    }
    let span = c.total_steps.saturating_sub(c.warmup_steps).max(1) as f64;
    let progress = ((step - c.warmup_steps) as f64 / span).min(1.0);
    let floor = c.lr * c.min_lr_ratio;
    floor + (c.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// A batch of token sequences with loss masks, padded on the right.
#[derive(Debug)]
pub struct Batch {
    /// (batch, time) token ids.
    pub ids: Tensor,
    /// (batch, time) 1 for real tokens.
    pub attention: Tensor,
    /// (batch, time - 1) weight of predicting token t + 1 (0 outside the policy's turns).
    pub loss_mask: Tensor,
}

/// Pad `seqs` (ids, per-token 0/1 loss mask) into a batch on `device`.
pub fn collate(
    seqs: &[(Vec<i64>, Vec<f32>)],
    pad: i64,
    device: Device,
) -> Result<Batch, ModelError> {
    let width = seqs.iter().map(|s| s.0.len()).max().unwrap_or(0);
    if width < 2 {
        return Err(ModelError::Torch(
            "sequences need at least two tokens".into(),
        ));
    }
    let n = seqs.len();
    let (mut ids, mut att, mut mask) = (
        Vec::with_capacity(n * width),
        Vec::with_capacity(n * width),
        Vec::with_capacity(n * (width - 1)),
    );
    for (s, m) in seqs {
        if s.len() != m.len() {
            return Err(ModelError::Torch(
                "a loss mask does not match its sequence".into(),
            ));
        }
        ids.extend(
            s.iter()
                .copied()
                .chain(std::iter::repeat_n(pad, width - s.len())),
        );
        att.extend(
            std::iter::repeat_n(1i64, s.len()).chain(std::iter::repeat_n(0, width - s.len())),
        );
        // The mask marks tokens to predict: the target of position t is token t + 1.
        mask.extend(
            m.iter()
                .skip(1)
                .copied()
                .chain(std::iter::repeat_n(0.0, width - s.len())),
        );
    }
    let shape = [n as i64, width as i64];
    Ok(Batch {
        ids: Tensor::from_slice(&ids).view(shape).to_device(device),
        attention: Tensor::from_slice(&att).view(shape).to_device(device),
        loss_mask: Tensor::from_slice(&mask)
            .view([n as i64, width as i64 - 1])
            .to_device(device),
    })
}

/// How many targets the loss of `seqs` scores (at least 1): a sequence's mask counts from its
/// second token, as in [`collate`].
pub fn scored_tokens(seqs: &[(Vec<i64>, Vec<f32>)]) -> f64 {
    seqs.iter()
        .map(|(_, m)| m.iter().skip(1).map(|x| f64::from(*x)).sum::<f64>())
        .sum::<f64>()
        .max(1.0)
}

/// Split `seqs` (in order) into micro-batches of at most `budget` padded tokens each (rows x
/// the longest row), so a big batch is processed piece by piece with bounded memory; one row
/// longer than the budget gets a micro-batch of its own.
pub fn micro_batches(seqs: &[(Vec<i64>, Vec<f32>)], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut longest) = (0, 0);
    for (i, (ids, _)) in seqs.iter().enumerate() {
        let wider = longest.max(ids.len());
        if i > start && (i + 1 - start) * wider > budget {
            out.push(start..i);
            start = i;
            longest = ids.len();
        } else {
            longest = wider;
        }
    }
    if start < seqs.len() {
        out.push(start..seqs.len());
    }
    out
}

/// Cut a (ids, loss mask) sequence to at most `max` tokens (the model's positions).
pub fn clip_len((mut ids, mut mask): (Vec<i64>, Vec<f32>), max: usize) -> (Vec<i64>, Vec<f32>) {
    ids.truncate(max);
    mask.truncate(max);
    (ids, mask)
}

/// Log-probability of every next token: (batch, time - 1).
pub fn token_logprobs(model: &Qwen2, ids: &Tensor, attention: &Tensor) -> Tensor {
    let logits = model.forward(ids, attention, None);
    let t = ids.size()[1];
    let logp = logits
        .narrow(1, 0, t - 1)
        .to_kind(Kind::Float)
        .log_softmax(-1, Kind::Float);
    logp.gather(2, &ids.narrow(1, 1, t - 1).unsqueeze(-1), false)
        .squeeze_dim(-1)
}

/// Mean negative log-likelihood over the masked tokens, and the number of such tokens.
pub fn masked_nll(model: &Qwen2, batch: &Batch) -> (Tensor, f64) {
    let lp = token_logprobs(model, &batch.ids, &batch.attention);
    let count = batch.loss_mask.sum(Kind::Float);
    let n = f64::try_from(&count).unwrap_or(0.0);
    (
        -(lp * &batch.loss_mask).sum(Kind::Float) / count.clamp_min(1.0),
        n,
    )
}

/// Where a training run stands beyond its weights and optimiser: the steps done, the data
/// order (the shuffling generator's position and what is left of the current shuffle), the
/// log so far, and what the node adds (`extra`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Position<E> {
    /// Steps done.
    pub step: usize,
    /// The shuffling generator's word position (a u128, as text: JSON numbers are f64).
    pub rng_word_pos: String,
    /// Rows of the current shuffle not yet taken.
    pub order: Vec<usize>,
    /// The steps' log so far.
    pub log: Vec<scorch_tables::TrainStep>,
    /// The node's own counters.
    #[serde(flatten)]
    pub extra: E,
}

impl<E> Position<E> {
    /// Where a run stands after `step` steps, with its shuffling generator `rng`.
    pub fn at(
        step: usize,
        rng: &rand_chacha::ChaCha8Rng,
        order: &[usize],
        log: &[scorch_tables::TrainStep],
        extra: E,
    ) -> Self {
        Self {
            step,
            rng_word_pos: rng.get_word_pos().to_string(),
            order: order.to_vec(),
            log: log.to_vec(),
            extra,
        }
    }

    /// Whether a run of `steps` steps that saves every `every` saves after `done` of them
    /// (never after the last: the outputs are written then).
    pub fn due(done: usize, every: usize, steps: usize) -> bool {
        every > 0 && done.is_multiple_of(every) && done < steps
    }

    /// The generator's word position.
    pub fn word_pos(&self) -> u128 {
        self.rng_word_pos.parse().unwrap_or(0)
    }
}

/// The resumable part of a training loop, the one `sft` and `rl` share: the data order
/// (shuffled passes over `rows` examples, one shuffle per pass), the steps' log, and when to
/// save. A node's own step (a supervised batch, a GRPO update) happens between
/// [`batch`](Self::batch) and [`finish_step`](Self::finish_step); a node with a state store
/// calls [`resume`](Self::resume) after restoring [`dir`](Self::dir) from it, and saves `dir`
/// to it whenever `finish_step` says it saved.
#[derive(Debug)]
pub struct TrainingRun {
    rng: rand_chacha::ChaCha8Rng,
    order: Vec<usize>,
    /// The steps' log so far.
    pub log: Vec<scorch_tables::TrainStep>,
    /// The first step to run: 0, or the one after the last saved.
    pub start: usize,
    rows: usize,
    steps: usize,
    save_every: usize,
    dir: std::path::PathBuf,
}

impl TrainingRun {
    /// A run of `steps` steps over `rows` examples, shuffled by `seed`, saving every
    /// `save_every` steps (0: never) into `dir`.
    pub fn new(
        seed: u64,
        rows: usize,
        steps: usize,
        save_every: usize,
        dir: std::path::PathBuf,
    ) -> Self {
        use rand::SeedableRng;
        Self {
            rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            order: Vec::new(),
            // `steps` is the user's (any number): room for a log of reasonable length.
            log: Vec::with_capacity(steps.min(1 << 16)),
            start: 0,
            rows,
            steps,
            save_every,
            dir,
        }
    }

    /// The folder the run saves into and resumes from.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Go on from the state saved in [`dir`](Self::dir): the trainer's weights and optimiser,
    /// the data order, the log. Returns the node's own counters.
    pub fn resume<E: serde::de::DeserializeOwned>(
        &mut self,
        trainer: &mut Trainer,
    ) -> Result<E, ModelError> {
        let saved: Position<E> = load_training(&self.dir, trainer)?;
        self.rng.set_word_pos(saved.word_pos());
        (self.start, self.order, self.log) = (saved.step, saved.order, saved.log);
        Ok(saved.extra)
    }

    /// The rows of the next batch of `size` (at most every row): taken from the current
    /// pass, a new shuffled pass begun whenever it runs out.
    pub fn batch(&mut self, size: usize) -> Vec<usize> {
        use rand::seq::SliceRandom;
        let size = size.min(self.rows);
        let mut pick = Vec::with_capacity(size);
        while pick.len() < size {
            if self.order.is_empty() {
                self.order = (0..self.rows).collect();
                self.order.shuffle(&mut self.rng);
            }
            pick.extend(self.order.pop());
        }
        pick
    }

    /// Log a finished step and, when one is due (never after the last step: the outputs are
    /// written then), save the run with the node's counters (`extra`, asked for only then)
    /// into [`dir`](Self::dir). `true`: it saved.
    pub fn finish_step<E: serde::Serialize>(
        &mut self,
        entry: scorch_tables::TrainStep,
        trainer: &Trainer,
        extra: impl FnOnce() -> E,
    ) -> Result<bool, ModelError> {
        self.log.push(entry);
        let done = self.log.len();
        if !Position::<E>::due(done, self.save_every, self.steps) {
            return Ok(false);
        }
        let position = Position::at(done, &self.rng, &self.order, &self.log, extra());
        save_training(&self.dir, trainer, &position)?;
        Ok(true)
    }
}

/// Save a training run into folder `dir`: the weights that `trainer` trains (every weight, or
/// a LoRA adapter's: a frozen base is not saved again), its state (`weights.safetensors`,
/// `optimizer.safetensors`) and `position` (`position.json`).
fn save_training<E: serde::Serialize>(
    dir: &std::path::Path,
    trainer: &Trainer,
    position: &Position<E>,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ModelError::Config(format!("creating {}: {e}", dir.display())))?;
    Tensor::write_safetensors(&trainer.vars, dir.join("weights.safetensors"))?;
    Tensor::write_safetensors(&trainer.state(), dir.join("optimizer.safetensors"))?;
    let json = serde_json::to_vec(position)
        .map_err(|e| ModelError::Config(format!("the training position: {e}")))?;
    std::fs::write(dir.join("position.json"), json)
        .map_err(|e| ModelError::Config(format!("writing the training position: {e}")))
}

/// Take up what [`save_training`] wrote into `dir`; returns the position.
fn load_training<E: serde::de::DeserializeOwned>(
    dir: &std::path::Path,
    trainer: &mut Trainer,
) -> Result<Position<E>, ModelError> {
    let weights = Tensor::read_safetensors(dir.join("weights.safetensors"))?;
    let state = Tensor::read_safetensors(dir.join("optimizer.safetensors"))?;
    trainer.restore(&weights, &state)?;
    let bytes = std::fs::read(dir.join("position.json"))
        .map_err(|e| ModelError::Config(format!("reading the training position: {e}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ModelError::Config(format!("the saved training position: {e}")))
}

/// AdamW's epsilon.
pub const EPS: f64 = 1e-8;

/// AdamW with the schedule, clipping and accumulation.
pub struct Trainer {
    /// The trainable variables, in the var store's order of names.
    vars: Vec<(String, Tensor)>,
    /// First and second moments, one of each per variable.
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    config: TrainConfig,
    step: usize,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("step", &self.step)
            .field("config", &self.config)
            .finish()
    }
}

impl Trainer {
    /// An optimiser over every trainable variable of `vs`.
    pub fn new(vs: &nn::VarStore, config: TrainConfig) -> Result<Self, ModelError> {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let zeros = |t: &Tensor| t.zeros_like().detach();
        Ok(Self {
            exp_avg: vars.iter().map(|(_, t)| zeros(t)).collect(),
            exp_avg_sq: vars.iter().map(|(_, t)| zeros(t)).collect(),
            vars,
            config,
            step: 0,
        })
    }

    /// The optimiser's state: each variable's moments and the step, as named tensors.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.vars.len() + 1);
        for (((name, _), m), v) in self.vars.iter().zip(&self.exp_avg).zip(&self.exp_avg_sq) {
            out.push((format!("exp_avg.{name}"), m.shallow_clone()));
            out.push((format!("exp_avg_sq.{name}"), v.shallow_clone()));
        }
        out.push(("step".into(), Tensor::from(self.step as i64)));
        out
    }

    /// Take up saved `weights` of the trained variables and the optimiser `state` that
    /// [`state`](Self::state) gave (of a trainer over the same variables).
    pub fn restore(
        &mut self,
        weights: &[(String, Tensor)],
        state: &[(String, Tensor)],
    ) -> Result<(), ModelError> {
        let get = |list: &'_ [(String, Tensor)], key: &str| {
            list.iter()
                .find(|(n, _)| n == key)
                .map(|(_, t)| t.shallow_clone())
                .ok_or_else(|| ModelError::Config(format!("the saved state has no `{key}`")))
        };
        tch::no_grad(|| -> Result<(), ModelError> {
            for (((name, var), m), v) in self
                .vars
                .iter()
                .zip(&mut self.exp_avg)
                .zip(&mut self.exp_avg_sq)
            {
                var.shallow_clone().f_copy_(&get(weights, name)?)?;
                m.f_copy_(&get(state, &format!("exp_avg.{name}"))?)?;
                v.f_copy_(&get(state, &format!("exp_avg_sq.{name}"))?)?;
            }
            Ok(())
        })?;
        self.step = usize::try_from(i64::try_from(get(state, "step")?)?).unwrap_or(0);
        Ok(())
    }

    /// Accumulate one step's gradients of `model` over `seqs` in micro-batches of at most `budget` padded
    /// tokens each, so memory stays bounded however big the step. `share(batch, rows, scored)`
    /// returns the loss of micro-batch `rows` (collated as `batch`) as its share of the step's
    /// loss, `scored` being the number of targets the whole step scores: the shares' gradients
    /// add up to the whole step's. Returns the step's loss, the sum of the shares.
    pub fn accumulate(
        &self,
        model: &Qwen2,
        seqs: &[(Vec<i64>, Vec<f32>)],
        budget: usize,
        pad: i64,
        device: Device,
        mut share: impl FnMut(&Batch, std::ops::Range<usize>, f64) -> Tensor,
    ) -> Result<f64, ModelError> {
        let scored = scored_tokens(seqs);
        let mut total = 0.0;
        for rows in micro_batches(seqs, budget) {
            let batch = collate(&seqs[rows.clone()], pad, device)?;
            let loss = share(&batch, rows, scored);
            total += f64::try_from(&loss).unwrap_or(f64::NAN);
            model.backward(&loss);
        }
        Ok(total)
    }

    /// Clip, apply the step's learning rate, update, zero the gradients. Returns (lr, grad norm).
    pub fn step(&mut self) -> Result<(f64, f64), ModelError> {
        let norm = tch::no_grad(|| -> Result<f64, ModelError> {
            let norms: Vec<Tensor> = self
                .vars
                .iter()
                .map(|(_, v)| v.grad())
                .filter(Tensor::defined)
                .map(|g| g.to_kind(Kind::Float).norm())
                .collect();
            if norms.is_empty() {
                return Ok(0.0);
            }
            let total = f64::try_from(Tensor::stack(&norms, 0).norm())?;
            if self.config.clip > 0.0 && total > self.config.clip {
                let k = self.config.clip / (total + 1e-6);
                for (_, v) in &self.vars {
                    let mut g = v.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(k);
                    }
                }
            }
            Ok(total)
        })?;
        let lr = lr_at(&self.config, self.step);
        self.step += 1;
        let (b1, b2) = self.config.betas;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        tch::no_grad(|| {
            for (((_, p), m), v) in self
                .vars
                .iter()
                .zip(&mut self.exp_avg)
                .zip(&mut self.exp_avg_sq)
            {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let mut p = p.shallow_clone();
                let _ = p.g_mul_scalar_(1.0 - lr * self.config.weight_decay);
                let _ = m.lerp_(&g, 1.0 - b1);
                let _ = v.g_mul_scalar_(b2);
                let _ = v.addcmul_(&g, &(&g * (1.0 - b2)));
                let denom = v.sqrt() / bc2.sqrt() + EPS;
                let _ = p.g_sub_(&(&*m / denom * (lr / bc1)));
                let _ = g.zero_();
            }
        });
        Ok((lr, norm))
    }

    /// Optimiser steps taken.
    pub fn steps(&self) -> usize {
        self.step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_larger_than_the_data_takes_each_row_once() {
        // `batch_size` is the user's: any number, the largest included, is a batch of at
        // most every row (it panicked reserving room for `usize::MAX` rows).
        let mut run = TrainingRun::new(7, 5, usize::MAX, 0, std::path::PathBuf::new());
        let mut pick = run.batch(usize::MAX);
        pick.sort_unstable();
        assert_eq!(pick, vec![0, 1, 2, 3, 4]);
        assert_eq!(run.batch(2).len(), 2);
    }

    #[test]
    fn micro_batches_respect_the_token_budget() {
        let seq = |n: usize| (vec![1i64; n], vec![1.0f32; n]);
        let seqs = vec![seq(10), seq(30), seq(20), seq(50), seq(5), seq(5)];
        let parts = micro_batches(&seqs, 60);
        assert_eq!(parts, vec![0..2, 2..3, 3..4, 4..6]);
        for r in &parts {
            let rows = &seqs[r.clone()];
            let widest = rows.iter().map(|s| s.0.len()).max().unwrap_or(0);
            assert!(rows.len() == 1 || rows.len() * widest <= 60, "{r:?}");
        }
        // A row over the budget still goes, alone; nothing is dropped or repeated.
        assert_eq!(micro_batches(&seqs, 40), vec![0..1, 1..2, 2..3, 3..4, 4..6]);
        assert_eq!(micro_batches(&seqs, 10_000), vec![0..6]);
        assert!(micro_batches(&[], 10).is_empty());
    }

    #[test]
    fn schedule_warms_up_then_decays_to_the_floor() {
        let c = TrainConfig {
            lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            min_lr_ratio: 0.1,
            ..Default::default()
        };
        assert!((lr_at(&c, 0) - 0.1).abs() < 1e-12);
        assert!((lr_at(&c, 9) - 1.0).abs() < 1e-12);
        assert!((lr_at(&c, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(&c, 60) - 0.55).abs() < 1e-9);
        assert!((lr_at(&c, 110) - 0.1).abs() < 1e-12);
        assert!((lr_at(&c, 500) - 0.1).abs() < 1e-12);
    }
}
