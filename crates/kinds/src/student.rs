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
    /// has not seen (measured: 4.5% against 43-66% with digits; see the README).
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
/// Mixed precision keeps the weights, their gradients and the optimiser state in float32
/// (checkpoints stay float32 and HF-compatible) and runs the matrix products in bfloat16:
/// every linear layer casts its weight to the activations' kind on the way in, and autograd
/// casts the gradient back. Norms, softmax, rotary tables and the loss run in float32.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bfloat16 compute where the hardware has it (CUDA; a CPU with AVX512-BF16 or AMX),
    /// float32 elsewhere. Like `device: auto`, the same params then train with different
    /// arithmetic on different machines.
    #[default]
    Auto,
    /// float32 throughout.
    F32,
    /// bfloat16 compute over float32 weights, whatever the hardware (on a CPU without
    /// bfloat16 instructions this is several times slower than float32).
    Bf16,
}

impl Precision {
    /// Whether this is the default (`auto`): params leave it out, so workflows written before
    /// the param existed keep their cache keys.
    pub fn is_auto(&self) -> bool {
        *self == Self::Auto
    }
}
