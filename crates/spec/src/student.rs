//! What a student is: its size and chat format when trained from scratch, and the precision
//! it trains in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A from-scratch student.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InitParams {
    /// Tokenizer size (byte-level BPE trained on the trajectories).
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    /// Split numbers into digits (as Qwen's tokenizer does). Off, every number is a token of
    /// its own that the student sees a few times at most: it cannot learn to copy numbers it
    /// has not seen (measured: 4.5% against 43-66% with digits; see docs/score.md).
    #[serde(default = "yes")]
    pub split_digits: bool,
    /// How the student sees a chat: `compact` (one token per turn start, no system turn: about
    /// half the tokens of ChatML for the built-in suite) or `chatml`. Recorded in the
    /// checkpoint, so `rollout`, `eval`, `rl` and `serve` render chats the same way.
    #[serde(default = "d_chat")]
    pub chat_format: ChatFormat,
    /// Residual width.
    #[serde(default = "d_hidden")]
    pub hidden_size: i64,
    /// Layers.
    #[serde(default = "d_layers")]
    pub num_hidden_layers: i64,
    /// Attention heads.
    #[serde(default = "d_heads")]
    pub num_attention_heads: i64,
    /// Key/value heads.
    #[serde(default = "d_heads")]
    pub num_key_value_heads: i64,
    /// MLP width.
    #[serde(default = "d_mlp")]
    pub intermediate_size: i64,
}

fn d_chat() -> ChatFormat {
    ChatFormat::Compact
}
fn d_vocab() -> usize {
    2000
}
fn d_hidden() -> i64 {
    192
}
fn d_layers() -> i64 {
    4
}
fn d_heads() -> i64 {
    6
}
fn d_mlp() -> i64 {
    512
}

fn yes() -> bool {
    true
}

/// How a model sees a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChatFormat {
    /// `<|im_start|>role\ncontent<|im_end|>\n` (Qwen and most HF chat models).
    #[default]
    Chatml,
    /// One token per turn start, no system turn, no newlines between turns.
    Compact,
}

impl ChatFormat {
    /// Its name in configs and params.
    pub fn name(self) -> &'static str {
        match self {
            Self::Chatml => "chatml",
            Self::Compact => "compact",
        }
    }
}

/// The `precision` param of the training nodes.
///
/// `auto` is settled before the cache key is computed ([`Precision::settle`]): bfloat16 on
/// CUDA, float32 on every CPU (see docs/models.md for why).
///
/// Mixed precision keeps the weights, their gradients and the optimiser state in float32
/// (checkpoints stay float32 and HF-compatible) and runs the matrix products in bfloat16:
/// every linear layer casts its weight to the activations' kind on the way in, and autograd
/// casts the gradient back. Norms, softmax, rotary tables and the loss run in float32.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bfloat16 compute on CUDA, float32 on a CPU: settled for the node's device before its
    /// cache key is computed, so the key names the arithmetic that ran.
    #[default]
    Auto,
    /// float32 throughout.
    F32,
    /// bfloat16 compute over float32 weights, whatever the hardware (on a CPU without
    /// bfloat16 instructions this is several times slower than float32).
    Bf16,
}

impl Precision {
    /// Settle `auto` for a node on `device` (a settled device: `cpu` or `cuda`).
    pub fn settle(&mut self, device: &str) {
        if self.is_auto() {
            *self = if device == "cuda" {
                Self::Bf16
            } else {
                Self::F32
            };
        }
    }

    /// Whether this is the default (`auto`), which params as written leave out (settled
    /// params never hold it: see [`Precision::settle`]).
    pub fn is_auto(&self) -> bool {
        *self == Self::Auto
    }
}

/// The projections LoRA can adapt, by their HF module names.
pub const LORA_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// The `lora` param of the training nodes: train low-rank adapters on a frozen base instead
/// of every weight. The checkpoint is then a PEFT adapter folder (`adapter_config.json`,
/// `adapter_model.safetensors`) that records its base by content hash.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoraParams {
    /// The adapters' rank r (PEFT's `r`).
    #[serde(default = "d_rank")]
    pub rank: i64,
    /// The scale's numerator: the update is `alpha / rank · B·A` (PEFT's `lora_alpha`).
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    /// Dropout on the adapters' input while training (PEFT's `lora_dropout`).
    #[serde(default)]
    pub dropout: f64,
    /// The projections adapted, by HF module name (PEFT's `target_modules`).
    #[serde(default = "d_targets")]
    pub targets: Vec<String>,
}

fn d_rank() -> i64 {
    8
}
fn d_alpha() -> f64 {
    16.0
}
fn d_targets() -> Vec<String> {
    LORA_MODULES.iter().map(|m| (*m).to_owned()).collect()
}

impl Default for LoraParams {
    fn default() -> Self {
        Self {
            rank: d_rank(),
            alpha: d_alpha(),
            dropout: 0.0,
            targets: d_targets(),
        }
    }
}

impl LoraParams {
    /// Check the values: a positive rank and alpha, a dropout in [0, 1), targets that exist.
    /// The error names the field under `lora`.
    pub fn check(&self) -> Result<(), scorch_api::ParamError> {
        use scorch_api::ParamError;
        if self.rank <= 0 {
            return Err(ParamError::new(
                "lora.rank",
                format!("the rank must be positive (got {})", self.rank),
            ));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(ParamError::new(
                "lora.alpha",
                format!("alpha must be a positive number (got {})", self.alpha),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ParamError::new(
                "lora.dropout",
                format!("dropout must be in [0, 1) (got {})", self.dropout),
            ));
        }
        if self.targets.is_empty() {
            return Err(ParamError::new(
                "lora.targets",
                "name at least one projection to adapt",
            ));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !LORA_MODULES.contains(&t.as_str()) {
                let mut e = ParamError::new(
                    format!("lora.targets.{i}"),
                    format!(
                        "no module `{t}` in a Qwen2 decoder layer (modules: {})",
                        LORA_MODULES.join(", ")
                    ),
                );
                e.hint = scorch_api::did_you_mean(t, LORA_MODULES)
                    .map(|c| format!("did you mean `{c}`?"));
                return Err(e);
            }
        }
        Ok(())
    }
}

/// `gradient_checkpointing` recomputes each layer in the backward pass; a LoRA dropout would
/// draw a different mask the second time, so the two do not go together.
pub fn check_checkpointing(
    on: bool,
    lora: Option<&LoraParams>,
) -> Result<(), scorch_api::ParamError> {
    match lora {
        Some(l) if on && l.dropout > 0.0 => Err(scorch_api::ParamError::new(
            "gradient_checkpointing",
            format!(
                "activation checkpointing recomputes each layer, and LoRA's dropout ({}) would \
                 drop different inputs the second time: set `lora.dropout: 0` or turn \
                 checkpointing off",
                l.dropout
            ),
        )),
        _ => Ok(()),
    }
}
