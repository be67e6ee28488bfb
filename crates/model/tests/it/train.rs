//! Training pieces: masked SFT lowers the loss on the policy's own turns, masked tokens do
//! not count, log-probs of given completions agree with the loss, accumulation matches one
//! big batch.

#![allow(clippy::unwrap_used)]

use scorch_model::chat::{ChatFormatExt, Turn};
use scorch_model::checkpoint::Checkpoint;
use scorch_model::qwen2::Config;
use scorch_model::tokenizer::train_bpe;
use scorch_model::train::{TrainConfig, Trainer, collate, masked_nll, token_logprobs};
use scorch_spec::student::ChatFormat;
use tch::{Device, Kind};

type Seqs = Vec<(Vec<i64>, Vec<f32>)>;

fn setup(seed: u64) -> (Checkpoint, Seqs) {
    let texts: Vec<String> = (0..200)
        .map(|i| format!("What is {i} + 3?\nCode: {i} + 3\nObservation: {}", i + 3))
        .collect();
    let tk = train_bpe(&texts, 160).unwrap();
    let config: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tk.get_vocab_size(true), "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": true
    }))
    .unwrap();
    let seqs = (0..16)
        .map(|i| {
            let q = format!("What is {i} + 3?");
            let a = format!("Code: {i} + 3");
            ChatFormat::Chatml
                .encode(
                    &tk,
                    &[
                        Turn {
                            role: "user",
                            content: &q,
                        },
                        Turn {
                            role: "assistant",
                            content: &a,
                        },
                    ],
                    false,
                )
                .unwrap()
        })
        .collect();
    (
        Checkpoint::init(config, tk, Device::Cpu, seed).unwrap(),
        seqs,
    )
}

#[test]
fn sft_lowers_the_masked_loss() {
    let (ck, seqs) = setup(1);
    let pad = 0;
    let batch = collate(&seqs, pad, Device::Cpu).unwrap();
    let before = f64::try_from(masked_nll(&ck.model, &batch).0).unwrap();
    let mut trainer = Trainer::new(
        &ck.vs,
        TrainConfig {
            lr: 3e-3,
            warmup_steps: 2,
            total_steps: 40,
            ..Default::default()
        },
    )
    .unwrap();
    for _ in 0..40 {
        let (loss, n) = masked_nll(&ck.model, &batch);
        assert!(n > 0.0);
        ck.model.backward(&loss);
        let (lr, norm) = trainer.step().unwrap();
        assert!(lr > 0.0 && norm.is_finite());
    }
    let after = f64::try_from(masked_nll(&ck.model, &batch).0).unwrap();
    assert!(after < before * 0.5, "loss {before} -> {after}");
}

#[test]
fn only_masked_tokens_count_and_logprobs_agree() {
    let (ck, seqs) = setup(2);
    let batch = collate(&seqs[..4], 0, Device::Cpu).unwrap();
    let (loss, n) = masked_nll(&ck.model, &batch);
    let lp = token_logprobs(&ck.model, &batch.ids, &batch.attention);
    let manual = -(lp * &batch.loss_mask).sum(Kind::Float) / n;
    assert!((f64::try_from(loss).unwrap() - f64::try_from(manual).unwrap()).abs() < 1e-6);
    // Changing the user turn's tokens (masked out) leaves the set of scored targets alone.
    let mask_total: f64 = seqs[..4]
        .iter()
        .map(|(_, m)| m.iter().skip(1).map(|x| f64::from(*x)).sum::<f64>())
        .sum();
    assert_eq!(n, mask_total);
    let user_tokens = seqs[0].1.iter().take_while(|m| **m == 0.0).count();
    assert!(user_tokens > 3, "the user turn is masked");
}

/// Every variable of `b` has the gradient of the same variable of `a`, to 1e-4 relative.
fn assert_same_gradients(a: &Checkpoint, b: &Checkpoint) {
    let ga: std::collections::HashMap<String, tch::Tensor> =
        a.vs.variables()
            .into_iter()
            .map(|(k, v)| (k, v.grad()))
            .collect();
    for (name, v) in b.vs.variables() {
        let (x, y) = (&ga[&name], v.grad());
        assert_eq!(
            x.defined(),
            y.defined(),
            "{name}: a gradient on one side only"
        );
        if !x.defined() {
            continue;
        }
        let scale = f64::try_from(x.abs().max()).unwrap().max(1e-6);
        let d = f64::try_from((x - &y).abs().max()).unwrap();
        assert!(
            d / scale < 1e-4,
            "{name}: gradients differ by {d} (scale {scale})"
        );
    }
}

#[test]
fn accumulated_gradients_match_one_big_batch() {
    let (a, seqs) = setup(5);
    let (b, _) = setup(5);
    let whole = collate(&seqs[..8], 0, Device::Cpu).unwrap();
    let (loss, n) = masked_nll(&a.model, &whole);
    a.model.backward(&(loss * n));
    for half in [&seqs[..4], &seqs[4..8]] {
        let batch = collate(half, 0, Device::Cpu).unwrap();
        let (loss, n) = masked_nll(&b.model, &batch);
        b.model.backward(&(loss * n));
    }
    assert_same_gradients(&a, &b);
}

#[test]
fn padding_and_batching_change_no_sequence() {
    let (ck, seqs) = setup(7);
    // Sequences of different lengths: alone, and right-padded in one batch.
    let picked: Seqs = [0usize, 5, 11, 15]
        .iter()
        .map(|&i| {
            let (ids, m) = &seqs[i];
            let cut = ids.len() - i % 3;
            (ids[..cut].to_vec(), m[..cut].to_vec())
        })
        .collect();
    let batch = collate(&picked, 0, Device::Cpu).unwrap();
    let together = token_logprobs(&ck.model, &batch.ids, &batch.attention);
    for (row, seq) in picked.iter().enumerate() {
        let alone = collate(std::slice::from_ref(seq), 0, Device::Cpu).unwrap();
        let lp = token_logprobs(&ck.model, &alone.ids, &alone.attention);
        let n = seq.0.len() as i64 - 1;
        let d = f64::try_from(
            (together.get(row as i64).narrow(0, 0, n) - lp.get(0))
                .abs()
                .max(),
        )
        .unwrap();
        assert!(d < 1e-5, "row {row}: logprobs differ by {d}");
    }
    // Greedy generation: a left-padded batch gives what each prompt gives alone, and the
    // cache (which grows past its first size) gives what a full forward pass gives.
    let prompts: Vec<Vec<i64>> = picked.iter().map(|s| s.0.clone()).collect();
    let s = scorch_model::generate::Sampling {
        options: scorch_agent::llm::ChatOptions::greedy(12),
        ..Default::default()
    };
    let batched =
        scorch_model::generate::generate(&ck.model, &prompts, &s, 0, |_, _| false).unwrap();
    for (p, g) in prompts.iter().zip(&batched) {
        let alone =
            scorch_model::generate::generate(&ck.model, std::slice::from_ref(p), &s, 0, |_, _| {
                false
            })
            .unwrap();
        assert_eq!(alone[0].ids, g.ids);
        let mut seq = p.clone();
        for &tok in &g.ids {
            let ids = tch::Tensor::from_slice(&seq).view([1, -1]);
            let att = ids.ones_like();
            let logits = ck.model.forward(&ids, &att, None);
            let best = i64::try_from(logits.get(0).get(-1).argmax(0, false)).unwrap();
            assert_eq!(best, tok, "the cached step disagrees with a full pass");
            seq.push(tok);
        }
    }
    // A cache with no room reserved grows as it goes and still agrees.
    let mut cache = ck.model.cache();
    let p = &prompts[0];
    let mut seq = p.clone();
    let mut input = tch::Tensor::from_slice(p).view([1, -1]);
    for &tok in &batched[0].ids {
        let att = tch::Tensor::ones([1, seq.len() as i64], (Kind::Int64, Device::Cpu));
        let logits = ck.model.forward_last(&input, &att, Some(&mut cache));
        assert_eq!(i64::try_from(logits.get(0).argmax(0, false)).unwrap(), tok);
        seq.push(tok);
        input = tch::Tensor::from_slice(&[tok]).view([1, 1]);
    }
    assert_eq!(cache.len() as usize, seq.len() - 1);
}

#[test]
fn sharded_generation_matches_one_thread() {
    let (ck, seqs) = setup(9);
    let prompts: Vec<Vec<i64>> = seqs.iter().map(|s| s.0[..s.0.len() - 4].to_vec()).collect();
    assert!(prompts.len() >= 16, "enough prompts for two shards");
    let s = scorch_model::generate::Sampling {
        options: scorch_agent::llm::ChatOptions {
            max_tokens: 10,
            ..Default::default()
        }
        .seeded(5),
        ..Default::default()
    };
    // Sequence 13 is stopped by the caller after three tokens: the check sees whole-batch
    // indices whichever shard runs it.
    let stop = |i: usize, ids: &[i64]| i == 13 && ids.len() == 3;
    let run = |threads: i32| {
        tch::set_num_threads(threads);
        let out = scorch_model::generate::generate(&ck.model, &prompts, &s, 0, stop).unwrap();
        assert_eq!(
            tch::get_num_threads(),
            threads,
            "the caller keeps its threads"
        );
        out
    };
    let one = run(1);
    let two = run(2);
    assert_eq!(one.len(), prompts.len());
    for (i, (a, b)) in one.iter().zip(&two).enumerate() {
        assert_eq!(a.ids, b.ids, "sequence {i}");
        assert_eq!(a.finish, b.finish, "sequence {i}");
        for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
            assert!((x - y).abs() < 1e-4, "sequence {i}: {x} vs {y}");
        }
    }
    assert_eq!(two[13].ids.len(), 3);
    assert_eq!(two[13].finish, scorch_model::generate::Finish::StopCheck);
}

#[test]
fn a_sequence_generates_the_same_alone_and_beside_a_long_prompt() {
    // Greedy, 8 new tokens: beside a prompt that leaves only 3 positions, the short prompt
    // must still get its 8 (the cap is each sequence's own, not the batch's).
    let (ck, seqs) = setup(9);
    let short: Vec<i64> = seqs[0].0[..seqs[0].0.len() - 4].to_vec();
    let positions = ck.model.config.max_position_embeddings as usize;
    let long: Vec<i64> = seqs[1]
        .0
        .iter()
        .copied()
        .cycle()
        .take(positions - 3)
        .collect();
    let s = scorch_model::generate::Sampling {
        options: scorch_agent::llm::ChatOptions::greedy(8),
        ..Default::default()
    };
    let generate = |prompts: &[Vec<i64>]| {
        tch::set_num_threads(1);
        scorch_model::generate::generate(&ck.model, prompts, &s, 0, |_, _| false).unwrap()
    };
    let alone = generate(std::slice::from_ref(&short));
    let beside = generate(&[short.clone(), long]);
    assert_eq!(alone[0].ids.len(), 8);
    assert_eq!(
        beside[0].ids, alone[0].ids,
        "the batch changed the short sequence"
    );
    assert_eq!(beside[0].finish, alone[0].finish);
    assert_eq!(
        beside[1].ids.len(),
        3,
        "the long prompt stops at its own last position"
    );
}

#[test]
fn a_seed_gives_the_same_weights_when_models_start_at_once() {
    let handles: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || setup(if i % 2 == 0 { 3 } else { 4 }).0))
        .collect();
    let models: Vec<Checkpoint> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let same = |a: &Checkpoint, b: &Checkpoint| {
        let vb = b.vs.variables();
        a.vs.variables().iter().all(|(k, v)| v.equal(&vb[k]))
    };
    assert!(same(&models[0], &models[2]), "seed 3 twice");
    assert!(same(&models[1], &models[3]), "seed 4 twice");
    assert!(!same(&models[0], &models[1]), "seeds 3 and 4 differ");
}

/// A micro-batch's mean loss, weighed by its share of the step's scored tokens.
fn mean_share(ck: &Checkpoint, batch: &scorch_model::train::Batch, scored: f64) -> tch::Tensor {
    let (loss, n) = masked_nll(&ck.model, batch);
    loss * (n / scored)
}

#[test]
fn micro_batched_steps_give_the_gradients_of_one_pass() {
    let (a, seqs) = setup(11);
    let (b, _) = setup(11);
    let cfg = TrainConfig::default();
    let ta = Trainer::new(&a.vs, cfg.clone()).unwrap();
    let whole = ta
        .accumulate(
            &a.model,
            &seqs,
            1_000_000,
            0,
            Device::Cpu,
            |batch, _, scored| mean_share(&a, batch, scored),
        )
        .unwrap();
    let tb = Trainer::new(&b.vs, cfg).unwrap();
    let mut parts = 0;
    let widest = seqs.iter().map(|s| s.0.len()).max().unwrap();
    let split = tb
        .accumulate(
            &b.model,
            &seqs,
            3 * widest,
            0,
            Device::Cpu,
            |batch, rows, scored| {
                parts += 1;
                assert!(rows.len() <= 3, "{rows:?}");
                mean_share(&b, batch, scored)
            },
        )
        .unwrap();
    assert!(parts >= 5, "{parts} micro-batches");
    assert!(
        (whole - split).abs() < 1e-5 * whole.abs(),
        "{whole} vs {split}"
    );
    assert_same_gradients(&a, &b);
}

/// Every variable's gradient after one loss and backward pass, by name.
fn gradients(ck: &Checkpoint, seqs: &Seqs) -> Vec<(String, tch::Tensor)> {
    let batch = collate(seqs, 0, Device::Cpu).unwrap();
    let (loss, _) = masked_nll(&ck.model, &batch);
    loss.backward();
    let mut vars: Vec<(String, tch::Tensor)> = ck.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars.into_iter().map(|(n, v)| (n, v.grad())).collect()
}

#[test]
fn a_bf16_step_has_the_f32_steps_gradients_within_tolerance() {
    let (f32_ck, seqs) = setup(3);
    let (mut mixed, _) = setup(3);
    mixed.model.set_compute(Some(Kind::BFloat16));
    // The layers really compute in bfloat16 ...
    let batch = collate(&seqs, 0, Device::Cpu).unwrap();
    let logits = tch::no_grad(|| mixed.model.forward(&batch.ids, &batch.attention, None));
    assert_eq!(logits.kind(), Kind::BFloat16);
    let exact = gradients(&f32_ck, &seqs);
    let approx = gradients(&mixed, &seqs);
    let mut differs = false;
    for ((name, g), (_, h)) in exact.iter().zip(&approx) {
        // ... over float32 weights, whose gradients come back in float32 ...
        assert_eq!(h.kind(), Kind::Float, "{name}");
        let rel = f64::try_from((h - g).norm()).unwrap() / f64::try_from(g.norm()).unwrap();
        // ... and agree with float32's to bfloat16's precision (8 bits of mantissa: 0.4% per
        // value; the worst variable here measured 0.7%).
        assert!(rel < 0.03, "{name}: relative difference {rel:.4}");
        differs |= rel > 0.0;
    }
    assert!(differs, "bfloat16 gave float32's gradients bit for bit");
    // A step keeps the master weights in float32, so the checkpoint saves float32.
    let mut trainer = Trainer::new(&mixed.vs, TrainConfig::default()).unwrap();
    trainer.step().unwrap();
    assert_eq!(mixed.kind(), Kind::Float);
    let dir = tempfile::tempdir().unwrap();
    mixed.save(dir.path()).unwrap();
    let config = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    assert!(config.contains("\"torch_dtype\": \"float32\""), "{config}");
}

/// The checkpoint of `setup(seed)`, saved and loaded again for training (with LoRA adapters of
/// rank 4 on every projection, B filled too, when `lora`).
fn trainable(seed: u64, lora: bool, dir: &std::path::Path) -> (Checkpoint, Seqs) {
    let (ck, seqs) = setup(seed);
    ck.save(dir).unwrap();
    let params = scorch_spec::student::LoraParams {
        rank: 4,
        ..Default::default()
    };
    let ck = scorch_model::checkpoint::load_trainable(
        dir,
        None,
        Device::Cpu,
        Kind::Float,
        lora.then_some(&params),
        seed,
    )
    .unwrap();
    if lora {
        // B starts at zero; give it values so that every gradient is nonzero.
        tch::manual_seed(seed as i64);
        let mut vars: Vec<_> = ck.vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        tch::no_grad(|| {
            for (name, mut v) in vars {
                if name.contains("lora_B") {
                    let _ = v.normal_(0.0, 0.1);
                }
            }
        });
    }
    (ck, seqs)
}

#[test]
fn activation_checkpointing_gives_the_same_gradients() {
    for lora in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let (plain, seqs) = trainable(9, lora, &tmp.path().join("a"));
        let (mut ckpt, _) = trainable(9, lora, &tmp.path().join("b"));
        ckpt.model.set_checkpointing(true);
        let batch = collate(&seqs, 0, Device::Cpu).unwrap();
        let (loss, _) = masked_nll(&plain.model, &batch);
        plain.model.backward(&loss);
        let (loss, _) = masked_nll(&ckpt.model, &batch);
        // The layers ran without keeping their graphs: the loss's graph does not reach
        // them ...
        let inside = if lora {
            "model.layers.0.self_attn.q_proj.lora_A.weight"
        } else {
            "model.layers.0.mlp.up_proj.weight"
        };
        let var = &ckpt.vs.variables()[inside];
        let reached = tch::Tensor::f_run_backward(&[&loss], &[var], true, false)
            .map(|g| g[0].defined())
            .unwrap_or(false);
        assert!(!reached, "lora {lora}: the graph reaches {inside}");
        // ... the model's backward pass, which recomputes them, does.
        ckpt.model.backward(&loss);
        assert!(
            var.grad().defined(),
            "lora {lora}: {inside} has no gradient"
        );
        let trainable = ckpt
            .vs
            .variables()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .count();
        assert!(trainable > 0);
        for (name, v) in ckpt.vs.variables() {
            assert_eq!(v.grad().defined(), v.requires_grad(), "lora {lora}: {name}");
        }
        assert_same_gradients(&plain, &ckpt);
    }
}
