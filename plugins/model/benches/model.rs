//! Model benchmark (not a timed test): on this CPU, in one run, the embedded student's
//! config: generation tokens/s (KV cache, batch 32) against HF `transformers` `generate`, and
//! SFT training tokens/s against a plain PyTorch loop. Prints a Markdown table for
//! BENCHMARKS.md. Run with `cargo bench -p scorch-model --bench model`.

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
const STEPS: usize = 10;
const SEQ: usize = 96;

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
    let s = Sampling {
        temperature: 0.0,
        max_new_tokens: NEW,
        ..Default::default()
    };
    generate(
        &ck.model,
        &prompts[..2],
        &Sampling {
            max_new_tokens: 4,
            ..s.clone()
        },
        0,
        |_, _| false,
    )
    .expect("warm-up");
    let t = Instant::now();
    let out = generate(&ck.model, &prompts, &s, 0, |_, _| false).expect("generate");
    let gen_s = t.elapsed().as_secs_f64();
    assert!(out.iter().all(|g| g.ids.len() == NEW));
    let ours_gen = (BATCH * NEW) as f64 / gen_s;

    // SFT: forward, masked loss, backward, clip, AdamW.
    let seqs: Vec<(Vec<i64>, Vec<f32>)> = (0..BATCH)
        .map(|_| ((0..SEQ).map(|_| next()).collect(), vec![1.0; SEQ]))
        .collect();
    let batch = collate(&seqs, 0, Device::Cpu).expect("batch");
    let mut trainer = Trainer::new(&ck.vs, TrainConfig::default()).expect("trainer");
    let mut step = || {
        let (loss, _) = masked_nll(&ck.model, &batch);
        trainer.backward(&loss, 1.0);
        trainer.step().expect("step");
    };
    step();
    let t = Instant::now();
    for _ in 0..STEPS {
        step();
    }
    let ours_train = (STEPS * BATCH * SEQ) as f64 / t.elapsed().as_secs_f64();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/hf_baseline.py");
    let out = Command::new("python3")
        .args([
            script,
            &dir.path().display().to_string(),
            &BATCH.to_string(),
            &PROMPT.to_string(),
            &NEW.to_string(),
            &STEPS.to_string(),
            &SEQ.to_string(),
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
    let hf_gen = hf["gen_tokens_per_s"].as_f64().unwrap_or(f64::NAN);
    let hf_train = hf["train_tokens_per_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "student: {params} parameters, vocab {vocab}; torch threads {}",
        tch::get_num_threads()
    );
    println!("| benchmark | scorch (tch) | baseline | ratio | target |\n|---|---|---|---|---|");
    println!(
        "| generation, batch {BATCH}, {PROMPT}+{NEW} tokens, greedy, KV cache (tokens/s) | {ours_gen:.0} | {hf_gen:.0} (HF `generate`) | {:.2}x | ≥2x |",
        ours_gen / hf_gen
    );
    println!(
        "| SFT training, batch {BATCH} x {SEQ} tokens, AdamW (tokens/s) | {ours_train:.0} | {hf_train:.0} (PyTorch loop) | {:.2}x | ≥1.2x |",
        ours_train / hf_train
    );
}
