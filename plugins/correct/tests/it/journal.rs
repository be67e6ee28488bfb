//! Mentored solving keeps each task in the node's journal as it settles: a rerun after a
//! kill mentors only the tasks that had not settled (no request is sent for the others) and
//! ends with the same trajectories, repairs and costs as a run that never stopped.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::Arc;

use common::student;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use scorch_agent::suite::{Split, tasks};
use scorch_api::NoProgress;
use scorch_api::resume::StateStore;
use scorch_correct::mentor;
use scorch_kinds::correct::CorrectParams;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_mentors_only_the_tasks_that_had_not_settled() {
    let (url, counts) = student().await;
    let tasks = tasks(3, Split::Train, 0, 12);
    let p: CorrectParams = serde_json::from_value(serde_json::json!({
        "student": {"kind": "endpoint", "base_url": url, "model": "m", "concurrency": 4},
        "max_repairs": 2,
    }))
    .unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let state = StateStore::new(
        store.clone(),
        "resume/k".into(),
        tokio::runtime::Handle::current(),
    );
    let journal = state.journal();

    let whole = mentor(&p, &tasks, (None, None), 5, &NoProgress, None)
        .await
        .unwrap();
    let first = mentor(&p, &tasks, (None, None), 5, &NoProgress, Some(&journal))
        .await
        .unwrap();
    assert_eq!(first, whole, "a journal changes nothing of the results");
    assert_eq!(journal.entries().await.unwrap().len(), tasks.len());
    assert!(
        whole.1.iter().any(|r| !r.repairs.is_empty()),
        "some repairs made"
    );

    // As if killed when only the even tasks had settled.
    for i in (1..tasks.len()).step_by(2) {
        store
            .delete(&ObjectPath::from(format!("resume/k/journal/{i:08}.json")))
            .await
            .unwrap();
    }
    counts.lock().unwrap().clear();
    let resumed = mentor(&p, &tasks, (None, None), 5, &NoProgress, Some(&journal))
        .await
        .unwrap();
    assert_eq!(resumed, whole, "the same trajectories, repairs and costs");
    let asked = counts.lock().unwrap().clone();
    for (i, t) in tasks.iter().enumerate() {
        assert_eq!(
            asked.contains_key(&t.question),
            i % 2 == 1,
            "task {i}: asked {:?} times",
            asked.get(&t.question)
        );
    }
}
