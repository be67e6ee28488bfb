//! The rl node's GRPO loss against TRL's: one fixed batch (ratios inside and outside the
//! clip range on both sides of 1, advantages of both signs, masked tokens, a reference) goes
//! through `loss::grpo_loss` and through the installed TRL's `GRPOTrainer._compute_loss`
//! (`loss_type="bnpo"`, token-level importance weights, `beta` = our `kl_coef`); the loss, its
//! gradient with respect to every token's log-probability, the clipped share and the mean KL
//! agree.

#![allow(clippy::unwrap_used)]

use scorch_rl::loss::{Batch, Tally, grpo_loss};
use tch::{Kind, Tensor};

fn tensor(rows: &[Vec<f64>]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().map(|x| *x as f32).collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, rows[0].len() as i64])
}

#[test]
fn the_loss_and_its_gradient_equal_trls_grpo_loss() {
    let (rows, tokens) = (4usize, 6usize);
    let logp: Vec<Vec<f64>> = (0..rows)
        .map(|i| {
            (0..tokens)
                .map(|j| -0.05 - 0.3 * ((i * 7 + j * 3) % 5) as f64)
                .collect()
        })
        .collect();
    // Ratios from about 0.6 to 1.5: some clipped below, some above, some inside.
    let old: Vec<Vec<f64>> = logp
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.iter()
                .enumerate()
                .map(|(j, x)| x - 0.4 + 0.17 * ((i + 2 * j) % 6) as f64)
                .collect()
        })
        .collect();
    let reference: Vec<Vec<f64>> = logp
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(j, x)| x + 0.1 * (j as f64 - 2.5))
                .collect()
        })
        .collect();
    let mask: Vec<Vec<f64>> = (0..rows)
        .map(|i| {
            (0..tokens)
                .map(|j| if j < 2 + i { 1.0 } else { 0.0 })
                .collect()
        })
        .collect();
    let advantages = [1.2, -0.7, 0.4, -1.1];
    let (clip_eps, kl_coef) = (0.2, 0.04);

    let leaf = tensor(&logp).set_requires_grad(true);
    let (old_t, ref_t, mask_t) = (tensor(&old), tensor(&reference), tensor(&mask));
    let adv_t = Tensor::from_slice(&advantages.map(|a| a as f32)).unsqueeze(1);
    let scored = f64::try_from(mask_t.sum(Kind::Double)).unwrap();
    let mut tally = Tally::default();
    let loss = grpo_loss(
        &Batch {
            logp: &leaf,
            old: &old_t,
            reference: Some(&ref_t),
            advantages: &adv_t,
            mask: &mask_t,
        },
        clip_eps,
        kl_coef,
        scored,
        &mut tally,
    );
    loss.backward();
    let ours_loss = f64::try_from(&loss).unwrap();
    let ours_grad: Vec<f64> = Vec::try_from(leaf.grad().to_kind(Kind::Double).view([-1])).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let batch = dir.path().join("batch.json");
    std::fs::write(
        &batch,
        serde_json::json!({
            "logp": logp, "old": old, "reference": reference, "mask": mask,
            "advantages": advantages, "clip_eps": clip_eps, "kl_coef": kl_coef,
        })
        .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/trl_grpo_loss.py"
        ))
        .arg(&batch)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "TRL's loss could not be computed (scripts/setup installs TRL): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trl: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let trl_grad: Vec<f64> = trl["grad"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
        .collect();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * (1.0 + b.abs());
    assert!(
        close(ours_loss, trl["loss"].as_f64().unwrap()),
        "loss {ours_loss} vs TRL {} ({})",
        trl["loss"],
        trl["trl"]
    );
    assert_eq!(ours_grad.len(), trl_grad.len());
    for (k, (a, b)) in ours_grad.iter().zip(&trl_grad).enumerate() {
        assert!(close(*a, *b), "d loss / d logp[{k}]: {a} vs TRL {b}");
    }
    assert!(trl_grad.contains(&0.0) && trl_grad.iter().any(|g| *g != 0.0));
    assert!(
        close(tally.clip_fraction(), trl["clip_ratio"].as_f64().unwrap()),
        "clipped share {} vs TRL {}",
        tally.clip_fraction(),
        trl["clip_ratio"]
    );
    assert!(tally.clip_fraction() > 0.0 && tally.clip_fraction() < 1.0);
    assert!(
        close(tally.kl_mean(), trl["kl"].as_f64().unwrap()),
        "KL {} vs TRL {}",
        tally.kl_mean(),
        trl["kl"]
    );
}
