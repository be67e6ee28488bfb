//! `correct` against the shared conformance suite: a tiny student mentored by the oracle,
//! twice on the same tasks and seed, writes the same trajectories and repairs.

#![allow(clippy::unwrap_used)]

use scorch_agent::oracle::demonstration_rows;
use scorch_agent::suite::{Split, tasks};
use scorch_api::conformance::{Case, check_plugin};
use scorch_correct::Correct;
use scorch_model::testing::{table, tiny_student};

#[tokio::test]
async fn correct_conforms() {
    let tasks = tasks(0, Split::Train, 0, 4);
    let demos = demonstration_rows(&tasks);
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_student(&demos, dir.path()).unwrap();
    let r = check_plugin(
        &Correct,
        &[Case::new(
            "greedy, one repair",
            serde_json::json!({"max_repairs": 1, "sampling": {"temperature": 0.0, "max_tokens": 24}}),
        )
        .input("tasks", table(&tasks).unwrap())
        .input("model", model)],
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}
