//! Checked against code nobody here wrote: HF `transformers` builds a tiny random Qwen2, our
//! loader reads it, and logits and greedy generations agree; a checkpoint we save loads in
//! `transformers` with the same logits; our tokenizer's ids match the Python `tokenizers`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use scorch_model::checkpoint::Checkpoint;
use scorch_model::generate::{Sampling, generate};
use scorch_model::qwen2::Config;
use scorch_model::tokenizer::{encode, train_bpe};
use tch::{Device, Kind, Tensor};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/qwen2_golden.py")
}

fn python(args: &[&str]) {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python {args:?} (transformers is installed by scripts/setup):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tokenizer(dir: &Path) -> tokenizers::Tokenizer {
    let texts: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "Thought: buys {i} bags\nCode: {i} * 3 + 12\nObservation: {}",
                i * 3 + 12
            )
        })
        .collect();
    let tk = train_bpe(&texts, 120).unwrap();
    tk.save(dir.join("tokenizer.json"), false).unwrap();
    tk
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids() -> Tensor {
    Tensor::from_slice(&[5i64, 17, 3, 99, 42, 7, 7, 60, 11, 2, 33, 4, 90, 15, 8, 1]).view([2, 8])
}

fn max_diff(ours: &Tensor, theirs: &serde_json::Value) -> f64 {
    let flat: Vec<f32> = theirs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b.as_array().unwrap().iter().flat_map(|t| {
                t.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
            })
        })
        .collect();
    let theirs = Tensor::from_slice(&flat).view(ours.size().as_slice());
    f64::try_from((ours - theirs).abs().max()).unwrap()
}

#[test]
fn hf_checkpoints_load_and_agree_with_transformers() {
    for tie in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let tk = tokenizer(dir.path());
        let vocab = tk.get_vocab_size(true);
        python(&[
            "make",
            &dir.path().display().to_string(),
            &vocab.to_string(),
            if tie { "tie" } else { "untie" },
        ]);
        let golden = json(&dir.path().join("golden.json"));
        let ck = Checkpoint::load(dir.path(), Device::Cpu, Kind::Float).unwrap();
        assert_eq!(ck.model.config.tie_word_embeddings, tie);
        let logits = tch::no_grad(|| {
            ck.model.forward(
                &ids(),
                &Tensor::ones([2, 8], (Kind::Int64, Device::Cpu)),
                None,
            )
        });
        let diff = max_diff(&logits, &golden["logits"]);
        assert!(diff < 1e-4, "tie={tie}: logits differ by {diff}");
        let prompt: Vec<i64> = golden["prompt"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let greedy: Vec<i64> = golden["greedy"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let s = Sampling {
            options: scorch_agent::llm::ChatOptions::greedy(12),
            ..Default::default()
        };
        let ours = generate(&ck.model, std::slice::from_ref(&prompt), &s, 0, |_, _| {
            false
        })
        .unwrap();
        assert_eq!(ours[0].ids, greedy, "tie={tie}: greedy generations differ");
        // Batched with a longer neighbour (left padding): the same continuation.
        let longer = vec![3i64, 8, 13, 21, 34, 55, 89];
        let batch = generate(&ck.model, &[longer, prompt], &s, 0, |_, _| false).unwrap();
        assert_eq!(
            batch[1].ids, greedy,
            "tie={tie}: padding changed the generation"
        );
        assert!(batch[1].logprobs.iter().all(|l| *l <= 0.0));
    }
}

#[test]
fn a_checkpoint_we_save_loads_in_transformers_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let tk = tokenizer(dir.path());
    let config: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tk.get_vocab_size(true), "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128, "tie_word_embeddings": true
    }))
    .unwrap();
    let ck = Checkpoint::init(config, tk, Device::Cpu, 7).unwrap();
    let out = dir.path().join("saved");
    ck.save(&out).unwrap();
    let logits = tch::no_grad(|| {
        ck.model.forward(
            &ids(),
            &Tensor::ones([2, 8], (Kind::Int64, Device::Cpu)),
            None,
        )
    });
    python(&["logits", &out.display().to_string()]);
    let diff = max_diff(&logits, &json(&out.join("python_logits.json"))["logits"]);
    assert!(
        diff < 1e-4,
        "transformers disagrees with our saved checkpoint by {diff}"
    );
    let again = Checkpoint::load(&out, Device::Cpu, Kind::Float).unwrap();
    let diff2 = f64::try_from(
        (tch::no_grad(|| {
            again.model.forward(
                &ids(),
                &Tensor::ones([2, 8], (Kind::Int64, Device::Cpu)),
                None,
            )
        }) - &logits)
            .abs()
            .max(),
    )
    .unwrap();
    assert_eq!(diff2, 0.0, "save then load is exact");
}

#[test]
fn tokenizer_ids_match_the_python_tokenizers() {
    let dir = tempfile::tempdir().unwrap();
    let tk = tokenizer(dir.path());
    let texts = vec![
        "Thought: buys 12 bags\nCode: 12 * 3 + 12".to_owned(),
        "<|im_start|>assistant\nPlan: use 38 47 50<|im_end|>".to_owned(),
        "unseen words, ünïcode & 12345".to_owned(),
    ];
    let ours: Vec<Vec<i64>> = texts.iter().map(|t| encode(&tk, t).unwrap()).collect();
    let mut child = Command::new("python3")
        .arg(script())
        .args([
            "encode",
            &dir.path().join("tokenizer.json").display().to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&texts).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let theirs: Vec<Vec<i64>> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ours, theirs);
    assert_eq!(
        scorch_model::tokenizer::decode(&tk, &ours[2]).unwrap(),
        texts[2],
        "byte-level BPE round-trips any text"
    );
}

#[test]
fn the_device_in_use_is_reported() {
    let (device, kind) = scorch_model::pick_device("auto").unwrap();
    println!(
        "device auto -> {device:?} ({kind:?}); CUDA available: {}",
        tch::Cuda::is_available()
    );
    if tch::Cuda::is_available() {
        assert_eq!((device, kind), (Device::Cuda(0), Kind::BFloat16));
    } else {
        assert_eq!((device, kind), (Device::Cpu, Kind::Float));
    }
    assert!(scorch_model::pick_device("tpu").is_err());
}
