//! A scripted student server the `correct` tests share.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;

/// A student server that plans, then answers 0 (wrong for every task here); counts the
/// requests per question.
pub async fn student() -> (String, Arc<Mutex<HashMap<String, u32>>>) {
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
