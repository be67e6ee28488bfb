//! Rollouts against a misbehaving server: a mock OpenAI-compatible server (raw TCP, so that it
//! can misbehave at the byte level) answers two-step episodes, and fails the first attempt of
//! a share of requests in one of five ways: 429 with `Retry-After`, 500, no reply at all, a body
//! cut off mid-way, an HTML `502 Bad Gateway` page with status 200. Every episode still ends
//! right. Errors that are not worth retrying fail at once and say what they were.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scorch_agent::llm::ChatOptions;
use scorch_agent::suite::{Split, tasks};
use scorch_agent::tool::{Tool, ToolOutput};
use scorch_api::NoProgress;
use scorch_model::ModelError;
use scorch_model::endpoint_error::EndpointError;
use scorch_model::episode::{Episode, Pace, Schedule, run_with};
use scorch_model::openai::OpenAiClient;
use scorch_spec::policy::Endpoint;
use scorch_tables::Author;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    TooMany,
    ServerError,
    NoReply,
    CutOff,
    HtmlPage,
    BadRequest,
}

/// The mock: the first attempt of a request (by question and turn) fails with `fault` when its
/// hash falls in the first `percent`; later attempts answer. Counts every request it reads.
struct Mock {
    fault: Fault,
    percent: u64,
    seen: Mutex<HashMap<String, u32>>,
    requests: Mutex<u64>,
}

fn reply(content: &str) -> String {
    let body = serde_json::json!({
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2},
    })
    .to_string();
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn handle(mock: Arc<Mock>, mut sock: tokio::net::TcpStream) {
    let Some(body) = scorch_model::testing::read_request_body(&mut sock).await else {
        return;
    };
    let body = String::from_utf8_lossy(&body).into_owned();
    *mock.requests.lock().unwrap() += 1;
    let req: serde_json::Value = serde_json::from_str(&body).unwrap();
    let messages = req["messages"].as_array().unwrap();
    let turn = messages.iter().filter(|m| m["role"] == "assistant").count();
    let key = format!("{}#{turn}", messages[1]["content"]);
    let attempt = {
        let mut seen = mock.seen.lock().unwrap();
        let n = seen.entry(key.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let hash = key
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let content = if turn == 0 {
        "Plan: answer"
    } else {
        "Thought: done\nCode: final"
    };
    let fail = (attempt == 1 && hash % 100 < mock.percent) || mock.fault == Fault::BadRequest;
    let out = if !fail {
        reply(content)
    } else {
        match mock.fault {
            Fault::TooMany => "HTTP/1.1 429 Too Many Requests\r\nretry-after: 0\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow".into(),
            Fault::ServerError => "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops".into(),
            Fault::BadRequest => "HTTP/1.1 400 Bad Request\r\ncontent-length: 7\r\nconnection: close\r\n\r\nno such".into(),
            Fault::NoReply => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            Fault::CutOff => {
                // A length promised and a body broken off.
                let full = reply(content);
                full[..full.len() - 40].to_owned()
            }
            Fault::HtmlPage => {
                let page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                )
            }
        }
    };
    let _ = sock.write_all(out.as_bytes()).await;
    let _ = sock.shutdown().await;
}

async fn start(fault: Fault, percent: u64) -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock {
        fault,
        percent,
        seen: Mutex::new(HashMap::new()),
        requests: Mutex::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let m = mock.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(handle(m.clone(), sock));
        }
    });
    (mock, url)
}

struct Answers;

impl Tool for Answers {
    fn execute(&mut self, code: &str) -> ToolOutput {
        ToolOutput {
            observation: "1".into(),
            final_answer: code.contains("final").then(|| "1".into()),
            failed: false,
        }
    }
}

fn client(url: &str, retries: u32, timeout_s: f64) -> OpenAiClient {
    OpenAiClient::new(Endpoint {
        base_url: url.to_owned(),
        model: "m".into(),
        api_key_env: None,
        concurrency: 16,
        timeout_s,
        retries,
        cache_dir: None,
        pool: Vec::new(),
    })
    .unwrap()
}

async fn forty(client: &OpenAiClient) -> (Vec<Episode>, Result<(u64, u64), ModelError>) {
    let mut eps: Vec<Episode> = tasks(9, Split::Train, 0, 40)
        .into_iter()
        .map(|t| Episode::new(t, Box::new(Answers), Some(4)))
        .collect();
    let r = run_with(
        client,
        &mut eps,
        "sys",
        &ChatOptions::greedy(1024),
        Author::Student,
        &NoProgress,
        Schedule {
            pace: Pace::Independent,
            tool_workers: Some(8),
            ended: None,
        },
    )
    .await;
    (eps, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_episode_ends_right_through_five_kinds_of_failure() {
    for (fault, percent) in [
        (Fault::TooMany, 30),
        (Fault::ServerError, 20),
        (Fault::NoReply, 5),
        (Fault::CutOff, 20),
        (Fault::HtmlPage, 10),
    ] {
        let (mock, url) = start(fault, percent).await;
        let (eps, r) = forty(&client(&url, 4, 1.0)).await;
        r.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        let right = eps
            .iter()
            .filter(|e| e.final_answer.as_deref() == Some("1"))
            .count();
        assert_eq!(right, 40, "{fault:?}");
        // Each failed once and was asked again: more requests than the 80 turns.
        let requests = *mock.requests.lock().unwrap();
        assert!(requests > 80, "{fault:?}: {requests} requests");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_say_what_they_were_and_only_retryable_ones_are_retried() {
    // A refused connection, not retried (`retries: 0`): a transport error that says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, r) = forty(&client(&format!("http://127.0.0.1:{port}/v1"), 0, 1.0)).await;
    let e = r.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(&e, ModelError::Endpoint(EndpointError::Transport { .. })),
        "{text}"
    );
    assert!(
        text.contains("connection refused") && !text.contains("model config"),
        "{text}"
    );
    assert!(
        std::error::Error::source(&e).is_some(),
        "the cause is kept: {e:?}"
    );
    // A 400 is not retried, however many retries are allowed.
    let (mock, url) = start(Fault::BadRequest, 100).await;
    let (_, r) = forty(&client(&url, 4, 1.0)).await;
    let e = r.unwrap_err();
    assert!(
        matches!(
            &e,
            ModelError::Endpoint(EndpointError::Status {
                status: 400,
                attempts: 1,
                ..
            })
        ),
        "{e}"
    );
    // Every episode asked once; none asked again.
    assert!(*mock.requests.lock().unwrap() <= 40);
    // An HTML page with status 200, past the retries: a protocol error that quotes it.
    let (_, url) = start(Fault::HtmlPage, 100).await;
    let (_, r) = forty(&client(&url, 0, 1.0)).await;
    let text = r.unwrap_err().to_string();
    assert!(
        text.contains("not a chat completion") && text.contains("<html>"),
        "{text}"
    );
}
