//! `rollout` against the shared conformance suite: the oracle and a tiny student, each run
//! twice on the same tasks and seed, write the same bytes.

#![allow(clippy::unwrap_used)]

use scorch_agent::oracle::demonstration_rows;
use scorch_agent::suite::{Split, tasks};
use scorch_api::conformance::{Case, check_plugin};
use scorch_model::testing::{table, tiny_student};
use scorch_rollout::Rollout;

#[tokio::test]
async fn rollout_conforms() {
    let tasks = tasks(0, Split::Train, 0, 6);
    let demos = demonstration_rows(&tasks);
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_student(&demos, dir.path()).unwrap();
    let r = check_plugin(
        &Rollout,
        &[
            Case::new("oracle", serde_json::json!({"policy": {"kind": "oracle"}}))
                .input("tasks", table(&tasks).unwrap()),
            Case::new(
                "student, sampled",
                serde_json::json!({"samples": 2, "sampling": {"max_tokens": 24}}),
            )
            .input("tasks", table(&tasks).unwrap())
            .input("model", model),
        ],
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}
