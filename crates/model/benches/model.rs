//! Model benchmark (not a timed test): on this CPU, in one run, the embedded student's
//! config: generation tokens/s (KV cache, batch 32) against HF `transformers` `generate`, SFT
//! training tokens/s against a plain PyTorch loop, and mixed-precision (bf16) training against
//! PyTorch's CPU autocast loop and against the float32 PyTorch loop. Prints a Markdown table
//! for BENCHMARKS.md. Run with `cargo bench -p scorch-model --bench model`.

use std::process::Command;
use std::time::Instant;

use scorch_model::checkpoint::Checkpoint;
use scorch_model::generate::{Sampling, generate};
use scorch_model::qwen2::Config;
use scorch_model::tokenizer::train_bpe;
use scorch_model::train::{TrainConfig, Trainer, collate, masked_nll};
use tch::Device;

const BATCH: usize = 32;
const PROMPT: usize = 48;
const NEW: usize = 64;
const STEPS: usize = 4;
const SEQ: usize = 96;
/// Timed runs per side and round.
const REPS: usize = 5;
/// Rounds, alternating the two sides.
const ROUNDS: usize = 5;
/// bf16 steps per timed run and timed runs per round: fewer, since a CPU without bf16
/// instructions runs them an order of magnitude slower.
const BF16_STEPS: usize = 2;
const BF16_REPS: usize = 2;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let texts: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                "Tom has {i} apples. Thought: buys\nCode: {i} * 3\nObservation: {}",
                i * 3
            )
        })
        .collect();
    let tk = train_bpe(&texts, 320).expect("tokenizer");
    // The embedded student's size (shared/notes/embedded-suite-figures.md).
    let config: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tk.get_vocab_size(true), "hidden_size": 192, "intermediate_size": 512, "num_hidden_layers": 4,
        "num_attention_heads": 6, "num_key_value_heads": 6, "max_position_embeddings": 512, "tie_word_embeddings": true
    }))
    .expect("config");
    let vocab = config.vocab_size;
    let ck = Checkpoint::init(config, tk, Device::Cpu, 0).expect("init");
    ck.save(dir.path()).expect("save");
    let params: i64 = ck
        .vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();

    // Generation: batch 32, greedy, a fixed number of new tokens.
    let mut rng_state = 12345u64;
    let mut next = || {
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        3 + (rng_state >> 33) as i64 % (vocab - 3)
    };
    let prompts: Vec<Vec<i64>> = (0..BATCH)
        .map(|_| (0..PROMPT).map(|_| next()).collect())
        .collect();
    let seqs: Vec<(Vec<i64>, Vec<f32>)> = (0..BATCH)
        .map(|_| ((0..SEQ).map(|_| next()).collect(), vec![1.0; SEQ]))
        .collect();
    let batch = collate(&seqs, 0, Device::Cpu).expect("batch");
    let s = Sampling {
        options: scorch_agent::llm::ChatOptions::greedy(NEW),
        ..Default::default()
    };
    generate(
        &ck.model,
        &prompts[..2],
        &Sampling {
            options: scorch_agent::llm::ChatOptions::greedy(4),
            ..s.clone()
        },
        0,
        |_, _| false,
    )
    .expect("warm-up");
    let mut trainer = Trainer::new(&ck.vs, TrainConfig::default()).expect("trainer");
    let mut step = || {
        let (loss, _) = masked_nll(&ck.model, &batch);
        ck.model.backward(&loss);
        trainer.step().expect("step");
    };
    step();
    // The same start in mixed precision: float32 weights, bfloat16 products.
    let mut mixed = Checkpoint::load(dir.path(), Device::Cpu, tch::Kind::Float).expect("load");
    mixed.model.set_compute(Some(tch::Kind::BFloat16));
    let mut mixed_trainer = Trainer::new(&mixed.vs, TrainConfig::default()).expect("trainer");
    let mut mixed_step = || {
        let (loss, _) = masked_nll(&mixed.model, &batch);
        mixed.model.backward(&loss);
        mixed_trainer.step().expect("step");
    };
    mixed_step();

    // This is a shared machine: alternate the two sides for several rounds, take each
    // side's median within a round, and report the median round.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/hf_baseline.py");
    let mut rounds: Vec<[f64; 6]> = Vec::new();
    for _ in 0..ROUNDS {
        let gen_runs: Vec<f64> = (0..REPS)
            .map(|_| {
                let t = Instant::now();
                let out = generate(&ck.model, &prompts, &s, 0, |_, _| false).expect("generate");
                assert!(out.iter().all(|g| g.ids.len() == NEW));
                (BATCH * NEW) as f64 / t.elapsed().as_secs_f64()
            })
            .collect();
        let train_runs: Vec<f64> = (0..REPS)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..STEPS {
                    step();
                }
                (STEPS * BATCH * SEQ) as f64 / t.elapsed().as_secs_f64()
            })
            .collect();
        let bf16_runs: Vec<f64> = (0..BF16_REPS)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..BF16_STEPS {
                    mixed_step();
                }
                (BF16_STEPS * BATCH * SEQ) as f64 / t.elapsed().as_secs_f64()
            })
            .collect();
        let out = Command::new("python3")
            .args([
                script,
                &dir.path().display().to_string(),
                &BATCH.to_string(),
                &PROMPT.to_string(),
                &NEW.to_string(),
                &STEPS.to_string(),
                &SEQ.to_string(),
                &REPS.to_string(),
                &BF16_STEPS.to_string(),
                &BF16_REPS.to_string(),
            ])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hf: serde_json::Value = serde_json::from_slice(
            out.stdout
                .split(|b| *b == b'\n')
                .find(|l| l.starts_with(b"{"))
                .unwrap_or(b"{}"),
        )
        .expect("json");
        rounds.push([
            median(gen_runs),
            hf["gen_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            median(train_runs),
            hf["train_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            median(bf16_runs),
            hf["bf16_train_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
        ]);
    }
    let col = |i: usize| median(rounds.iter().map(|r| r[i]).collect());
    let ratios = |a: usize, b: usize| {
        let r: Vec<f64> = rounds.iter().map(|x| x[a] / x[b]).collect();
        let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (median(r), lo, hi)
    };
    let (ours_gen, hf_gen, ours_train, hf_train) = (col(0), col(1), col(2), col(3));
    let (gen_ratio, gen_lo, gen_hi) = ratios(0, 1);
    let (train_ratio, train_lo, train_hi) = ratios(2, 3);
    let (ours_bf16, torch_bf16) = (col(4), col(5));
    let (bf16_ratio, bf16_lo, bf16_hi) = ratios(4, 5);
    let (mixed_ratio, mixed_lo, mixed_hi) = ratios(4, 3);
    println!(
        "student: {params} parameters, vocab {vocab}; torch threads {}",
        tch::get_num_threads()
    );
    println!(
        "{ROUNDS} rounds of {REPS} timed runs per side; medians, ratio range over rounds in brackets"
    );
    println!("| benchmark | scorch (tch) | baseline | ratio | target |\n|---|---|---|---|---|");
    println!(
        "| generation, batch {BATCH}, {PROMPT}+{NEW} tokens, greedy, KV cache (tokens/s) | {ours_gen:.0} | {hf_gen:.0} (HF `generate`) | {gen_ratio:.2}x ({gen_lo:.2}–{gen_hi:.2}) | ≥2x |"
    );
    println!(
        "| SFT training, batch {BATCH} x {SEQ} tokens, AdamW (tokens/s) | {ours_train:.0} | {hf_train:.0} (PyTorch loop) | {train_ratio:.2}x ({train_lo:.2}–{train_hi:.2}) | ≥1.2x |"
    );
    println!(
        "| SFT training in bf16 (mixed precision), same shapes (tokens/s) | {ours_bf16:.0} | {torch_bf16:.0} (PyTorch CPU autocast bf16 loop) | {bf16_ratio:.2}x ({bf16_lo:.2}–{bf16_hi:.2}) | ≥1.2x |"
    );
    println!(
        "| SFT training in bf16 against float32 (tokens/s) | {ours_bf16:.0} | {hf_train:.0} (PyTorch float32 loop) | {mixed_ratio:.2}x ({mixed_lo:.2}–{mixed_hi:.2}) | ≥1.8x |"
    );
    println!(
        "CPU bf16 instructions (avx512_bf16 / amx_bf16): {}",
        scorch_model::precision::native_bf16(Device::Cpu)
    );
}
