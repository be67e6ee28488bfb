//! `scorch serve CHECKPOINT`: the in-process student as an OpenAI-compatible endpoint
//! (`/v1/models`, `/v1/chat/completions`); concurrent requests are batched into one
//! generation.

use std::net::SocketAddr;
use std::sync::mpsc as std_mpsc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use scorch_agent::format::{Message, Role};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use scorch_agent::llm::ChatOptions;

use crate::ModelError;
use crate::local::LocalModel;
use crate::openai::ChatResult;

struct Job {
    chat: Vec<Message>,
    options: ChatOptions,
    reply: oneshot::Sender<Result<ChatResult, String>>,
}

#[derive(Clone)]
struct AppState {
    name: String,
    jobs: std_mpsc::Sender<Job>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"message": message, "type": "invalid_request_error"}})),
    )
        .into_response()
}

fn parse_request(body: &Value) -> Result<(Vec<Message>, ChatOptions), String> {
    let messages = body["messages"]
        .as_array()
        .ok_or("`messages` must be a list")?;
    let mut chat = Vec::with_capacity(messages.len());
    for m in messages {
        let role = match m["role"].as_str() {
            Some("system" | "developer") => Role::System,
            Some("user" | "tool") => Role::User,
            Some("assistant") => Role::Assistant,
            other => return Err(format!("unknown role {other:?}")),
        };
        let content = match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            _ => return Err("`content` must be text".into()),
        };
        chat.push(Message::new(role, content));
    }
    if body["stream"].as_bool() == Some(true) {
        return Err("streaming is not supported; send `stream: false`".into());
    }
    let stop = match &body["stop"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let max_tokens = body["max_completion_tokens"]
        .as_u64()
        .or_else(|| body["max_tokens"].as_u64())
        .unwrap_or(256);
    Ok((
        chat,
        ChatOptions {
            temperature: body["temperature"].as_f64().unwrap_or(1.0),
            top_p: body["top_p"].as_f64().unwrap_or(1.0),
            top_k: body["top_k"].as_u64().unwrap_or(0) as usize,
            max_tokens: max_tokens.min(8192) as usize,
            stop,
            seed: body["seed"].as_u64(),
        },
    ))
}

async fn chat_completions(State(state): State<AppState>, Json(body): Json<Value>) -> Response {
    let (chat, options) = match parse_request(&body) {
        Ok(x) => x,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let want_logprobs = body["logprobs"].as_bool() == Some(true);
    let (tx, rx) = oneshot::channel();
    if state
        .jobs
        .send(Job {
            chat,
            options,
            reply: tx,
        })
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the model worker stopped");
    }
    let r = match rx.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "the model worker stopped"),
    };
    let logprobs = if want_logprobs {
        json!({"content": r.logprobs.unwrap_or_default().iter().map(|l| json!({"token": "", "logprob": l})).collect::<Vec<_>>()})
    } else {
        Value::Null
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Json(json!({
        "id": format!("chatcmpl-{created}"),
        "object": "chat.completion",
        "created": created,
        "model": state.name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text}, "finish_reason": r.finish_reason, "logprobs": logprobs}],
        "usage": {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens, "total_tokens": r.prompt_tokens + r.completion_tokens, "prompt_tokens_details": {"cached_tokens": r.cached_tokens}},
    }))
    .into_response()
}

async fn models(State(state): State<AppState>) -> Json<Value> {
    Json(
        json!({"object": "list", "data": [{"id": state.name, "object": "model", "owned_by": "scorch"}]}),
    )
}

/// Runs jobs in batches of equal sampling settings.
fn worker(model: LocalModel, jobs: std_mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < 32 {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            let options = batch[0].options.clone();
            let (same, rest): (Vec<Job>, Vec<Job>) =
                batch.into_iter().partition(|j| j.options == options);
            batch = rest;
            let chats: Vec<Vec<Message>> = same.iter().map(|j| j.chat.clone()).collect();
            // A failure inside libtorch (which panics) answers this batch with an error and
            // leaves the worker serving.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                model.complete_batch(&chats, &options)
            }))
            .unwrap_or_else(|_| {
                Err(ModelError::Torch(
                    "generation failed inside libtorch".into(),
                ))
            });
            match result {
                Ok(results) => {
                    for (job, r) in same.into_iter().zip(results) {
                        let _ = job.reply.send(Ok(r));
                    }
                }
                Err(e) => {
                    for job in same {
                        let _ = job.reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }
}

/// Serve `model` on `addr` until the process ends. Prints the base URL once listening.
pub async fn serve(model: LocalModel, addr: SocketAddr) -> Result<(), ModelError> {
    let (tx, rx) = std_mpsc::channel();
    let name = model.name().to_owned();
    std::thread::spawn(move || worker(model, rx));
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .with_state(AppState { name, jobs: tx });
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| ModelError::Config(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| ModelError::Config(e.to_string()))?;
    println!("listening on http://{local}/v1");
    axum::serve(listener, app)
        .await
        .map_err(|e| ModelError::Config(format!("server: {e}")))
}
