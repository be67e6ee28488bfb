//! LoRA adapters held against PEFT itself: an adapter scorch trains loads in PEFT onto the
//! same base with the same logits; an adapter PEFT writes loads here with PEFT's logits; the
//! merged model loads in `transformers`; a base other than the recorded one is refused; a
//! training step moves the adapter and leaves the base as it was.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use scorch_model::checkpoint::Checkpoint;
use scorch_model::lora::{self, LoraConfig};
use scorch_model::qwen2::Config;
use scorch_model::tokenizer::train_bpe;
use scorch_model::train::{TrainConfig, Trainer, collate, masked_nll};
use tch::{Device, Kind, Tensor};

/// Largest difference of logits tolerated between PEFT (PyTorch) and scorch (libtorch from
/// Rust) in float32: both run the same kernels in a different order of operations.
const TOLERANCE: f64 = 1e-4;

fn python(args: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/peft_check.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python {args:?} (PEFT is installed by scripts/setup):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ids() -> Tensor {
    Tensor::from_slice(&[5i64, 17, 3, 99, 42, 7, 7, 60, 11, 2, 33, 4, 90, 15, 8, 1]).view([2, 8])
}

fn logits(ck: &Checkpoint) -> Tensor {
    tch::no_grad(|| {
        ck.model.forward(
            &ids(),
            &Tensor::ones([2, 8], (Kind::Int64, Device::Cpu)),
            None,
        )
    })
}

fn theirs(path: &Path, like: &Tensor) -> Tensor {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let flat: Vec<f32> = v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b.as_array().unwrap().iter())
        .flat_map(|t| t.as_array().unwrap().iter())
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    Tensor::from_slice(&flat).view(like.size().as_slice())
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    f64::try_from((a - b).abs().max()).unwrap()
}

/// A random tiny Qwen2 saved as an HF folder (with biases, untied head).
fn base(dir: &Path, seed: u64) -> PathBuf {
    let texts: Vec<String> = (0..200)
        .map(|i| format!("Code: {i} * 3 + {}", i % 7))
        .collect();
    let tk = train_bpe(&texts, 110).unwrap();
    let config: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tk.get_vocab_size(true), "hidden_size": 32, "intermediate_size": 48,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 64, "tie_word_embeddings": false
    }))
    .unwrap();
    let out = dir.join(format!("base{seed}"));
    Checkpoint::init(config, tk, Device::Cpu, seed)
        .unwrap()
        .save(&out)
        .unwrap();
    out
}

fn lora(rank: i64, targets: &[&str]) -> LoraConfig {
    LoraConfig {
        rank,
        alpha: 8.0,
        dropout: 0.0,
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
        rslora: false,
    }
}

#[test]
fn an_adapter_trained_here_loads_in_peft_with_the_same_logits_and_merges_for_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), 3);
    let mut ck = Checkpoint::load_model(&base, None, Device::Cpu, Kind::Float).unwrap();
    let before = logits(&ck);
    ck.add_adapter(lora(4, &["q_proj", "v_proj", "down_proj"]), 11)
        .unwrap();
    // B starts at zero: the adapter changes nothing until it trains.
    assert_eq!(max_diff(&logits(&ck), &before), 0.0);
    // Train it a few steps on a fixed batch.
    let mut trainer = Trainer::new(
        &ck.vs,
        TrainConfig {
            lr: 0.05,
            warmup_steps: 1,
            ..TrainConfig::default()
        },
    )
    .unwrap();
    let trained: Vec<String> = trainer_names(&ck);
    assert!(trained.iter().all(|n| lora::is_lora_name(n)), "{trained:?}");
    assert_eq!(
        trained.len(),
        2 * 2 * 3,
        "A and B of 3 projections in 2 layers"
    );
    let frozen: Vec<(String, Tensor)> = ck
        .vs
        .variables()
        .into_iter()
        .filter(|(n, _)| !lora::is_lora_name(n))
        .map(|(n, t)| (n, t.copy()))
        .collect();
    let seq: Vec<i64> = (0..12).map(|i| (i * 7 + 3) % 100).collect();
    let batch = collate(&[(seq.clone(), vec![1.0; seq.len()])], 0, Device::Cpu).unwrap();
    for _ in 0..3 {
        let (loss, _) = masked_nll(&ck.model, &batch);
        ck.model.backward(&loss);
        trainer.step().unwrap();
    }
    for (name, was) in &frozen {
        let now = &ck.vs.variables()[name];
        assert_eq!(
            max_diff(now, was),
            0.0,
            "{name} moved: the base must stay frozen"
        );
    }
    let ours = logits(&ck);
    assert!(max_diff(&ours, &before) > 1e-3, "training moved nothing");

    let adapter = dir.path().join("adapter");
    ck.save(&adapter).unwrap();
    for f in [
        lora::ADAPTER_CONFIG,
        lora::ADAPTER_WEIGHTS,
        lora::BASE_RECORD,
    ] {
        assert!(adapter.join(f).is_file(), "{f}");
    }
    assert!(
        !adapter.join("model.safetensors").exists(),
        "the base is not saved again"
    );
    python(&[
        "logits",
        &base.display().to_string(),
        &adapter.display().to_string(),
    ]);
    let diff = max_diff(&ours, &theirs(&adapter.join("peft_logits.json"), &ours));
    assert!(diff < TOLERANCE, "PEFT's logits differ from ours by {diff}");
    eprintln!("our adapter in PEFT: largest logit difference {diff:.2e}");

    // Loaded back here: the same function, exactly.
    let again = Checkpoint::load_model(&adapter, Some(&base), Device::Cpu, Kind::Float).unwrap();
    assert_eq!(max_diff(&logits(&again), &ours), 0.0);

    // Merged: a whole model that transformers loads, with the same logits.
    let merged_dir = dir.path().join("merged");
    scorch_model::checkpoint::merged(&adapter, &base)
        .unwrap()
        .save(&merged_dir)
        .unwrap();
    assert!(!lora::is_adapter(&merged_dir));
    python(&["logits", &merged_dir.display().to_string()]);
    let diff = max_diff(&ours, &theirs(&merged_dir.join("peft_logits.json"), &ours));
    assert!(
        diff < TOLERANCE,
        "the merged model differs by {diff} in transformers"
    );
    eprintln!("merged, in transformers: largest logit difference {diff:.2e}");

    // Another base (same shapes, other weights) is refused, naming the input.
    let other = self::base(dir.path(), 4);
    let err = Checkpoint::load_model(&adapter, Some(&other), Device::Cpu, Kind::Float)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input `base`") && err.contains("not the base"),
        "{err}"
    );
    // No base at all: the message says what to connect.
    let err = Checkpoint::load_model(&adapter, None, Device::Cpu, Kind::Float)
        .unwrap_err()
        .to_string();
    assert!(err.contains("`base`"), "{err}");
}

fn trainer_names(ck: &Checkpoint) -> Vec<String> {
    ck.vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn an_adapter_peft_writes_loads_here_with_peft_logits() {
    let dir = tempfile::tempdir().unwrap();
    let base = base(dir.path(), 5);
    let adapter = dir.path().join("peft");
    python(&[
        "make",
        &base.display().to_string(),
        &adapter.display().to_string(),
    ]);
    let ck = Checkpoint::load_model(&adapter, Some(&base), Device::Cpu, Kind::Float).unwrap();
    let a = ck.adapter.as_ref().unwrap();
    assert!(a.config.rslora);
    assert_eq!(a.config.targets, ["k_proj", "o_proj", "up_proj"]);
    let ours = logits(&ck);
    let diff = max_diff(&ours, &theirs(&adapter.join("peft_logits.json"), &ours));
    assert!(
        diff < TOLERANCE,
        "PEFT's adapter gives logits {diff} away here"
    );
    eprintln!("PEFT adapter here: largest logit difference {diff:.2e}");
    // Not the identity: the adapter changes the base's output.
    let plain = Checkpoint::load(&base, Device::Cpu, Kind::Float).unwrap();
    assert!(max_diff(&logits(&plain), &ours) > 1e-3);
    // Merged for sampling: the same function within float32 rounding.
    let mut merged =
        Checkpoint::load_model(&adapter, Some(&base), Device::Cpu, Kind::Float).unwrap();
    merged.merge_adapter();
    assert!(max_diff(&logits(&merged), &ours) < 1e-5);
}
