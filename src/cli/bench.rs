//! `scorch bench`: the student's training and generation throughput on a named model size,
//! with random weights, where scorch runs (no cargo needed: this is what a GPU machine runs).

use clap::{Args, Subcommand, ValueEnum};
use scorch_engine::error::EngineError;
use scorch_model::bench::{GenerateBench, TrainBench, generation, named_config, train};
use scorch_model::precision::Precision;

use super::Failure;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// AdamW steps on random sequences: tokens/s, achieved FLOP/s and MFU.
    Train(TrainArgs),
    /// Greedy generation of random prompts with the KV cache: new tokens/s.
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Model size: `embedded` or `qwen2-0.5b`.
    #[arg(long, default_value = "embedded")]
    model: String,
    /// `auto`, `cpu` or `cuda`.
    #[arg(long, default_value = "auto")]
    device: String,
    /// `auto`, `f32` or `bf16`.
    #[arg(long, value_enum, default_value = "auto")]
    precision: PrecisionArg,
    /// Sequences at once.
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    common: Common,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 512)]
    seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// The device's peak FLOP/s in TFLOP/s at this precision, to report MFU (H100/H200 SXM,
    /// dense bfloat16: 989).
    #[arg(long)]
    peak_tflops: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    #[command(flatten)]
    common: Common,
    /// Prompt tokens per sequence.
    #[arg(long, default_value_t = 128)]
    prompt: usize,
    /// New tokens per sequence.
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PrecisionArg {
    Auto,
    F32,
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

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Engine(EngineError::usage(e.to_string()))
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Engine(EngineError::new(
        scorch_engine::error::EngineErrorKind::Io,
        e.to_string(),
    ))
}

fn positive(name: &str, n: usize) -> Result<(), Failure> {
    if n == 0 {
        return Err(usage(format!("--{name} must be positive")));
    }
    Ok(())
}

/// Run a benchmark and print one JSON line with what it measured.
pub(crate) fn bench(command: BenchCommand) -> Result<(), Failure> {
    match command {
        BenchCommand::Train(a) => {
            positive("batch", a.common.batch)?;
            positive("seq", a.seq)?;
            positive("steps", a.steps)?;
            let config = named_config(&a.common.model).map_err(usage)?;
            if a.seq > config.max_position_embeddings as usize {
                return Err(usage(format!(
                    "--seq {} is longer than the model's {} positions",
                    a.seq, config.max_position_embeddings
                )));
            }
            let (device, _) = scorch_model::pick_device(&a.common.device).map_err(usage)?;
            let r = train(&TrainBench {
                config,
                batch: a.common.batch,
                seq: a.seq,
                steps: a.steps,
                warmup: a.warmup,
                device,
                precision: a.common.precision.into(),
            })
            .map_err(failed)?;
            let mut json = serde_json::to_value(&r).map_err(failed)?;
            json["bench"] = "train".into();
            json["model"] = a.common.model.into();
            json["device"] = format!("{device:?}").into();
            json["batch"] = a.common.batch.into();
            json["seq"] = a.seq.into();
            if let Some(peak) = a.peak_tflops {
                json["mfu"] = (r.flops_per_s / (peak * 1e12)).into();
            }
            outln!("{json}");
        }
        BenchCommand::Generate(a) => {
            positive("batch", a.common.batch)?;
            positive("prompt", a.prompt)?;
            positive("new-tokens", a.new_tokens)?;
            let config = named_config(&a.common.model).map_err(usage)?;
            let (device, _) = scorch_model::pick_device(&a.common.device).map_err(usage)?;
            let kind = Precision::from(a.common.precision).compute_kind(device);
            let r = generation(&GenerateBench {
                config,
                batch: a.common.batch,
                prompt: a.prompt,
                new_tokens: a.new_tokens,
                runs: a.runs,
                device,
                kind,
            })
            .map_err(failed)?;
            let mut json = serde_json::to_value(&r).map_err(failed)?;
            json["bench"] = "generate".into();
            json["model"] = a.common.model.into();
            json["device"] = format!("{device:?}").into();
            json["batch"] = a.common.batch.into();
            json["prompt"] = a.prompt.into();
            json["new_tokens"] = a.new_tokens.into();
            outln!("{json}");
        }
    }
    Ok(())
}
