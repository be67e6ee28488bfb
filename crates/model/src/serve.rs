//! `scorch serve CHECKPOINT`: the in-process student as an OpenAI-compatible endpoint
//! (`/v1/models`, `/v1/chat/completions` with `n`, `logprobs` and `stream`, and vLLM's
//! runtime LoRA routes `/v1/load_lora_adapter` and `/v1/unload_lora_adapter`); concurrent
//! requests for the same model with the same sampling settings are batched into one
//! generation.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use scorch_agent::format::{Message, Role};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use scorch_agent::llm::ChatOptions;

use crate::ModelError;
use crate::adapters::Adapters;
use crate::local::LocalModel;
use crate::openai::ChatResult;
use crate::policy::{self, request_seed};

/// Most choices one request may ask for (`n`).
const MAX_N: u64 = 16;

/// One request's chat, sampled `n` times in the same batch (so that the choices differ).
struct Job {
    /// The model it names (the served one or an adapter), by name and model.
    model: (String, LocalModel),
    chat: Vec<Message>,
    options: ChatOptions,
    n: usize,
    /// For a streamed reply: each choice's decoded text so far, after every token.
    progress: Option<mpsc::UnboundedSender<(usize, String)>>,
    reply: oneshot::Sender<Result<Vec<ChatResult>, Arc<ModelError>>>,
}

struct AppState {
    models: Arc<Adapters>,
    jobs: std_mpsc::Sender<Job>,
    /// Reply ids: `chatcmpl-{start}{count}`, unique in this server and across restarts.
    start: u64,
    count: AtomicU64,
}

type Shared = State<Arc<AppState>>;

impl AppState {
    fn next_id(&self) -> String {
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        format!("chatcmpl-{:x}{n:08x}", self.start)
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    let kind = if status == StatusCode::NOT_FOUND {
        "NotFoundError"
    } else if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "code": status.as_u16()}})),
    )
        .into_response()
}

/// A chat request, checked.
struct Request {
    chat: Vec<Message>,
    options: ChatOptions,
    n: usize,
    logprobs: bool,
    stream: bool,
    include_usage: bool,
}

/// What is wrong with a request's body (a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadRequest {
    #[error("`messages` must be a list")]
    Messages,
    #[error("unknown role {0}")]
    Role(String),
    #[error("`content` must be text")]
    Content,
    #[error("`n` must be a whole number from 1 to {MAX_N}")]
    N,
    #[error("`logprobs` are not streamed; send `stream: false` to get them")]
    StreamedLogprobs,
    #[error("the body must be a JSON object")]
    NotObject,
    #[error("{0}")]
    Json(String),
}

fn parse_request(body: &Value) -> Result<Request, BadRequest> {
    let messages = body["messages"].as_array().ok_or(BadRequest::Messages)?;
    let mut chat = Vec::with_capacity(messages.len());
    for m in messages {
        let role = match m["role"].as_str() {
            Some("system" | "developer") => Role::System,
            Some("user" | "tool") => Role::User,
            Some("assistant") => Role::Assistant,
            other => return Err(BadRequest::Role(format!("{other:?}"))),
        };
        let content = match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(""),
            _ => return Err(BadRequest::Content),
        };
        chat.push(Message::new(role, content));
    }
    let n = match &body["n"] {
        Value::Null => 1,
        v => match v.as_u64() {
            Some(n @ 1..=MAX_N) => n as usize,
            _ => return Err(BadRequest::N),
        },
    };
    let stream = body["stream"].as_bool() == Some(true);
    let logprobs = body["logprobs"].as_bool() == Some(true);
    if stream && logprobs {
        return Err(BadRequest::StreamedLogprobs);
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
    Ok(Request {
        chat,
        options: ChatOptions {
            temperature: body["temperature"].as_f64().unwrap_or(1.0),
            top_p: body["top_p"].as_f64().unwrap_or(1.0),
            top_k: body["top_k"].as_u64().unwrap_or(0) as usize,
            max_tokens: max_tokens.min(8192) as usize,
            stop,
            seed: body["seed"].as_u64(),
        },
        n,
        logprobs,
        stream,
        include_usage: body["stream_options"]["include_usage"].as_bool() == Some(true),
    })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn chat_completions(
    State(state): Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    let model = match body["model"].as_str() {
        Some(m) => match state.models.get(m) {
            Some(model) => (m.to_owned(), model),
            None => {
                let names: Vec<String> = state
                    .models
                    .list()
                    .iter()
                    .filter_map(|v| v["id"].as_str().map(str::to_owned))
                    .collect();
                return error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "the model `{m}` does not exist; this server has {}",
                        names.join(", ")
                    ),
                );
            }
        },
        None => return error(StatusCode::BAD_REQUEST, "`model` is required"),
    };
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let (tx, rx) = oneshot::channel();
    let (progress, progress_rx) = if req.stream {
        let (p, r) = mpsc::unbounded_channel();
        (Some(p), Some(r))
    } else {
        (None, None)
    };
    let model_name = model.0.clone();
    let job = Job {
        model,
        chat: req.chat,
        options: req.options.clone(),
        n: req.n,
        progress,
        reply: tx,
    };
    if state.jobs.send(job).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the model worker stopped");
    }
    let started = std::time::Instant::now();
    let n = req.n;
    let response = match progress_rx {
        Some(progress) => stream(
            state,
            model_name,
            req.options.stop,
            req.n,
            req.include_usage,
            progress,
            rx,
        ),
        None => whole(&state, &model_name, req.logprobs, rx).await,
    };
    // An access log line, as vLLM writes one (a streamed reply's time is to its first byte);
    // a closed stderr is no reason to fail the request.
    {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "POST /v1/chat/completions {} n={n} {} ms",
            response.status().as_u16(),
            started.elapsed().as_millis()
        );
    }
    response
}

/// The reply as one JSON object.
async fn whole(
    state: &AppState,
    model_name: &str,
    logprobs: bool,
    rx: oneshot::Receiver<Result<Vec<ChatResult>, Arc<ModelError>>>,
) -> Response {
    let results = match rx.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Err(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "the model worker stopped"),
    };
    let choices: Vec<Value> = results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let logprobs = if logprobs {
                json!({"content": token_logprobs(r)})
            } else {
                Value::Null
            };
            json!({
                "index": i,
                "message": {"role": "assistant", "content": r.text},
                "finish_reason": r.finish_reason,
                "logprobs": logprobs,
            })
        })
        .collect();
    Json(json!({
        "id": state.next_id(),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model_name,
        "choices": choices,
        "usage": usage(&results),
    }))
    .into_response()
}

/// OpenAI's `logprobs.content`: each token's text, bytes and log-probability.
fn token_logprobs(r: &ChatResult) -> Vec<Value> {
    let lps = r.logprobs.as_deref().unwrap_or_default();
    let tokens = r.tokens.as_deref().unwrap_or_default();
    lps.iter()
        .enumerate()
        .map(|(i, lp)| {
            let token = tokens.get(i).map_or("", String::as_str);
            json!({"token": token, "bytes": token.as_bytes(), "logprob": lp, "top_logprobs": []})
        })
        .collect()
}

/// The prompt counted once, the completions of every choice.
fn usage(results: &[ChatResult]) -> Value {
    let prompt = results.first().map_or(0, |r| r.prompt_tokens);
    let cached = results.first().map_or(0, |r| r.cached_tokens);
    let completion: u64 = results.iter().map(|r| r.completion_tokens).sum();
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    })
}

/// The reply as OpenAI's server-sent events: a `chat.completion.chunk` with each choice's
/// role, then its text as it is generated, then its finish reason; the usage if asked; then
/// `[DONE]`.
fn stream(
    state: Arc<AppState>,
    model_name: String,
    stops: Vec<String>,
    n: usize,
    include_usage: bool,
    mut progress: mpsc::UnboundedReceiver<(usize, String)>,
    done: oneshot::Receiver<Result<Vec<ChatResult>, Arc<ModelError>>>,
) -> Response {
    let id = state.next_id();
    let created = unix_now();
    let chunk = move |choices: Value, usage: Option<Value>| {
        let mut c = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model_name,
            "choices": choices,
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        Event::default().data(c.to_string())
    };
    let (events, rx) = mpsc::unbounded_channel::<Event>();
    tokio::spawn(async move {
        let send = |e: Event| events.send(e).is_ok();
        let delta = |i: usize, d: Value, finish: Value| json!([{"index": i, "delta": d, "logprobs": null, "finish_reason": finish}]);
        for i in 0..n {
            if !send(chunk(
                delta(i, json!({"role": "assistant", "content": ""}), Value::Null),
                None,
            )) {
                return;
            }
        }
        let mut sent: Vec<Streamed> = (0..n).map(|_| Streamed::new(&stops)).collect();
        while let Some((i, text)) = progress.recv().await {
            if let Some(d) = sent.get_mut(i).and_then(|s| s.next(&text))
                && !send(chunk(delta(i, json!({"content": d}), Value::Null), None))
            {
                return;
            }
        }
        match done.await {
            Ok(Ok(results)) => {
                for (i, r) in results.iter().enumerate() {
                    if let Some(rest) = sent.get_mut(i).and_then(|s| s.finish(&r.text)) {
                        send(chunk(delta(i, json!({"content": rest}), Value::Null), None));
                    }
                    send(chunk(
                        delta(i, json!({}), Value::from(r.finish_reason.as_str())),
                        None,
                    ));
                }
                if include_usage {
                    send(chunk(json!([]), Some(usage(&results))));
                }
            }
            Ok(Err(e)) => {
                send(
                    Event::default().data(
                        json!({"error": {"message": e.to_string(), "type": "server_error"}})
                            .to_string(),
                    ),
                );
            }
            Err(_) => {
                send(Event::default().data(
                    json!({"error": {"message": "the model worker stopped", "type": "server_error"}})
                        .to_string(),
                ));
            }
        }
        send(Event::default().data("[DONE]"));
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(events).into_response()
}

/// What of one choice's text has been streamed: only text that no stop string can still cut
/// and no unfinished character ends, so that the pieces add up to the final text.
struct Streamed {
    sent: String,
    stops: Vec<String>,
}

impl Streamed {
    fn new(stops: &[String]) -> Self {
        Self {
            sent: String::new(),
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
        }
    }

    /// The new piece to send, given the text generated so far.
    fn next(&mut self, text: &str) -> Option<String> {
        let mut end = self
            .stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
            .unwrap_or(text.len());
        // Hold back a tail that may be the start of a stop string.
        for s in &self.stops {
            for (k, _) in s.char_indices().skip(1) {
                if text[..end].ends_with(&s[..k]) {
                    end = end.min(text[..end].len() - k);
                }
            }
        }
        let safe = text[..end].trim_end_matches('\u{FFFD}');
        self.advance(safe)
    }

    /// The rest of the final text, once generation is over.
    fn finish(&mut self, text: &str) -> Option<String> {
        self.advance(text)
    }

    fn advance(&mut self, upto: &str) -> Option<String> {
        let piece = upto.strip_prefix(self.sent.as_str())?;
        if piece.is_empty() {
            return None;
        }
        let piece = piece.to_owned();
        self.sent.push_str(&piece);
        Some(piece)
    }
}

async fn list_models(State(state): Shared) -> Json<Value> {
    Json(json!({"object": "list", "data": state.models.list()}))
}

/// A body's JSON object, or what is wrong with it.
fn object(body: Result<Json<Value>, JsonRejection>) -> Result<Value, BadRequest> {
    match body {
        Ok(Json(v)) if v.is_object() => Ok(v),
        Ok(_) => Err(BadRequest::NotObject),
        Err(e) => Err(BadRequest::Json(e.body_text())),
    }
}

fn refused(r: crate::adapters::Refusal) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, &r.message)
}

/// `POST /v1/load_lora_adapter` `{"lora_name", "lora_path", "load_inplace"?}`: vLLM's reply,
/// a line of text, on success.
async fn load_lora_adapter(
    State(state): Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let body = match object(body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let (Some(name), Some(path)) = (body["lora_name"].as_str(), body["lora_path"].as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "both `lora_name` and `lora_path` must be provided",
        );
    };
    let (name, path) = (name.to_owned(), std::path::PathBuf::from(path));
    let inplace = body["load_inplace"].as_bool() == Some(true);
    let models = state.models.clone();
    let loaded = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || models.load(&name, &path, inplace)).await
    };
    match loaded {
        Ok(Ok(())) => {
            eprintln_quiet(&format!("POST /v1/load_lora_adapter 200 {name}"));
            format!("Success: LoRA adapter '{name}' added successfully.").into_response()
        }
        Ok(Err(r)) => refused(r),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "loading the adapter failed",
        ),
    }
}

/// `POST /v1/unload_lora_adapter` `{"lora_name"}`.
async fn unload_lora_adapter(
    State(state): Shared,
    body: Result<Json<Value>, JsonRejection>,
) -> Response {
    let body = match object(body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let Some(name) = body["lora_name"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "`lora_name` must be provided");
    };
    match state.models.unload(name) {
        Ok(()) => format!("Success: LoRA adapter '{name}' removed successfully.").into_response(),
        Err(r) => refused(r),
    }
}

/// A line on stderr; a closed stderr is no reason to fail a request.
fn eprintln_quiet(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Runs jobs in batches of equal sampling settings: each job's `n` samples are rows of the
/// same batch.
fn worker(jobs: std_mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.iter().map(|j| j.n).sum::<usize>() < 32 {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        while !batch.is_empty() {
            // Requests that differ only by their seed share a batch: each row has its own
            // sampler.
            let unseeded = |o: &ChatOptions| ChatOptions {
                seed: None,
                ..o.clone()
            };
            let options = unseeded(&batch[0].options);
            let (name, model) = batch[0].model.clone();
            let (same, rest): (Vec<Job>, Vec<Job>) = batch
                .into_iter()
                .partition(|j| unseeded(&j.options) == options && j.model.0 == name);
            batch = rest;
            // Row r of the batch is choice `choice[r]` of job `owner[r]`. A request with a
            // seed samples its first choice with that seed and choice c with one derived from
            // it, whatever else is in the batch (vLLM's per-request seed); one without samples
            // anew each time, as other OpenAI-compatible servers do.
            let mut chats = Vec::new();
            let mut rows = Vec::new();
            for (j, job) in same.iter().enumerate() {
                let seed = job.options.seed.unwrap_or_else(rand::random);
                for c in 0..job.n {
                    chats.push(policy::Request {
                        messages: job.chat.clone(),
                        seed: if c == 0 {
                            seed
                        } else {
                            request_seed(seed, c as u64, 0)
                        },
                    });
                    rows.push((j, c));
                }
            }
            let progress: Vec<Option<mpsc::UnboundedSender<(usize, String)>>> =
                same.iter().map(|j| j.progress.clone()).collect();
            let on_text = |row: usize, text: &str| {
                if let Some(&(j, c)) = rows.get(row)
                    && let Some(Some(tx)) = progress.get(j)
                {
                    let _ = tx.send((c, text.to_owned()));
                }
            };
            // A failure inside libtorch (which panics) answers this batch with an error and
            // leaves the worker serving.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                model.complete_batch_watched(&chats, &options, Some(&on_text))
            }))
            .unwrap_or_else(|_| {
                Err(ModelError::Torch(
                    "generation failed inside libtorch".into(),
                ))
            });
            drop(progress);
            match result {
                Ok(results) => {
                    let mut results = results.into_iter();
                    for job in same {
                        let mine: Vec<ChatResult> = results.by_ref().take(job.n).collect();
                        let _ = job.reply.send(Ok(mine));
                    }
                }
                Err(e) => {
                    let e = Arc::new(e);
                    for job in same {
                        let _ = job.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// Serve `models` on `addr` until the process ends. Prints the base URL once listening.
pub async fn serve(models: Adapters, addr: SocketAddr) -> Result<(), ModelError> {
    let (tx, rx) = std_mpsc::channel();
    std::thread::spawn(move || worker(rx));
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let state = Arc::new(AppState {
        models: Arc::new(models),
        jobs: tx,
        start,
        count: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/load_lora_adapter", post(load_lora_adapter))
        .route("/v1/unload_lora_adapter", post(unload_lora_adapter))
        .with_state(state);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_pieces_add_up_to_the_text_cut_at_a_stop_string() {
        let mut s = Streamed::new(&["\nObs".to_owned()]);
        let mut out = String::new();
        for text in ["Co", "Code: 1", "Code: 1\n", "Code: 1\nOb", "Code: 1\nObs"] {
            out.extend(s.next(text));
            assert!(
                !out.contains('\n'),
                "a possible stop start is held back: {out:?}"
            );
        }
        out.extend(s.finish("Code: 1"));
        assert_eq!(out, "Code: 1");
        // A tail that was not a stop string after all is sent once it is known.
        let mut s = Streamed::new(&["\nObs".to_owned()]);
        let mut out = String::new();
        for text in ["a\n", "a\nO", "a\nOk", "a\nOk\u{FFFD}", "a\nOk é"] {
            out.extend(s.next(text));
        }
        assert_eq!(out, "a\nOk é");
        assert_eq!(s.finish("a\nOk é"), None);
    }
}
