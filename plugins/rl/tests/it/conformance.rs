//! `rl` against the shared conformance suite: GRPO from verified prefixes on a tiny student,
//! twice with the same prompts and seed, writes the same checkpoint and metrics; and the
//! per-step diagnostics, with several passes over mini-batches and a reference, and without.

#![allow(clippy::unwrap_used)]

use scorch_agent::oracle::demonstration_rows;
use scorch_agent::suite::{Split, tasks};
use scorch_api::conformance::{Case, check_plugin};
use scorch_api::testing::{RunOptions, TestInput, run_plugin};
use scorch_model::testing::{table, tiny_student};
use scorch_rl::Rl;
use scorch_tables::{RlPrompt, Task};

/// Four tasks, a tiny student trained on their demonstrations, and a repaired prompt each.
fn world(dir: &std::path::Path) -> (Vec<Task>, TestInput, Vec<RlPrompt>) {
    let tasks = tasks(0, Split::Train, 0, 4);
    let demos = demonstration_rows(&tasks);
    let model = tiny_student(&demos, dir).unwrap();
    // Each demonstration as a repaired prompt: the plan verified, the first operation the
    // teacher's step, a wrong copy of it the student's.
    let prompts: Vec<RlPrompt> = demos
        .iter()
        .zip(&tasks)
        .map(|(d, t)| {
            let mut wrong = d.steps[1].clone();
            wrong.code.push_str(" + 1");
            RlPrompt {
                prompt_id: format!("{}/0", t.task_id),
                task_id: t.task_id.clone(),
                question: t.question.clone(),
                gold_answer: t.answer.clone(),
                prefix: d.steps[..1].to_vec(),
                chosen: Some(d.steps[1].clone()),
                rejected: Some(wrong),
                source: "repaired".into(),
            }
        })
        .collect();
    (tasks, model, prompts)
}

#[tokio::test]
async fn rl_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let (tasks, model, prompts) = world(dir.path());
    let r = check_plugin(
        &Rl,
        &[Case::new(
            "two steps",
            serde_json::json!({
                "steps": 2, "prompts_per_step": 2, "group_size": 2,
                "sampling": {"max_tokens": 24}
            }),
        )
        .input("rl_prompts", table(&prompts).unwrap())
        .input("tasks", table(&tasks).unwrap())
        .input("model", model.clone())],
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_reports_its_diagnostics_and_kl_only_with_a_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (tasks, model, prompts) = world(dir.path());
    let inputs = |model: TestInput| {
        [
            ("rl_prompts".to_owned(), table(&prompts).unwrap()),
            ("tasks".to_owned(), table(&tasks).unwrap()),
            ("model".to_owned(), model),
        ]
        .into()
    };
    let params = serde_json::json!({
        "steps": 3, "prompts_per_step": 2, "group_size": 4, "lr": 0.01,
        "ppo_epochs": 3, "mini_batches": 2, "kl_coef": 0.05,
        "sampling": {"max_tokens": 24, "temperature": 1.0}
    });
    let out = run_plugin(&Rl, &params, inputs(model.clone()), RunOptions::default())
        .await
        .unwrap();
    let series = |name: &str| -> Vec<f64> {
        out.metrics
            .iter()
            .filter(|m| m.name == name && m.step.is_some())
            .map(|m| m.value)
            .collect()
    };
    for name in [
        "reward",
        "zero_variance_groups",
        "clip_fraction",
        "entropy",
        "kl",
        "share_solved",
    ] {
        assert_eq!(series(name).len(), 3, "{name}: {:?}", out.metrics);
    }
    // (This student's turns are malformed, so none is scored: the ratio, KL and entropy of
    // a student that writes well-formed turns are checked in tests/it/score_smoke.rs.)
    // Every class's share adds up to the whole step.
    for step in 0..3 {
        let total: f64 = out
            .metrics
            .iter()
            .filter(|m| m.name.starts_with("share_") && m.step == Some(step))
            .map(|m| m.value)
            .sum();
        assert!(
            (total - 1.0).abs() < 1e-9,
            "step {step}: shares add to {total}"
        );
    }
    // Without a KL term no reference is loaded, and no `kl` is reported. (That on-policy
    // nothing is clipped needs scored tokens, which this student has none of: it is checked
    // in known_answer.rs.)
    let no_reference = serde_json::json!({
        "steps": 2, "prompts_per_step": 2, "group_size": 4,
        "sampling": {"max_tokens": 24, "temperature": 1.0}
    });
    let out = run_plugin(&Rl, &no_reference, inputs(model), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        out.metrics
            .iter()
            .filter(|m| m.name == "clip_fraction")
            .count(),
        2
    );
    assert!(!out.metrics.iter().any(|m| m.name == "kl"));
}
