//! The memory plan of the training nodes (`sft`, `rl`): the peak a step of this Qwen2
//! implementation holds, counted from the tensors it allocates. docs/models.md states the formula
//! and BENCHMARKS.md how far it is from measured peaks.
//!
//! With P parameters, N tokens in a micro-batch (`micro_batch_tokens`), s bytes per value of
//! the compute kind (4 for f32, 2 for bf16), hidden width h, MLP width m, key/value width kv,
//! L layers and vocabulary V:
//!
//! - full fine-tuning: f32 weights, gradients and two AdamW moments, 16·P; in bf16 the
//!   products also hold a bf16 copy of every weight for the pass, 2·P;
//! - LoRA: the frozen base in the compute kind, s·P, and 16 bytes per adapter parameter;
//! - activations kept for the backward pass, per layer and token, A = s·(9h + 4m + 2kv) (2h
//!   instead of 2kv where grouped-query attention repeats keys and values; r more per adapted
//!   projection; 8h bytes more of float32 norm internals in bf16): the norms' inputs, scaled
//!   values and outputs, the rotated queries, attention's output and its contiguous copy,
//!   keys and values, and the MLP's four m-wide tensors;
//! - the loss head: float32 log-probabilities over the vocabulary, their gradient and the
//!   logits' gradient, 12·V bytes per token, at the top of the backward pass; a layer's
//!   backward pass holds gradients as large as its activations, A, while they are alive;
//! - with checkpointing, only each layer's input is kept, s·h per layer and token, and the
//!   layer being recomputed holds 2·A;
//! - the optimiser step (full fine-tuning): three float32 temporaries of the largest
//!   variable, after the pass has freed its activations.
//!
//! Peak = weights + gradients + moments + max(pass, step), with
//! pass = L·N·A + N·max(12·V, A) (checkpointing: L·N·s·h + N·max(12·V, 2·A)).

use std::num::Saturating as S;

use scorch_api::memory::{MemoryPart, MemoryPlan, PlanError};
use serde::Deserialize;

use crate::student::LoraParams;

/// The shape of a Qwen2 model, from its HF `config.json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Shape {
    /// V.
    pub vocab_size: u64,
    /// h.
    pub hidden_size: u64,
    /// m.
    pub intermediate_size: u64,
    /// L.
    pub num_hidden_layers: u64,
    /// Query heads.
    pub num_attention_heads: u64,
    /// Key/value heads.
    pub num_key_value_heads: u64,
    /// Head and embedding shared.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Rotary table length.
    #[serde(default = "d_positions")]
    pub max_position_embeddings: u64,
}

fn d_positions() -> u64 {
    32768
}

impl Shape {
    /// From a `config.json`'s value; the error names what is missing.
    pub fn from_config(config: &serde_json::Value) -> Result<Self, PlanError> {
        let bad = |reason: String| PlanError::BadConfig {
            path: "the model's config.json".into(),
            reason,
        };
        let s: Self = serde_json::from_value(config.clone()).map_err(|e| bad(e.to_string()))?;
        if s.num_attention_heads == 0
            || s.num_key_value_heads == 0
            || !s.hidden_size.is_multiple_of(s.num_attention_heads)
        {
            return Err(bad("heads do not divide the width".into()));
        }
        Ok(s)
    }

    fn head_dim(&self) -> u64 {
        self.hidden_size / self.num_attention_heads
    }

    // The counts saturate rather than overflow: a shape or a batch past any machine's memory
    // (a hostile config.json, a mistyped param) plans "too big", never a panic.
    fn kv(&self) -> u64 {
        self.num_key_value_heads.saturating_mul(self.head_dim())
    }

    /// Every parameter.
    pub fn params(&self) -> u64 {
        let (h, m, kv, v) = (
            S(self.hidden_size),
            S(self.intermediate_size),
            S(self.kv()),
            S(self.vocab_size),
        );
        let attention = h * h + S(2) * h * kv + (h + S(2) * kv) + h * h;
        let layer = attention + S(3) * h * m + S(2) * h;
        let head = if self.tie_word_embeddings {
            S(0)
        } else {
            v * h
        };
        (v * h + head + S(self.num_hidden_layers) * layer + h).0
    }

    /// Parameters outside the decoder layers: the embedding, the head (unless tied) and the
    /// final norm.
    pub fn root_params(&self) -> u64 {
        let head = if self.tie_word_embeddings { 0 } else { 1 };
        (S(1 + head) * S(self.vocab_size) * S(self.hidden_size) + S(self.hidden_size)).0
    }

    /// The (in, out) sizes of projection `name`.
    fn projection(&self, name: &str) -> (u64, u64) {
        let (h, m, kv) = (self.hidden_size, self.intermediate_size, self.kv());
        match name {
            "k_proj" | "v_proj" => (h, kv),
            "gate_proj" | "up_proj" => (h, m),
            "down_proj" => (m, h),
            _ => (h, h),
        }
    }

    /// Parameters of LoRA adapters `lora` on every layer.
    pub fn adapter_params(&self, lora: &LoraParams) -> u64 {
        let r = S(lora.rank.max(0) as u64);
        let per_layer = lora.targets.iter().fold(S(0), |sum, t| {
            let (i, o) = self.projection(t);
            sum + r * (S(i) + S(o))
        });
        (S(self.num_hidden_layers) * per_layer).0
    }
}

/// What a training node does with its model, as far as memory goes.
#[derive(Debug, Clone)]
pub struct Training {
    /// `cpu` or `cuda` (settled).
    pub device: String,
    /// bfloat16 products (else float32).
    pub bf16: bool,
    /// LoRA adapters, or full fine-tuning.
    pub lora: Option<LoraParams>,
    /// Most tokens in one forward and backward pass.
    pub tokens: u64,
    /// Activation checkpointing.
    pub checkpointing: bool,
    /// A frozen reference copy of the model (RL's KL term).
    pub reference: bool,
    /// Tokens of KV cache that in-process rollouts hold at once (0: rollouts elsewhere).
    pub rollout_tokens: u64,
    /// How many processes share the weights, gradients and optimiser state (FSDP over the
    /// world; 1: each process holds them whole, as the embedded trainer and DDP do).
    pub shards: u64,
}

/// The peak of `t` on a model of shape `s` (see the module's formula).
pub fn plan(s: &Shape, t: &Training) -> MemoryPlan {
    let mut p = parts(s, t, t.checkpointing);
    let other = parts(s, t, !t.checkpointing).peak;
    p.other_checkpointing = other;
    p
}

fn parts(s: &Shape, t: &Training, checkpointing: bool) -> MemoryPlan {
    let sz = S(if t.bf16 { 2 } else { 4 });
    let params = S(s.params());
    let (h, m, kv, l, v) = (
        S(s.hidden_size),
        S(s.intermediate_size),
        S(s.kv()),
        S(s.num_hidden_layers),
        S(s.vocab_size),
    );
    let n = S(t.tokens);
    let (weights, trained) = match &t.lora {
        Some(lora) => (sz * params, S(s.adapter_params(lora))),
        None => (S(4) * params, params),
    };
    let adapter_weights = if t.lora.is_some() {
        S(4) * trained
    } else {
        S(0)
    };
    // A bf16 copy of every weight held by the pass's products (full fine-tuning in bf16).
    let casts = if t.bf16 && t.lora.is_none() {
        S(2) * params
    } else {
        S(0)
    };
    // Keys and values as attention gets them: repeated to every query head under
    // grouped-query attention (the unrepeated ones are then freed).
    let keys_values = if kv < h { S(2) * h } else { S(2) * kv };
    let lora_acts = t.lora.as_ref().map_or(S(0), |lora| {
        S(lora.rank.max(0) as u64) * S(lora.targets.len() as u64)
    });
    let norms = if t.bf16 { S(8) * h } else { S(0) };
    let layer = n * (sz * (S(9) * h + keys_values + S(4) * m + lora_acts) + norms);
    let head = S(12) * v * n;
    // What is kept across layers, and what the pass adds at its peak: the head's gradients
    // at the top, or the layer whose backward pass runs (recomputed first, with
    // checkpointing).
    let (activations, top) = if checkpointing {
        (l * n * sz * h, head.max(S(2) * layer))
    } else {
        (l * layer, head.max(layer))
    };
    let rotary = S(2 * 4) * S(s.max_position_embeddings) * S(s.head_dim());
    let step = if t.lora.is_none() {
        let largest = (v * h).max(h * m);
        S(3 * 4) * largest
    } else {
        S(0)
    };
    let reference = if t.reference { sz * params } else { S(0) };
    let rollout = S(t.rollout_tokens) * S(2) * l * kv * sz;
    // Sharded (FSDP): each process keeps 1/shards of the state, and gathers whole the layer it
    // computes and the next one (prefetched), the root's embedding and head, and a layer's
    // gradients before they are reduced and scattered.
    let shards = t.shards.max(1);
    let weights = S((weights + adapter_weights).0.div_ceil(shards));
    let grads = S((S(4) * trained).0.div_ceil(shards));
    let moments = S((S(8) * trained).0.div_ceil(shards));
    let (gathered, casts) = if shards > 1 {
        let root = S(s.root_params());
        let layer_params = (params - root) / S(l.0.max(1));
        let whole = root + S(3) * layer_params;
        // bf16: autocast's copies are of the gathered weights only.
        let casts = if casts > S(0) { S(2) * whole } else { S(0) };
        (S(4) * whole, casts)
    } else {
        (S(0), casts)
    };
    let fixed = weights + grads + moments + rotary + reference + gathered;
    let pass = activations + top + casts;
    let peak = (fixed + pass.max(step).max(rollout)).0;
    let (weights, grads, moments, activations, top) = (
        (weights + rotary).0,
        grads.0,
        moments.0,
        activations.0,
        top.0,
    );
    let (gathered, casts, reference, rollout) = (gathered.0, casts.0, reference.0, rollout.0);
    let mut parts = vec![
        ("weights", weights),
        ("gradients", grads),
        ("optimizer", moments),
        ("activations", activations),
        ("backward top", top),
    ];
    if gathered > 0 {
        parts.push(("gathered layers", gathered));
    }
    if casts > 0 {
        parts.push(("bf16 copies", casts));
    }
    if reference > 0 {
        parts.push(("reference", reference));
    }
    if rollout > 0 {
        parts.push(("rollout cache", rollout));
    }
    MemoryPlan {
        device: t.device.clone(),
        parts: parts
            .into_iter()
            .map(|(name, bytes)| MemoryPart {
                name: name.into(),
                bytes,
            })
            .collect(),
        peak,
        other_checkpointing: peak,
        smaller: smaller(s, t),
    }
}

/// For a plan that may not fit: LoRA of rank 16 with checkpointing (and rollouts on a
/// server, for in-process ones), and its peak.
fn smaller(s: &Shape, t: &Training) -> Option<String> {
    if t.lora.is_some() && t.checkpointing && t.rollout_tokens == 0 {
        return None;
    }
    let lora = t.lora.clone().unwrap_or(LoraParams {
        rank: 16,
        alpha: 32.0,
        ..LoraParams::default()
    });
    let small = Training {
        lora: Some(lora.clone()),
        checkpointing: true,
        rollout_tokens: 0,
        ..t.clone()
    };
    let peak = parts(s, &small, true).peak;
    let server = if t.rollout_tokens > 0 {
        " and rollouts on a server (`rollout: {kind: endpoint, ...}`)"
    } else {
        ""
    };
    Some(format!(
        "`lora: {{rank: {}}}` with `gradient_checkpointing: true`{server} plans {} GiB",
        lora.rank,
        scorch_api::memory::gib(peak)
    ))
}

/// Where a training node's model shape comes from: its `init` params, or the base (else the
/// model) it is given.
pub fn source(init: Option<&crate::student::InitParams>) -> scorch_api::ModelSource {
    match init {
        Some(i) => scorch_api::ModelSource::Config(serde_json::json!({
            "vocab_size": i.vocab_size, "hidden_size": i.hidden_size,
            "intermediate_size": i.intermediate_size, "num_hidden_layers": i.num_hidden_layers,
            "num_attention_heads": i.num_attention_heads,
            "num_key_value_heads": i.num_key_value_heads,
            "max_position_embeddings": 1024, "tie_word_embeddings": true
        })),
        None => scorch_api::ModelSource::Inputs(vec!["base".into(), "model".into()]),
    }
}

/// The rule that plans `training` on whatever shape the node's model has.
pub fn rule(training: Training) -> scorch_api::MemoryRule {
    scorch_api::MemoryRule::new(move |config| {
        Shape::from_config(config).map(|shape| plan(&shape, &training))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qwen(size: &str) -> Shape {
        let (v, h, m, l, heads, kv, tie) = match size {
            "0.5b" => (151_936, 896, 4864, 24, 14, 2, true),
            _ => (152_064, 3584, 18_944, 28, 28, 4, false),
        };
        Shape {
            vocab_size: v,
            hidden_size: h,
            intermediate_size: m,
            num_hidden_layers: l,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            tie_word_embeddings: tie,
            max_position_embeddings: 32768,
        }
    }

    #[test]
    fn parameter_counts_match_the_published_models() {
        // Qwen2.5-0.5B: 494 M; Qwen2.5-7B: 7.62 B.
        let half = qwen("0.5b").params();
        assert!((493_000_000..495_000_000).contains(&half), "{half}");
        let seven = qwen("7b").params();
        assert!((7_600_000_000..7_640_000_000).contains(&seven), "{seven}");
        // All seven projections at rank 16 on the 7B model: 40.4 M.
        let lora = LoraParams {
            rank: 16,
            ..LoraParams::default()
        };
        assert_eq!(qwen("7b").adapter_params(&lora), 40_370_176);
    }

    #[test]
    fn sizes_past_any_machine_plan_as_too_big_without_overflowing() {
        // A hostile config.json and a mistyped micro-batch: every count saturates.
        let huge = Shape {
            vocab_size: u64::MAX,
            hidden_size: u64::MAX - 1,
            intermediate_size: u64::MAX,
            num_hidden_layers: u64::MAX,
            num_attention_heads: 1,
            num_key_value_heads: u64::MAX,
            tie_word_embeddings: false,
            max_position_embeddings: u64::MAX,
        };
        for (shape, tokens) in [(huge, 1), (qwen("7b"), u64::MAX)] {
            for lora in [None, Some(LoraParams::default())] {
                let t = Training {
                    device: "cuda".into(),
                    bf16: true,
                    lora,
                    tokens,
                    checkpointing: false,
                    reference: true,
                    rollout_tokens: u64::MAX,
                    shards: 16,
                };
                let p = plan(&shape, &t);
                assert_eq!(p.peak, u64::MAX, "{}", p.describe());
            }
        }
    }

    #[test]
    fn full_fine_tuning_of_7b_needs_more_than_an_h100_and_lora_fits() {
        let t = Training {
            device: "cuda".into(),
            bf16: true,
            lora: None,
            tokens: 4096,
            checkpointing: true,
            reference: false,
            rollout_tokens: 0,
            shards: 1,
        };
        let full = plan(&qwen("7b"), &t);
        assert!(full.peak > 130 << 30, "{}", full.describe());
        let lora = plan(
            &qwen("7b"),
            &Training {
                lora: Some(LoraParams::default()),
                ..t
            },
        );
        assert!(lora.peak < 40 << 30, "{}", lora.describe());
        assert!(lora.peak < lora.other_checkpointing);
        assert!(full.smaller.is_some_and(|s| s.contains("rank: 16")));
    }

    #[test]
    fn fsdp_over_sixteen_gpus_fits_a_full_7b_fine_tune_in_an_h100() {
        let t = Training {
            device: "cuda".into(),
            bf16: true,
            lora: None,
            tokens: 4096,
            checkpointing: true,
            reference: false,
            rollout_tokens: 0,
            shards: 16,
        };
        let one = plan(
            &qwen("7b"),
            &Training {
                shards: 1,
                ..t.clone()
            },
        );
        let sharded = plan(&qwen("7b"), &t);
        let part = |p: &MemoryPlan, name: &str| {
            p.parts
                .iter()
                .find(|x| x.name == name)
                .map_or(0, |x| x.bytes)
        };
        // Weights, gradients and AdamW's moments (16 bytes a parameter) split 16 ways.
        for name in ["gradients", "optimizer"] {
            assert_eq!(
                part(&sharded, name),
                part(&one, name).div_ceil(16),
                "{name}"
            );
        }
        let state =
            part(&sharded, "weights") + part(&sharded, "gradients") + part(&sharded, "optimizer");
        let p = qwen("7b").params();
        // All but the rotary table (32 MiB for 7B), which every process keeps whole.
        let rotary = 2 * 4 * 32768 * (3584 / 28);
        assert!(state.abs_diff(p + rotary) < 1 << 10, "{state}");
        assert!(part(&sharded, "gathered layers") > 0);
        assert!(sharded.peak < 80 << 30, "{}", sharded.describe());
        assert!(one.peak > 130 << 30, "{}", one.describe());
    }
}
