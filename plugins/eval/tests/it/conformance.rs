//! `eval` against the shared conformance suite: the oracle and a tiny student, each run
//! twice on the same tasks and seed, write the same bytes.

#![allow(clippy::unwrap_used)]

use scorch_agent::oracle::demonstration_rows;
use scorch_agent::suite::{Split, tasks};
use scorch_api::conformance::{Case, check_plugin};
use scorch_eval::Eval;
use scorch_model::testing::{table, tiny_student};

#[tokio::test]
async fn eval_conforms() {
    let tasks = tasks(0, Split::Test, 0, 6);
    let demos = demonstration_rows(&tasks);
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_student(&demos, dir.path()).unwrap();
    let r = check_plugin(
        &Eval,
        &[
            Case::new(
                "teacher",
                serde_json::json!({"label": "teacher", "policy": {"kind": "oracle"}}),
            )
            .input("tasks", table(&tasks).unwrap()),
            Case::new(
                "student",
                serde_json::json!({"label": "student", "sampling": {"temperature": 0.0, "max_tokens": 24}}),
            )
            .input("tasks", table(&tasks).unwrap())
            .input("model", model),
        ],
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}
