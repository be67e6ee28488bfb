//! GRPO where the answer is known: a five-armed bandit whose first arm alone pays 1. A
//! softmax policy starts uniform (expected reward 0.2); the rl node's own advantages, loss
//! and AdamW must lift its expected reward above 0.9 within 60 steps of 4 groups of 8, on
//! three seeds, on-policy and with four
//! passes per batch (where the ratio moves off 1 and clipping acts). The KL term to the
//! starting policy is held to what it must do: keep the policy closer to the start.

#![allow(clippy::unwrap_used)]

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scorch_model::train::{TrainConfig, Trainer};
use scorch_rl::advantages;
use scorch_rl::loss::{Batch, Tally, grpo_loss};
use tch::{Device, Kind, Tensor, nn};

const ARMS: i64 = 5;
const GROUPS: usize = 4;
const GROUP: usize = 8;
const STEPS: usize = 60;

struct Outcome {
    /// Expected reward (the paying arm's probability) before each step, and after the last.
    expected: Vec<f64>,
    /// Mean sampled reward per step.
    rewards: Vec<f64>,
    /// The step's tallies.
    tallies: Vec<Tally>,
    /// KL(start || end) of the final policy, exactly.
    kl_to_start: f64,
}

fn train(seed: u64, epochs: usize, kl_coef: f64) -> Outcome {
    let vs = nn::VarStore::new(Device::Cpu);
    let logits = vs.root().zeros("logits", &[ARMS]);
    let start = logits.log_softmax(0, Kind::Float).detach();
    let mut trainer = Trainer::new(
        &vs,
        TrainConfig {
            lr: 0.1,
            warmup_steps: 1,
            total_steps: STEPS * epochs,
            min_lr_ratio: 1.0,
            weight_decay: 0.0,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut rewards, mut tallies, mut expected) = (Vec::new(), Vec::new(), Vec::new());
    let probs_now = || -> Vec<f64> {
        Vec::<f64>::try_from(tch::no_grad(|| logits.softmax(0, Kind::Double))).unwrap()
    };
    for _ in 0..STEPS {
        let probs = probs_now();
        expected.push(probs[0]);
        let actions: Vec<i64> = (0..GROUPS * GROUP)
            .map(|_| {
                let u: f64 = rng.random();
                let mut acc = 0.0;
                probs
                    .iter()
                    .position(|p| {
                        acc += p;
                        u < acc
                    })
                    .unwrap_or(probs.len() - 1) as i64
            })
            .collect();
        let reward: Vec<f64> = actions
            .iter()
            .map(|&a| if a == 0 { 1.0 } else { 0.0 })
            .collect();
        rewards.push(reward.iter().sum::<f64>() / reward.len() as f64);
        let adv: Vec<f32> = reward
            .chunks(GROUP)
            .flat_map(advantages)
            .map(|a| a as f32)
            .collect();
        let adv = Tensor::from_slice(&adv).unsqueeze(1);
        let index = Tensor::from_slice(&actions);
        let taken = |l: &Tensor| {
            l.log_softmax(0, Kind::Float)
                .index_select(0, &index)
                .unsqueeze(1)
        };
        let old = tch::no_grad(|| taken(&logits));
        let reference = start.index_select(0, &index).unsqueeze(1);
        let mask = Tensor::ones([actions.len() as i64, 1], (Kind::Float, Device::Cpu));
        let mut tally = Tally::default();
        for _ in 0..epochs {
            let logp = taken(&logits);
            let loss = grpo_loss(
                &Batch {
                    logp: &logp,
                    old: &old,
                    reference: Some(&reference),
                    advantages: &adv,
                    mask: &mask,
                },
                0.2,
                kl_coef,
                actions.len() as f64,
                &mut tally,
            );
            loss.backward();
            trainer.step().unwrap();
        }
        tallies.push(tally);
    }
    expected.push(probs_now()[0]);
    let end = tch::no_grad(|| logits.log_softmax(0, Kind::Double));
    let start = start.to_kind(Kind::Double);
    let kl_to_start = f64::try_from((start.exp() * (&start - &end)).sum(Kind::Double)).unwrap();
    Outcome {
        expected,
        rewards,
        tallies,
        kl_to_start,
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

#[test]
fn grpo_learns_the_paying_arm_from_below_0_3_to_above_0_9() {
    for epochs in [1, 4] {
        for seed in [1, 2, 3] {
            let o = train(seed, epochs, 0.0);
            let (first, last) = (o.expected[0], o.expected[STEPS]);
            assert!(
                first < 0.3,
                "seed {seed}, {epochs} passes: starts at {first}"
            );
            assert!(
                last > 0.9,
                "seed {seed}, {epochs} passes: expected reward {last} after {STEPS} steps ({:?})",
                o.expected
            );
            let sampled = mean(&o.rewards[STEPS - 5..]);
            assert!(
                sampled > 0.8,
                "seed {seed}: the last steps' samples earn {sampled}"
            );
            let clipped: f64 = o.tallies.iter().map(Tally::clip_fraction).sum();
            if epochs == 1 {
                assert_eq!(
                    clipped, 0.0,
                    "on-policy, the ratio is 1: nothing is clipped"
                );
            } else {
                assert!(
                    clipped > 0.0,
                    "later passes move the ratio past the clip range"
                );
            }
        }
    }
}

#[test]
fn the_kl_term_holds_the_policy_nearer_its_start() {
    for seed in [1, 2, 3] {
        let free = train(seed, 1, 0.0);
        let held = train(seed, 1, 0.5);
        assert!(
            held.kl_to_start < 0.8 * free.kl_to_start,
            "seed {seed}: KL to the start {} with the term, {} without",
            held.kl_to_start,
            free.kl_to_start
        );
        assert!(held.tallies.iter().skip(1).all(|t| t.kl_mean() > 0.0));
    }
}
