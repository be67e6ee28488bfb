//! GRPO's objective for one micro-batch, in the formulation of TRL's `GRPOTrainer`
//! (`_compute_loss`, token-level importance weights): per scored token,
//! `-min(r * A, clip(r, 1 - eps, 1 + eps) * A)` with `r = exp(logp - old)`, plus
//! `beta * (exp(ref - logp) - (ref - logp) - 1)` when a reference is given, summed over the
//! scored tokens and divided by the step's scored tokens (TRL's `bnpo` normalisation for one
//! micro-batch, `dapo`'s across several). `tests/trl_loss.rs` holds it against TRL's own code.

use tch::{Kind, Tensor};

/// One micro-batch's tensors: `[rows, tokens]` log-probabilities of the taken tokens now
/// (`logp`), under the policy that sampled them (`old`), under the reference (`reference`),
/// the `[rows, 1]` advantages and the `[rows, tokens]` loss mask.
#[derive(Debug)]
pub struct Batch<'a> {
    /// Now, with gradient.
    pub logp: &'a Tensor,
    /// When sampled (no gradient).
    pub old: &'a Tensor,
    /// Under the reference policy, for the KL term.
    pub reference: Option<&'a Tensor>,
    /// Per row.
    pub advantages: &'a Tensor,
    /// 1 where a token is scored.
    pub mask: &'a Tensor,
}

/// What a step's diagnostics are made of, summed over its micro-batches and passes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tally {
    /// Scored tokens.
    pub tokens: f64,
    /// Of them, with `r < 1 - eps` and a negative advantage (clipped below).
    pub clipped_low: f64,
    /// With `r > 1 + eps` and a positive advantage (clipped above).
    pub clipped_high: f64,
    /// Sum of the per-token KL estimate to the reference (0 without one).
    pub kl: f64,
    /// Sum of the taken tokens' negative log-probabilities (a sampled estimate of entropy).
    pub nll: f64,
}

impl Tally {
    /// The share of scored tokens whose ratio was clipped.
    pub fn clip_fraction(&self) -> f64 {
        (self.clipped_low + self.clipped_high) / self.tokens.max(1.0)
    }
    /// The mean per-token KL estimate to the reference.
    pub fn kl_mean(&self) -> f64 {
        self.kl / self.tokens.max(1.0)
    }
    /// The mean negative log-probability of the taken tokens.
    pub fn entropy(&self) -> f64 {
        self.nll / self.tokens.max(1.0)
    }
}

fn total(t: &Tensor) -> f64 {
    f64::try_from(t.sum(Kind::Double)).unwrap_or(f64::NAN)
}

/// The loss of `b` (its share of the step's, `scored` being the step's scored tokens), with
/// `clip_eps` and KL weight `kl_coef`; adds what it saw to `tally`.
pub fn grpo_loss(
    b: &Batch<'_>,
    clip_eps: f64,
    kl_coef: f64,
    scored: f64,
    tally: &mut Tally,
) -> Tensor {
    let ratio = (b.logp - b.old).exp();
    let unclipped = &ratio * b.advantages;
    let clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * b.advantages;
    let surrogate = unclipped.min_other(&clipped);
    let pg = -(surrogate * b.mask).sum(Kind::Float) / scored;
    tch::no_grad(|| {
        let r = ratio.detach();
        let low = r
            .lt(1.0 - clip_eps)
            .logical_and(&b.advantages.lt(0.0))
            .to_kind(Kind::Float);
        let high = r
            .gt(1.0 + clip_eps)
            .logical_and(&b.advantages.gt(0.0))
            .to_kind(Kind::Float);
        tally.tokens += total(b.mask);
        tally.clipped_low += total(&(low * b.mask));
        tally.clipped_high += total(&(high * b.mask));
        tally.nll -= total(&(b.logp.detach() * b.mask));
    });
    match b.reference {
        Some(reference) if kl_coef > 0.0 => {
            let d = reference - b.logp;
            let kl = (d.exp() - &d - 1.0) * b.mask;
            tally.kl += tch::no_grad(|| total(&kl.detach()));
            pg + kl.sum(Kind::Float) / scored * kl_coef
        }
        _ => pg,
    }
}

/// The share of groups (consecutive runs of `group` rewards) whose rewards are all equal:
/// their advantages are 0 and they teach nothing.
pub fn zero_variance_share(rewards: &[f64], group: usize) -> f64 {
    let groups: Vec<&[f64]> = rewards.chunks(group.max(1)).collect();
    let flat = groups
        .iter()
        .filter(|g| g.iter().all(|r| (r - g[0]).abs() < 1e-12))
        .count();
    flat as f64 / groups.len().max(1) as f64
}
