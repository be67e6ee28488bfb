//! DAgger labels every state the student visited with the oracle's step there, in task
//! order, stops at the teacher's budget, and only the teacher's step of a label carries
//! loss in SFT with `loss_on: teacher`.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::student;
use scorch_agent::oracle::{Oracle, next_step};
use scorch_agent::suite::world_of;
use scorch_agent::suite::{Split, tasks};
use scorch_api::NoProgress;
use scorch_kinds::correct::CorrectParams;
use scorch_kinds::student::ChatFormat;
use scorch_model::encode::{encode_trajectory, encode_trajectory_where};
use scorch_tables::{Author, StepKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_visited_state_gets_the_oracles_step_until_the_budget() {
    // The student plans, then answers 0: two states per task.
    let (url, _) = student().await;
    let tasks = tasks(3, Split::Train, 0, 6);
    let p: CorrectParams = serde_json::from_value(serde_json::json!({
        "mode": "dagger",
        "student": {"kind": "endpoint", "base_url": url, "model": "m", "concurrency": 4},
    }))
    .unwrap();
    let dagger = |budget| {
        scorch_correct::dagger::dagger(&p, &Oracle, &tasks, (None, None), 5, &NoProgress, budget)
    };
    let all = dagger(None).await.unwrap();
    assert_eq!(all.trajectories.len(), 2 * tasks.len(), "two states a task");
    assert_eq!(all.records.len(), all.trajectories.len());
    assert_eq!(all.cost.calls, all.trajectories.len() as u64);
    for (i, t) in all.trajectories.iter().enumerate() {
        let (task, k) = (&tasks[i / 2], i % 2);
        assert_eq!(t.task_id, task.task_id);
        assert_eq!(t.steps.len(), k + 1, "the state's steps, then the label");
        assert_eq!(t.teacher_steps(), 1);
        let label = t.steps.last().unwrap();
        assert_eq!(label.author, Author::Teacher);
        assert_eq!(
            label.kind,
            if k == 0 {
                StepKind::Plan
            } else {
                StepKind::Step
            }
        );
        // The student's own steps before it, as it wrote them.
        assert!(t.steps[..k].iter().all(|s| s.author == Author::Student));
        assert_eq!(
            t.steps[..k].first().map(|s| s.thought.as_str()),
            (k == 1).then_some("guess.")
        );
        // The oracle's step at that state.
        let expected = next_step(&world_of(task).unwrap(), &t.steps[..k]);
        assert_eq!(
            (&label.thought, &label.code),
            (&expected.thought, &expected.code)
        );
        let record = &all.records[i].repairs[0];
        assert_eq!(record.step_index as usize, k + 1);
        assert_eq!(&record.teacher_step, label);
    }
    // At equal cost: the first labels in task order, as many as the budget.
    let some = dagger(Some(5)).await.unwrap();
    assert_eq!(some.trajectories, all.trajectories[..5]);
    assert_eq!(some.cost.calls, 5);

    // With `loss_on: teacher`, only the label's tokens carry loss.
    let texts: Vec<String> = all
        .trajectories
        .iter()
        .map(|t| scorch_model::encode::chat_text(ChatFormat::Compact, t))
        .collect();
    let tk = scorch_model::tokenizer::train_bpe(&texts, 300).unwrap();
    let label = &all.trajectories[1];
    let (ids, every) = encode_trajectory(&tk, ChatFormat::Compact, label).unwrap();
    let (same, teacher) = encode_trajectory_where(&tk, ChatFormat::Compact, label, |_, s| {
        s.author == Author::Teacher
    })
    .unwrap();
    assert_eq!(ids, same);
    let scored = |m: &[f32]| m.iter().filter(|&&x| x > 0.0).count();
    assert!(scored(&teacher) > 0, "the label is scored");
    assert!(
        scored(&teacher) < scored(&every),
        "the student's plan is not ({} of {})",
        scored(&teacher),
        scored(&every)
    );
    // The scored tokens are the last ones scored when every step is.
    let last_scored: Vec<usize> = (0..every.len()).filter(|&i| every[i] > 0.0).collect();
    let teacher_scored: Vec<usize> = (0..teacher.len()).filter(|&i| teacher[i] > 0.0).collect();
    assert_eq!(
        teacher_scored,
        last_scored[last_scored.len() - teacher_scored.len()..]
    );
}
