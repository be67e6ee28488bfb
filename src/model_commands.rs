//! The commands that need libtorch, `serve` and `bench`, declared once for both binaries:
//! `scorch` lists them in its help and hands them to `scorch-worker`, which runs them.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use scorch_kinds::student::Precision;

/// A command that runs in `scorch-worker`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Serve a checkpoint folder as an OpenAI-compatible endpoint.
    Serve(ServeArgs),
    /// Measure the student's training or generation throughput (random weights).
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `serve`'s arguments.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// An HF-layout checkpoint folder, or a store reference: `RUN:NODE[.OUTPUT]`, or
    /// `NODE[.OUTPUT]` for the newest run with it (the `checkpoint` output by default).
    pub checkpoint: PathBuf,
    /// Artifact store URL for a reference (default: file://.scorch).
    #[arg(long, env = "SCORCH_STORE")]
    pub store: Option<String>,
    /// Address to listen on (port 0 picks a free one; the URL is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: std::net::SocketAddr,
    /// `auto`, `cpu` or `cuda`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// The model name clients use (default: the folder's name).
    #[arg(long)]
    pub name: Option<String>,
    /// The base of a LoRA adapter given as the checkpoint: a folder or a store reference
    /// (the adapter must record this base's content hash).
    #[arg(long)]
    pub base: Option<PathBuf>,
}

/// `bench`'s subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// AdamW steps on random sequences: tokens/s, achieved FLOP/s and MFU.
    Train(TrainArgs),
    /// Greedy generation of random prompts with the KV cache: new tokens/s.
    Generate(GenerateArgs),
    /// Episodes against a mock OpenAI-compatible server with a fixed number of slots and
    /// long-tailed reply times, tools of a given cost: episodes/s of the independent path
    /// and of the lock-step one, against the server's capacity.
    Rollout(RolloutArgs),
    /// Tool calls: an episode's first python step (its interpreter started inside the
    /// boundary), a later step on the interpreter it keeps, and a calculator step.
    Tool(ToolArgs),
}

/// `bench tool`'s arguments.
#[derive(Debug, Args)]
pub struct ToolArgs {
    /// Calls of each kind (medians are reported).
    #[arg(long, default_value_t = 20)]
    pub calls: usize,
    /// The python tool's boundary: `bwrap` or `none`.
    #[arg(long, default_value = "bwrap")]
    pub sandbox: String,
}

/// `bench rollout`'s arguments.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Episodes.
    #[arg(long, default_value_t = 64)]
    pub episodes: usize,
    /// The mock server's concurrent slots (its batch size).
    #[arg(long, default_value_t = 4)]
    pub slots: usize,
    /// Code steps per episode (plus a plan and an answer).
    #[arg(long, default_value_t = 3)]
    pub tool_calls: usize,
    /// Seconds per tool call.
    #[arg(long, default_value_t = 0.3)]
    pub tool_s: f64,
    /// Reply time of most requests, seconds.
    #[arg(long, default_value_t = 0.05)]
    pub fast_s: f64,
    /// Reply time of the slow ones, seconds.
    #[arg(long, default_value_t = 1.5)]
    pub slow_s: f64,
    /// Share of slow replies.
    #[arg(long, default_value_t = 0.1)]
    pub slow_share: f64,
    /// Tool calls at once on the independent path (default: one per episode, since the
    /// bench's tool waits rather than computes; the lock-step path runs them one at a time,
    /// as it did before).
    #[arg(long)]
    pub tool_workers: Option<usize>,
}

/// What both benchmarks take.
#[derive(Debug, Args)]
pub struct Common {
    /// Model size: `embedded`, `qwen2-50m`, `qwen2-0.5b` or `qwen2.5-7b`.
    #[arg(long, default_value = "embedded")]
    pub model: String,
    /// `auto`, `cpu` or `cuda`.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// `auto`, `f32` or `bf16`.
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: PrecisionArg,
    /// Sequences at once.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
}

/// `bench train`'s arguments.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Model, device, precision, batch.
    #[command(flatten)]
    pub common: Common,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 512)]
    pub seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// The device's peak FLOP/s in TFLOP/s at this precision, to report MFU (H100/H200 SXM,
    /// dense bfloat16: 989).
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Train LoRA adapters of this rank on every projection (alpha twice the rank) over a
    /// frozen base, instead of every weight.
    #[arg(long, value_name = "RANK")]
    pub lora: Option<i64>,
    /// Activation checkpointing per decoder layer.
    #[arg(long)]
    pub checkpointing: bool,
    /// RL steps: sample this many tokens of each sequence with the model, then a
    /// policy-gradient update on them.
    #[arg(long, value_name = "NEW_TOKENS")]
    pub rl: Option<usize>,
}

/// `bench generate`'s arguments.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model, device, precision (the weights' kind), batch.
    #[command(flatten)]
    pub common: Common,
    /// Prompt tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub prompt: usize,
    /// New tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// `--precision`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    /// bf16 where the hardware has it.
    Auto,
    /// float32.
    F32,
    /// bfloat16.
    Bf16,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Auto => Precision::Auto,
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Bf16 => Precision::Bf16,
        }
    }
}
