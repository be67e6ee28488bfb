//! Mentored solving keeps each task in the node's journal as it settles: a rerun after a
//! kill mentors only the tasks that had not settled (no request is sent for the others) and
//! ends with the same trajectories, repairs and costs as a run that never stopped.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use scorch_agent::suite::{Split, tasks};
use scorch_api::NoProgress;
use scorch_api::resume::StateStore;
use scorch_correct::mentor;
use scorch_kinds::correct::CorrectParams;
use tokio::io::AsyncWriteExt;

/// A student server that plans, then answers 0 (wrong for every task here); counts the
/// requests per question.
async fn student() -> (String, Arc<Mutex<HashMap<String, u32>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let Some(body) = scorch_model::testing::read_request_body(&mut sock).await else {
                    return;
                };
                let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let messages = req["messages"].as_array().unwrap();
                let question = messages[1]["content"].as_str().unwrap().to_owned();
                *c.lock().unwrap().entry(question).or_insert(0) += 1;
                let content = if messages.iter().all(|m| m["role"] != "assistant") {
                    "Plan: guess."
                } else {
                    "Thought: guess.\nCode: final_answer(0)"
                };
                let body = serde_json::json!({
                    "id": "x", "object": "chat.completion", "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 4},
                })
                .to_string();
                let out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (url, counts)
}

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
