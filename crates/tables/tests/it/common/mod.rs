//! Rows the api crate's integration tests write: tasks and trajectories of every shape.

use scorch_tables::{Author, Step, StepKind, StopReason, Task, Trajectory};

/// Task `i`: ids sort as they are numbered; two splits.
pub fn task(i: usize) -> Task {
    Task {
        task_id: format!("t-{i:06}"),
        suite: "builtin".into(),
        split: if i.is_multiple_of(3) { "test" } else { "train" }.into(),
        question: format!(
            "Ann has {i} apples and finds {} more. How many now?",
            i % 97
        ),
        answer: (i + i % 97).to_string(),
        metadata: format!(r#"{{"ops":{}}}"#, i % 5),
    }
}

/// Trajectory `i`: 1 to 4 steps, some observations, some without a final answer.
pub fn trajectory(i: usize) -> Trajectory {
    let steps = (1..=(i % 4 + 1) as u32)
        .map(|k| {
            let mut s = Step::new(
                k,
                if k == 1 {
                    StepKind::Plan
                } else {
                    StepKind::Step
                },
                if i.is_multiple_of(2) {
                    Author::Student
                } else {
                    Author::Teacher
                },
                &format!("thought {i}.{k}"),
                &format!("{i} + {k}"),
            );
            s.observation = (k % 2 == 0).then(|| (i + k as usize).to_string());
            s
        })
        .collect::<Vec<_>>();
    Trajectory {
        trajectory_id: format!("r-{i}"),
        task_id: format!("t-{i:06}"),
        policy: "student".into(),
        sample: 0,
        question: format!("question {i}"),
        turns: steps.len() as u32,
        steps,
        final_answer: (!i.is_multiple_of(5)).then(|| i.to_string()),
        correct: i.is_multiple_of(3),
        stop_reason: StopReason::FinalAnswer,
        metadata: "{}".into(),
    }
}
