//! `rl` against the shared conformance suite: GRPO from verified prefixes on a tiny student,
//! twice with the same prompts and seed, writes the same checkpoint and metrics.

#![allow(clippy::unwrap_used)]

use scorch_agent::oracle::demonstration_rows;
use scorch_agent::suite::{Split, tasks};
use scorch_api::conformance::{Case, check_plugin};
use scorch_api::tables::RlPrompt;
use scorch_model::testing::{table, tiny_student};
use scorch_rl::Rl;

#[tokio::test]
async fn rl_conforms() {
    let tasks = tasks(0, Split::Train, 0, 4);
    let demos = demonstration_rows(&tasks);
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_student(&demos, dir.path()).unwrap();
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
        .input("model", model)],
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}
