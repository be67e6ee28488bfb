//! Throughput of the student's two hot loops, training and generation, on a named model size
//! with random weights and random tokens: what `scorch bench` and the model benchmark time.

use std::time::Instant;

use tch::{Device, Kind, Tensor, nn};

use crate::ModelError;
use crate::checkpoint::hf_init;
use crate::generate::{Sampling, generate};
use scorch_kinds::student::Precision;

use crate::precision::ComputeKind;
use crate::qwen2::{Config, Qwen2};
use crate::train::{TrainConfig, Trainer, masked_nll};

/// The configuration of a named model size: `embedded` (the built-in student, 1.8 M
/// parameters with a 2,000-token vocabulary) or `qwen2-0.5b` (Qwen2-0.5B's published config).
pub fn named_config(name: &str) -> Result<Config, ModelError> {
    let json = match name {
        "embedded" => serde_json::json!({
            "vocab_size": 2000, "hidden_size": 192, "intermediate_size": 512,
            "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 6,
            "max_position_embeddings": 1024, "tie_word_embeddings": true
        }),
        "qwen2-0.5b" => serde_json::json!({
            "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": true
        }),
        other => {
            return Err(ModelError::Config(format!(
                "unknown model size `{other}` (embedded, qwen2-0.5b)"
            )));
        }
    };
    serde_json::from_value(json).map_err(|e| ModelError::Config(e.to_string()))
}

/// Parameters that take part in matrix products: every projection and the output head (a tied
/// head counted once). The embedding lookup is not a product.
pub fn matmul_params(c: &Config) -> i64 {
    let hd = c.head_dim();
    let attention = c.hidden_size * hd * (2 * c.num_attention_heads + 2 * c.num_key_value_heads);
    let mlp = 3 * c.hidden_size * c.intermediate_size;
    c.num_hidden_layers * (attention + mlp) + c.vocab_size * c.hidden_size
}

/// Training FLOPs per token at sequence length `seq`, as PaLM counts them (appendix B):
/// 6 x the matmul parameters, plus 12 x layers x width x sequence for attention.
pub fn train_flops_per_token(c: &Config, seq: usize) -> f64 {
    6.0 * matmul_params(c) as f64 + 12.0 * (c.num_hidden_layers * c.hidden_size) as f64 * seq as f64
}

/// A training benchmark: AdamW steps on `batch` random sequences of `seq` tokens, every token
/// in the loss, one micro-batch per step.
#[derive(Debug, Clone)]
pub struct TrainBench {
    /// The model.
    pub config: Config,
    /// Sequences per step.
    pub batch: usize,
    /// Tokens per sequence.
    pub seq: usize,
    /// Timed steps (after `warmup` untimed ones).
    pub steps: usize,
    /// Untimed steps first (allocator, kernels' autotuning).
    pub warmup: usize,
    /// Where.
    pub device: Device,
    /// Float32 or bfloat16 compute (weights and optimiser state are float32 either way).
    pub precision: Precision,
}

/// What a training benchmark measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainReport {
    /// Tokens trained on per second over the timed steps.
    pub tokens_per_s: f64,
    /// Seconds per step (median).
    pub step_s: f64,
    /// All parameters.
    pub params: i64,
    /// FLOPs per token ([`train_flops_per_token`]).
    pub flops_per_token: f64,
    /// Achieved FLOP/s (tokens/s x FLOPs per token).
    pub flops_per_s: f64,
    /// The compute kind used.
    pub compute: String,
    /// The last step's loss.
    pub loss: f64,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Random weights (HF's initialisation, seeded) of `config` on `device`, in float32.
fn random_model(config: &Config, device: Device) -> Result<(nn::VarStore, Qwen2), ModelError> {
    config.validate().map_err(ModelError::Config)?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = Qwen2::new(&vs.root(), config.clone());
    hf_init(&vs);
    Ok((vs, model))
}

fn random_tokens(vocab: i64, rows: usize, len: usize, seed: u64) -> Vec<Vec<i64>> {
    let mut state = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        3 + (state >> 33) as i64 % (vocab - 3)
    };
    (0..rows)
        .map(|_| (0..len).map(|_| next()).collect())
        .collect()
}

/// Run a training benchmark.
pub fn train(b: &TrainBench) -> Result<TrainReport, ModelError> {
    let (vs, mut model) = random_model(&b.config, b.device)?;
    let compute = b.precision.compute_kind(b.device);
    model.set_compute(Some(compute));
    let params: i64 = vs
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .sum::<usize>() as i64;
    let mut trainer = Trainer::new(&vs, TrainConfig::default())?;
    let seqs: Vec<(Vec<i64>, Vec<f32>)> = random_tokens(b.config.vocab_size, b.batch, b.seq, 1)
        .into_iter()
        .map(|ids| (ids, vec![1.0; b.seq]))
        .collect();
    let tokens = b.batch * b.seq;
    let mut step = || -> Result<f64, ModelError> {
        let loss = trainer.accumulate(&model, &seqs, tokens, 0, b.device, |batch, _, scored| {
            let (loss, n) = masked_nll(&model, batch);
            loss * (n / scored)
        })?;
        trainer.step()?;
        Ok(loss)
    };
    for _ in 0..b.warmup {
        step()?;
    }
    sync(b.device);
    let mut times = Vec::with_capacity(b.steps);
    let mut loss = f64::NAN;
    let start = Instant::now();
    for _ in 0..b.steps {
        let t = Instant::now();
        loss = step()?;
        sync(b.device);
        times.push(t.elapsed().as_secs_f64());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let tokens_per_s = (tokens * b.steps) as f64 / elapsed;
    let flops_per_token = train_flops_per_token(&b.config, b.seq);
    Ok(TrainReport {
        tokens_per_s,
        step_s: median(times),
        params,
        flops_per_token,
        flops_per_s: tokens_per_s * flops_per_token,
        compute: crate::checkpoint::dtype_name(compute).into(),
        loss,
    })
}

/// A generation benchmark: greedy continuations of `batch` random prompts, each exactly
/// `new_tokens` long (no stop token), with the KV cache.
#[derive(Debug, Clone)]
pub struct GenerateBench {
    /// The model.
    pub config: Config,
    /// Sequences at once.
    pub batch: usize,
    /// Prompt tokens per sequence.
    pub prompt: usize,
    /// New tokens per sequence.
    pub new_tokens: usize,
    /// Timed runs (after one untimed).
    pub runs: usize,
    /// Where.
    pub device: Device,
    /// The weights' kind (bfloat16 or float32).
    pub kind: Kind,
}

/// What a generation benchmark measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GenerateReport {
    /// New tokens per second (median run).
    pub tokens_per_s: f64,
    /// Seconds per run (median).
    pub run_s: f64,
    /// The weights' kind.
    pub kind: String,
}

/// Run a generation benchmark.
pub fn generation(b: &GenerateBench) -> Result<GenerateReport, ModelError> {
    let (mut vs, model) = random_model(&b.config, b.device)?;
    if b.kind != Kind::Float {
        vs.set_kind(b.kind);
    }
    let prompts = random_tokens(b.config.vocab_size, b.batch, b.prompt, 2);
    let s = Sampling {
        temperature: 0.0,
        max_new_tokens: b.new_tokens,
        ..Sampling::default()
    };
    let run = || -> Result<f64, ModelError> {
        sync(b.device);
        let t = Instant::now();
        let out = generate(&model, &prompts, &s, 0, |_, _| false)?;
        sync(b.device);
        let secs = t.elapsed().as_secs_f64();
        if out.iter().any(|g| g.ids.len() != b.new_tokens) {
            return Err(ModelError::Torch(
                "a benchmark sequence stopped early".into(),
            ));
        }
        Ok(secs)
    };
    run()?;
    let times = (0..b.runs.max(1))
        .map(|_| run())
        .collect::<Result<Vec<f64>, _>>()?;
    let run_s = median(times);
    Ok(GenerateReport {
        tokens_per_s: (b.batch * b.new_tokens) as f64 / run_s,
        run_s,
        kind: crate::checkpoint::dtype_name(b.kind).into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen2_half_billion_counts_its_published_size() {
        let c = named_config("qwen2-0.5b").unwrap_or_else(|e| panic!("{e}"));
        // Qwen2-0.5B: 494 M parameters; all but the norms and biases are in products.
        let m = matmul_params(&c);
        assert!((490_000_000..494_100_000).contains(&m), "{m}");
        assert!(named_config("qwen2-7b").is_err());
    }

    #[test]
    fn a_tiny_benchmark_trains_and_generates() {
        let mut config = named_config("embedded").unwrap_or_else(|e| panic!("{e}"));
        config.num_hidden_layers = 1;
        let r = train(&TrainBench {
            config: config.clone(),
            batch: 2,
            seq: 16,
            steps: 2,
            warmup: 1,
            device: Device::Cpu,
            precision: Precision::F32,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.tokens_per_s > 0.0 && r.loss.is_finite(), "{r:?}");
        let g = generation(&GenerateBench {
            config,
            batch: 2,
            prompt: 4,
            new_tokens: 3,
            runs: 1,
            device: Device::Cpu,
            kind: Kind::Float,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(g.tokens_per_s > 0.0, "{g:?}");
    }
}
