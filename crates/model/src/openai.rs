//! An OpenAI-compatible chat client (vLLM, SGLang, llama.cpp's server, hosted APIs): a
//! concurrency limit, timeouts, retries with backoff on 429 and 5xx, token accounting, and a
//! response cache keyed by request content so that a rerun never pays twice for a call. An
//! endpoint may be a pool of servers of one model: requests go to the member with the fewest
//! in flight, and a member that fails is set aside for a while.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use scorch_agent::format::Message;
use scorch_agent::llm::{ChatClient, ChatOptions, ChatReply};
use scorch_agent::teacher::TeacherError;
use scorch_spec::policy::Endpoint;

pub use crate::endpoint_error::EndpointError;
use crate::endpoint_error::transport_cause;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

/// How long a pool member that failed is set aside.
const SET_ASIDE: scorch_api::backoff::Backoff = scorch_api::backoff::Backoff {
    first: Duration::from_secs(1),
    max: Duration::from_secs(32),
};

/// The wait before a request is sent again, when the server does not say.
const REQUEST_BACKOFF: scorch_api::backoff::Backoff = scorch_api::backoff::Backoff {
    first: Duration::from_millis(500),
    max: Duration::from_secs(16),
};
/// Tokens and calls spent, and calls the cache saved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Requests sent.
    pub calls: u64,
    /// Requests answered from the cache.
    pub cached: u64,
    /// Prompt tokens billed.
    pub prompt_tokens: u64,
    /// Completion tokens billed.
    pub completion_tokens: u64,
    /// Retries made.
    pub retries: u64,
}

/// One server of an endpoint's pool.
#[derive(Debug)]
struct Member {
    /// `…/chat/completions`.
    url: String,
    in_flight: AtomicUsize,
    /// Failures in a row.
    failures: AtomicU32,
    /// Set aside until then, after a failure.
    out_until: Mutex<Option<Instant>>,
}

impl Member {
    fn is_out(&self, now: Instant) -> bool {
        self.out_until
            .lock()
            .map(|t| t.is_some_and(|t| t > now))
            .unwrap_or(false)
    }
    /// Set aside for 1 s, doubling with each failure in a row, at most 32 s.
    fn failed(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut t) = self.out_until.lock() {
            *t = Some(Instant::now() + SET_ASIDE.delay(n.saturating_add(1)));
        }
    }
    fn answered(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if let Ok(mut t) = self.out_until.lock() {
            *t = None;
        }
    }
}

/// A request in flight on a member.
struct InFlight<'a>(&'a Member);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client of one endpoint (one server, or a pool of servers of one model).
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    endpoint: Endpoint,
    http: reqwest::Client,
    slots: Arc<Semaphore>,
    usage: Arc<Mutex<Usage>>,
    api_key: Option<String>,
    members: Arc<Vec<Member>>,
}

fn err(msg: impl Into<String>) -> TeacherError {
    TeacherError(msg.into())
}

/// One completed chat, with the token log-probabilities when asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResult {
    /// The assistant's text.
    pub text: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Prompt tokens whose keys and values came from a cache rather than a fresh prefill
    /// (OpenAI's `usage.prompt_tokens_details.cached_tokens`; 0 when the server does not
    /// say).
    #[serde(default)]
    pub cached_tokens: u64,
    /// `stop` or `length`.
    pub finish_reason: String,
    /// Per-token log-probabilities, if the server gave them.
    #[serde(default)]
    pub logprobs: Option<Vec<f32>>,
    /// The text of each completion token, where known (beside `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<String>>,
}

impl OpenAiClient {
    /// A client; the API key is read from `endpoint.api_key_env` now.
    pub fn new(endpoint: Endpoint) -> Result<Self, TeacherError> {
        let api_key = match &endpoint.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| {
                err(format!(
                    "environment variable `{var}` (the API key) is not set"
                ))
            })?),
            None => None,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(endpoint.timeout_s.max(0.001)))
            .build()
            .map_err(|e| err(format!("HTTP client: {e}")))?;
        let members: Vec<Member> = std::iter::once(&endpoint.base_url)
            .chain(&endpoint.pool)
            .map(|base| Member {
                url: format!("{}/chat/completions", base.trim_end_matches('/')),
                in_flight: AtomicUsize::new(0),
                failures: AtomicU32::new(0),
                out_until: Mutex::new(None),
            })
            .collect();
        // `concurrency` requests per server.
        let slots = Arc::new(Semaphore::new(endpoint.concurrency.max(1) * members.len()));
        Ok(Self {
            endpoint,
            http,
            slots,
            usage: Arc::default(),
            api_key,
            members: Arc::new(members),
        })
    }

    /// The member to send to: of those not set aside, the one with the fewest requests in
    /// flight (the first of equals); when all are set aside, the one back soonest.
    fn pick(&self) -> InFlight<'_> {
        let now = Instant::now();
        let member = self
            .members
            .iter()
            .filter(|m| !m.is_out(now))
            .min_by_key(|m| m.in_flight.load(Ordering::Relaxed))
            .or_else(|| {
                self.members
                    .iter()
                    .min_by_key(|m| m.out_until.lock().ok().and_then(|t| *t).unwrap_or(now))
            })
            .unwrap_or(&self.members[0]);
        member.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(member)
    }

    /// What was spent so far.
    pub fn usage(&self) -> Usage {
        self.usage.lock().map(|u| *u).unwrap_or_default()
    }

    fn body(&self, messages: &[Message], o: &ChatOptions, logprobs: bool) -> Value {
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut body = json!({
            "model": self.endpoint.model,
            "messages": messages,
            // As single precision, as before the options were unified: the response cache
            // is keyed by this body, so cached calls stay cached.
            "temperature": o.temperature as f32,
            "max_tokens": o.max_tokens,
        });
        if !o.stop.is_empty() {
            body["stop"] = json!(o.stop);
        }
        // Only what differs from the API's defaults, for the same reason.
        if o.top_p != 1.0 {
            body["top_p"] = json!(o.top_p);
        }
        if o.top_k > 0 {
            body["top_k"] = json!(o.top_k);
        }
        if let Some(seed) = o.seed {
            body["seed"] = json!(seed);
        }
        if logprobs {
            body["logprobs"] = json!(true);
        }
        body
    }

    fn cache_path(&self, body: &Value) -> Option<PathBuf> {
        let dir = self.endpoint.cache_dir.as_ref()?;
        let key = blake3::hash(format!("{}\n{}", self.endpoint.base_url, body).as_bytes()).to_hex();
        Some(dir.join(format!("{key}.json")))
    }

    /// Complete a chat. Transport failures, malformed replies (a body cut off, an HTML page
    /// with status 200), 408, 429 and 5xx are retried up to `retries` times with backoff (a
    /// `Retry-After` is honoured), other statuses fail at once; the error says which class
    /// it was and keeps its source.
    pub async fn complete(
        &self,
        messages: &[Message],
        o: &ChatOptions,
        logprobs: bool,
    ) -> Result<ChatResult, EndpointError> {
        let body = self.body(messages, o, logprobs);
        let cache = self.cache_path(&body);
        if let Some(hit) = cache
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<ChatResult>(&b).ok())
        {
            if let Ok(mut u) = self.usage.lock() {
                u.cached += 1;
            }
            return Ok(hit);
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| EndpointError::Setup("the client is closed".into()))?;
        // Each failure counts against `retries`; a pool may also move on once per other
        // member without waiting.
        let allowed = self.endpoint.retries + self.endpoint.pool.len() as u32;
        let mut attempt = 0u32;
        let response: Value = loop {
            let member = self.pick();
            let url = member.0.url.clone();
            let mut req = self.http.post(&url).json(&body);
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key);
            }
            let (failure, retry_after) = match attempt_once(req, &url).await {
                Ok(v) => {
                    member.0.answered();
                    break v;
                }
                Err(f) => f,
            };
            attempt += 1;
            if !failure.retryable() || attempt > allowed {
                return Err(failure.after(attempt));
            }
            tracing::warn!(url, error = %failure, "an endpoint request failed; trying again");
            // A server that is down or broken is set aside; one that asks to wait is not.
            if !matches!(failure, EndpointError::Status { status: 429, .. }) {
                member.0.failed();
            }
            drop(member);
            if let Ok(mut u) = self.usage.lock() {
                u.retries += 1;
            }
            // Straight on to a member that is not set aside; otherwise back off.
            let now = Instant::now();
            if retry_after.is_none() && self.members.iter().any(|m| !m.is_out(now)) {
                continue;
            }
            // The server's Retry-After (at most 30 s) where it gave one; else 0.5 s, doubling,
            // at most 16 s.
            let backoff = match retry_after {
                Some(secs) => Duration::from_secs_f64(secs.min(30.0)),
                None => REQUEST_BACKOFF.delay(attempt),
            };
            tokio::time::sleep(backoff).await;
        };
        let choice = &response["choices"][0];
        let result = ChatResult {
            text: choice["message"]["content"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            prompt_tokens: response["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            completion_tokens: response["usage"]["completion_tokens"].as_u64().unwrap_or(0),
            cached_tokens: response["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0),
            finish_reason: choice["finish_reason"]
                .as_str()
                .unwrap_or("stop")
                .to_owned(),
            logprobs: choice["logprobs"]["content"].as_array().map(|items| {
                items
                    .iter()
                    .filter_map(|t| t["logprob"].as_f64().map(|x| x as f32))
                    .collect()
            }),
            tokens: choice["logprobs"]["content"].as_array().map(|items| {
                items
                    .iter()
                    .map(|t| t["token"].as_str().unwrap_or_default().to_owned())
                    .collect()
            }),
        };
        if let Ok(mut u) = self.usage.lock() {
            u.calls += 1;
            u.prompt_tokens += result.prompt_tokens;
            u.completion_tokens += result.completion_tokens;
        }
        if let Some(p) = cache {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let tmp = p.with_extension("tmp");
            if std::fs::write(&tmp, serde_json::to_vec(&result).unwrap_or_default()).is_ok() {
                let _ = std::fs::rename(&tmp, &p);
            }
        }
        Ok(result)
    }
}

#[async_trait]
impl ChatClient for OpenAiClient {
    fn model(&self) -> &str {
        &self.endpoint.model
    }
    async fn chat(
        &self,
        messages: &[Message],
        options: &ChatOptions,
    ) -> Result<ChatReply, TeacherError> {
        let r = self
            .complete(messages, options, false)
            .await
            .map_err(|e| TeacherError(e.to_string()))?;
        Ok(ChatReply {
            text: r.text,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
        })
    }
}

/// One request: the reply's JSON when it is a chat completion, else the failure and the
/// server's `Retry-After` (seconds), if it sent one.
async fn attempt_once(
    req: reqwest::RequestBuilder,
    url: &str,
) -> Result<Value, (EndpointError, Option<f64>)> {
    let transport = |e: reqwest::Error| EndpointError::Transport {
        url: url.to_owned(),
        cause: transport_cause(&e),
        attempts: 1,
        source: e,
    };
    let r = req.send().await.map_err(|e| (transport(e), None))?;
    let status = r.status();
    let wait = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok());
    if !status.is_success() {
        let text = r.text().await.unwrap_or_default();
        return Err((
            EndpointError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
                body: text.chars().take(500).collect(),
                attempts: 1,
            },
            wait,
        ));
    }
    let bytes = r.bytes().await.map_err(|e| (transport(e), None))?;
    let protocol = |what: String| EndpointError::Protocol {
        url: url.to_owned(),
        what,
        attempts: 1,
    };
    let begins = || {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        format!("it begins {text:?}")
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v) if v["choices"][0]["message"].is_object() => Ok(v),
        Ok(_) => Err((
            protocol(format!("no `choices[0].message`; {}", begins())),
            None,
        )),
        Err(e) => Err((protocol(format!("not JSON ({e}); {}", begins())), None)),
    }
}
