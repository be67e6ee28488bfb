//! `scorch bench rollout`: episodes against a mock OpenAI-compatible server, on the
//! independent path and on the lock-step path of before, in one run.
//!
//! The mock has a fixed number of slots, as a real server has a batch size: a request holds a
//! slot for its reply time, and waits for one when all are busy. Reply times are long-tailed
//! (`fast_s`, and `slow_s` for a `slow_share` of requests, drawn by request content, so both
//! paths get the same times). Each episode writes a plan, `tool_calls` steps whose code costs
//! `tool_s` in the tool (a sleep, standing for the python tool's work), then its answer: one
//! request per turn. The server's capacity is its slots over the mean reply time; the
//! shortest possible run is the workload's total reply time over the slots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::{Json, Router};
use scorch_agent::llm::ChatOptions;
use scorch_agent::tool::{Tool, ToolOutput};
use scorch_api::NoProgress;
use scorch_spec::policy::Endpoint;
use scorch_tables::{Author, Task};
use serde_json::{Value, json};

use crate::ModelError;
use crate::episode::{Episode, Pace, Schedule, run_with};
use crate::openai::OpenAiClient;

/// The workload.
#[derive(Debug, Clone)]
pub struct RolloutBench {
    /// Episodes.
    pub episodes: usize,
    /// The mock server's concurrent slots.
    pub slots: usize,
    /// Code steps per episode.
    pub tool_calls: usize,
    /// Seconds each tool call takes.
    pub tool_s: f64,
    /// Reply time of most requests, seconds.
    pub fast_s: f64,
    /// Reply time of the slow ones.
    pub slow_s: f64,
    /// Share of slow replies.
    pub slow_share: f64,
    /// Tool calls at once on the independent path.
    pub tool_workers: usize,
}

/// One path's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PathReport {
    /// Wall seconds.
    pub seconds: f64,
    /// Episodes per second.
    pub episodes_per_s: f64,
    /// Share of the server's capacity used: the shortest possible run over this run.
    pub of_capacity: f64,
    /// Requests the server answered.
    pub requests: u64,
}

/// What the bench measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RolloutReport {
    /// The server's capacity for this workload, episodes per second.
    pub capacity_episodes_per_s: f64,
    /// The shortest possible run: total reply time over the slots, seconds.
    pub server_bound_s: f64,
    /// Episodes advancing on their own, tools in parallel.
    pub independent: PathReport,
    /// Rounds that wait for their slowest reply, tools one at a time (the path before).
    pub lock_step: PathReport,
    /// independent episodes/s over lock-step's.
    pub speedup: f64,
}

/// The reply time of a request: slow for a `slow_share` of (question, turn) pairs.
fn reply_time(b: &RolloutBench, question: &str, turn: usize) -> f64 {
    let h = blake3::hash(format!("{question}#{turn}").as_bytes());
    let x =
        u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8])) as f64 / u64::MAX as f64;
    if x < b.slow_share { b.slow_s } else { b.fast_s }
}

struct Mock {
    bench: RolloutBench,
    slots: tokio::sync::Semaphore,
    requests: std::sync::atomic::AtomicU64,
}

async fn chat(
    axum::extract::State(mock): axum::extract::State<Arc<Mock>>,
    Json(body): Json<Value>,
) -> Json<Value> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let question = messages
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();
    let turn = messages.iter().filter(|m| m["role"] == "assistant").count();
    let wait = reply_time(&mock.bench, &question, turn);
    {
        let _slot = mock.slots.acquire().await;
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
    mock.requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let content = match turn {
        0 => "Plan: work, then answer".to_owned(),
        t if t <= mock.bench.tool_calls => format!("Thought: step {t}\nCode: work({t})"),
        _ => "Thought: done\nCode: final_answer(1)".to_owned(),
    };
    Json(json!({
        "id": "bench", "object": "chat.completion", "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": messages.len(), "completion_tokens": 8},
    }))
}

/// A tool whose every call takes `seconds`.
struct Work {
    seconds: f64,
}

impl Tool for Work {
    fn execute(&mut self, code: &str) -> ToolOutput {
        std::thread::sleep(Duration::from_secs_f64(self.seconds));
        ToolOutput {
            observation: "done".into(),
            final_answer: code.contains("final_answer").then(|| "1".into()),
            failed: false,
        }
    }
}

fn tasks(n: usize) -> Vec<Task> {
    (0..n)
        .map(|i| Task {
            task_id: format!("bench-{i}"),
            suite: "bench".into(),
            split: "test".into(),
            question: format!("Bench task {i}"),
            answer: "1".into(),
            metadata: "{}".into(),
        })
        .collect()
}

async fn one_path(
    b: &RolloutBench,
    mock: &Mock,
    url: &str,
    pace: Pace,
    tool_workers: Option<usize>,
    server_bound_s: f64,
) -> Result<PathReport, ModelError> {
    let client = OpenAiClient::new(Endpoint {
        base_url: url.to_owned(),
        model: "bench".into(),
        api_key_env: None,
        concurrency: b.episodes.max(1),
        timeout_s: 600.0,
        retries: 0,
        cache_dir: None,
        pool: Vec::new(),
    })
    .map_err(|e| ModelError::Config(e.0))?;
    let mut eps: Vec<Episode> = tasks(b.episodes)
        .into_iter()
        .map(|t| {
            Episode::new(
                t,
                Box::new(Work { seconds: b.tool_s }),
                Some(b.tool_calls as u32 + 3),
            )
        })
        .collect();
    let before = mock.requests.load(std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    run_with(
        &client,
        &mut eps,
        "bench",
        &ChatOptions::greedy(1024),
        Author::Student,
        &NoProgress,
        Schedule {
            pace,
            tool_workers,
            ended: None,
        },
    )
    .await?;
    let seconds = start.elapsed().as_secs_f64();
    let done = eps.iter().filter(|e| e.final_answer.is_some()).count();
    if done != b.episodes {
        return Err(ModelError::Config(format!(
            "{done} of {} bench episodes answered",
            b.episodes
        )));
    }
    Ok(PathReport {
        seconds,
        episodes_per_s: b.episodes as f64 / seconds,
        of_capacity: server_bound_s / seconds,
        requests: mock.requests.load(std::sync::atomic::Ordering::Relaxed) - before,
    })
}

/// Run the bench: the mock server, then the independent path, then the lock-step one.
pub async fn rollout(b: &RolloutBench) -> Result<RolloutReport, ModelError> {
    let mock = Arc::new(Mock {
        bench: b.clone(),
        slots: tokio::sync::Semaphore::new(b.slots.max(1)),
        requests: std::sync::atomic::AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| ModelError::Config(format!("the mock server: {e}")))?;
    let url = format!(
        "http://{}/v1",
        listener
            .local_addr()
            .map_err(|e| ModelError::Config(e.to_string()))?
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // The workload's total reply time: every request of every episode, one per turn.
    let total: f64 = tasks(b.episodes)
        .iter()
        .map(|t| {
            (0..b.tool_calls + 2)
                .map(|turn| reply_time(b, &t.question, turn))
                .sum::<f64>()
        })
        .sum();
    let server_bound_s = total / b.slots.max(1) as f64;
    let independent = one_path(
        b,
        &mock,
        &url,
        Pace::Independent,
        Some(b.tool_workers),
        server_bound_s,
    )
    .await?;
    let lock_step = one_path(b, &mock, &url, Pace::LockStep, Some(1), server_bound_s).await?;
    server.abort();
    Ok(RolloutReport {
        capacity_episodes_per_s: b.episodes as f64 / server_bound_s,
        server_bound_s,
        speedup: independent.episodes_per_s / lock_step.episodes_per_s,
        independent,
        lock_step,
    })
}
