//! Throughput of the student's two hot loops, training and generation, on a named model size
//! with random weights and random tokens: what `scorch bench` and the model benchmark time.

use std::time::Instant;

use tch::{Device, Kind, Tensor, nn};

use scorch_agent::llm::ChatOptions;

use crate::ModelError;
use crate::checkpoint::hf_init;
use crate::generate::{Sampling, generate};
use scorch_spec::student::{LoraParams, Precision};

use crate::precision::ComputeKind;
use crate::qwen2::{Config, Qwen2};
use crate::train::{TrainConfig, Trainer, masked_nll};

/// The configuration of a named model size: `embedded` (the built-in student, 1.8 M
/// parameters with a 2,000-token vocabulary), `qwen2-50m` (a 52 M Qwen2-shaped model with a
/// 32,000-token vocabulary and grouped-query attention), `qwen2-0.5b` (Qwen2-0.5B's published
/// config) or `qwen2.5-7b` (Qwen2.5-7B's).
pub fn named_config(name: &str) -> Result<Config, ModelError> {
    let json = match name {
        "embedded" => serde_json::json!({
            "vocab_size": 2000, "hidden_size": 192, "intermediate_size": 512,
            "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 6,
            "max_position_embeddings": 1024, "tie_word_embeddings": true
        }),
        "qwen2-50m" => serde_json::json!({
            "vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1536,
            "num_hidden_layers": 12, "num_attention_heads": 8, "num_key_value_heads": 2,
            "max_position_embeddings": 4096, "rope_theta": 1000000.0, "tie_word_embeddings": true
        }),
        "qwen2.5-7b" => serde_json::json!({
            "vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
            "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
            "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": false
        }),
        "qwen2-0.5b" => serde_json::json!({
            "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": true
        }),
        other => {
            return Err(ModelError::Config(format!(
                "unknown model size `{other}` (embedded, qwen2-50m, qwen2-0.5b, qwen2.5-7b)"
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
    /// Train LoRA adapters on a frozen base (in the compute kind) instead of every weight.
    pub lora: Option<LoraParams>,
    /// Activation checkpointing per layer.
    pub checkpointing: bool,
    /// An RL step instead of an SFT step: sample this many tokens per sequence (temperature 1,
    /// from the first `seq - rl_new_tokens` tokens) with the model, then a policy-gradient
    /// update on the sampled tokens.
    pub rl_new_tokens: Option<usize>,
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
    /// Parameters that train.
    pub trained_params: i64,
    /// Seconds of each step spent sampling (median; RL steps only).
    pub sample_s: Option<f64>,
    /// Peak resident memory of the process above what it held before the model was built,
    /// bytes (CPU only: the kernel's high-water mark, `VmHWM`).
    pub peak_bytes: Option<u64>,
    /// The memory plan's peak for this step ([`scorch_spec::memory`]), bytes.
    pub plan_bytes: u64,
    /// The plan, part by part.
    pub plan: String,
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Reset the process's resident high-water mark (`VmHWM`) to what it holds now.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The plan of [`scorch_spec::memory`] for a benchmark's step.
fn memory_plan(b: &TrainBench) -> Result<scorch_api::MemoryPlan, ModelError> {
    let config = serde_json::to_value(&b.config).map_err(|e| ModelError::Config(e.to_string()))?;
    let shape = scorch_spec::memory::Shape::from_config(&config)
        .map_err(|e| ModelError::Config(e.to_string()))?;
    let tokens = (b.batch * b.seq) as u64;
    let training = scorch_spec::memory::Training {
        device: if b.device.is_cuda() { "cuda" } else { "cpu" }.into(),
        bf16: b.precision.compute_kind(b.device) == Kind::BFloat16,
        lora: b.lora.clone(),
        tokens,
        checkpointing: b.checkpointing,
        reference: false,
        rollout_tokens: if b.rl_new_tokens.is_some() { tokens } else { 0 },
        shards: 1,
    };
    Ok(scorch_spec::memory::plan(&shape, &training))
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
    config
        .validate()
        .map_err(|e| ModelError::Config(e.to_string()))?;
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
    // The same step on a tiny model first: the kernels' code pages of libtorch, its thread
    // pools and scratch buffers are then resident before the baseline, and the peak above it
    // counts the tensors.
    let mut tiny = b.clone();
    tiny.config.num_hidden_layers = 1;
    tiny.config.vocab_size = tiny.config.vocab_size.min(256);
    tiny.batch = b.batch.min(2);
    (tiny.steps, tiny.warmup) = (1, 1);
    run_train(&tiny)?;
    run_train(b)
}

fn run_train(b: &TrainBench) -> Result<TrainReport, ModelError> {
    let plan = memory_plan(b)?;
    reset_peak();
    let before = status_bytes("VmRSS:");
    let compute = b.precision.compute_kind(b.device);
    let (mut vs, mut model) = random_model(&b.config, b.device)?;
    let params: i64 = vs
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .sum::<usize>() as i64;
    if let Some(lora) = &b.lora {
        // A frozen base in the compute kind, float32 adapters: what `sft` and `rl` train.
        vs.freeze();
        if compute != Kind::Float {
            vs.set_kind(compute);
        }
        let config = crate::lora::LoraConfig::from_params(lora);
        model.add_lora(&vs.root(), &config);
        let mut adapters: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(n, _)| crate::lora::is_lora_name(n))
            .collect();
        crate::lora::init_adapters(&mut adapters);
    }
    model.set_compute(Some(compute));
    model.set_checkpointing(b.checkpointing);
    let trained_params: i64 = vs
        .variables()
        .values()
        .filter(|t| t.requires_grad())
        .map(Tensor::numel)
        .sum::<usize>() as i64;
    let mut trainer = Trainer::new(&vs, TrainConfig::default())?;
    let rows = random_tokens(b.config.vocab_size, b.batch, b.seq, 1);
    let tokens = b.batch * b.seq;
    let mut sample_times = Vec::new();
    let mut step = |i: usize| -> Result<f64, ModelError> {
        let seqs: Vec<(Vec<i64>, Vec<f32>)> = match b.rl_new_tokens {
            None => rows
                .iter()
                .map(|ids| (ids.clone(), vec![1.0; b.seq]))
                .collect(),
            Some(new) => {
                // Sample the completions (no stop token: every one is `new` long), as an
                // in-process RL step does before its update.
                let prompt = b.seq - new;
                let prompts: Vec<Vec<i64>> = rows.iter().map(|r| r[..prompt].to_vec()).collect();
                let s = Sampling {
                    options: ChatOptions {
                        max_tokens: new,
                        ..ChatOptions::default()
                    },
                    ..Sampling::default()
                };
                let t = Instant::now();
                let out = tch::no_grad(|| generate(&model, &prompts, &s, i as i64, |_, _| false))?;
                sample_times.push(t.elapsed().as_secs_f64());
                prompts
                    .into_iter()
                    .zip(out)
                    .map(|(mut ids, g)| {
                        let mut mask = vec![0.0; ids.len()];
                        mask.extend(std::iter::repeat_n(1.0, g.ids.len()));
                        ids.extend(g.ids);
                        (ids, mask)
                    })
                    .collect()
            }
        };
        // RL: GRPO's loss with alternating advantages (groups of two, one above and one below
        // their mean); SFT: the mean negative log-likelihood.
        let rl = b.rl_new_tokens.is_some();
        let loss = trainer.accumulate(
            &model,
            &seqs,
            tokens,
            0,
            b.device,
            |batch, range, scored| {
                if rl {
                    let adv: Vec<f32> =
                        range.map(|r| if r % 2 == 0 { 1.0 } else { -1.0 }).collect();
                    let a = Tensor::from_slice(&adv).to_device(b.device).unsqueeze(1);
                    let logp = crate::train::token_logprobs(&model, &batch.ids, &batch.attention);
                    let ratio = (&logp - logp.detach()).exp();
                    -(ratio * a * &batch.loss_mask).sum(Kind::Float) / scored
                } else {
                    let (loss, n) = masked_nll(&model, batch);
                    loss * (n / scored)
                }
            },
        )?;
        trainer.step()?;
        Ok(loss)
    };
    for i in 0..b.warmup {
        step(i)?;
    }
    sync(b.device);
    let mut times = Vec::with_capacity(b.steps);
    let mut loss = f64::NAN;
    let start = Instant::now();
    for i in 0..b.steps {
        let t = Instant::now();
        loss = step(b.warmup + i)?;
        sync(b.device);
        times.push(t.elapsed().as_secs_f64());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let peak_bytes = match (b.device, before, status_bytes("VmHWM:")) {
        (Device::Cpu, Some(before), Some(peak)) => Some(peak.saturating_sub(before)),
        _ => None,
    };
    let tokens_per_s = (tokens * b.steps) as f64 / elapsed;
    let mut flops_per_token = train_flops_per_token(&b.config, b.seq);
    if b.lora.is_some() {
        // No weight gradients for the frozen base: 4 of the 6 FLOPs per parameter and token.
        flops_per_token -= 2.0 * matmul_params(&b.config) as f64;
    }
    Ok(TrainReport {
        tokens_per_s,
        step_s: median(times),
        params,
        flops_per_token,
        flops_per_s: tokens_per_s * flops_per_token,
        compute: crate::checkpoint::dtype_name(compute).into(),
        loss,
        trained_params,
        sample_s: (!sample_times.is_empty()).then(|| median(sample_times)),
        peak_bytes,
        plan_bytes: plan.peak,
        plan: plan.describe(),
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
        options: ChatOptions::greedy(b.new_tokens),
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
            lora: None,
            checkpointing: false,
            rl_new_tokens: None,
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(r.tokens_per_s > 0.0 && r.loss.is_finite(), "{r:?}");
        assert_eq!(r.trained_params, r.params);
        assert!(r.sample_s.is_none() && r.plan_bytes > 0);
        // A LoRA RL step with checkpointing: it samples, trains the adapters only (as many
        // as the memory plan counts), and plans less than full fine-tuning.
        let lora = LoraParams {
            rank: 4,
            ..LoraParams::default()
        };
        let rl = train(&TrainBench {
            config: config.clone(),
            batch: 2,
            seq: 16,
            steps: 1,
            warmup: 0,
            device: Device::Cpu,
            precision: Precision::F32,
            lora: Some(lora.clone()),
            checkpointing: true,
            rl_new_tokens: Some(4),
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(rl.sample_s.is_some() && rl.loss.is_finite(), "{rl:?}");
        let shape = scorch_spec::memory::Shape::from_config(
            &serde_json::to_value(&config).unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rl.trained_params as u64, shape.adapter_params(&lora));
        assert!(rl.plan_bytes < r.plan_bytes, "{rl:?} {r:?}");
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
