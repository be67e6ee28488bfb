//! An OpenAI-compatible chat client (vLLM, SGLang, llama.cpp's server, hosted APIs): a
//! concurrency limit, timeouts, retries with backoff on 429 and 5xx, token accounting, and a
//! response cache keyed by request content so that a rerun never pays twice for a call.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use scorch_agent::format::Message;
use scorch_agent::llm::{ChatClient, ChatOptions, ChatReply};
use scorch_agent::teacher::TeacherError;
use scorch_kinds::policy::Endpoint;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

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

/// A client of one endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    endpoint: Endpoint,
    http: reqwest::Client,
    slots: Arc<Semaphore>,
    usage: Arc<Mutex<Usage>>,
    api_key: Option<String>,
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
        let slots = Arc::new(Semaphore::new(endpoint.concurrency.max(1)));
        Ok(Self {
            endpoint,
            http,
            slots,
            usage: Arc::default(),
            api_key,
        })
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

    /// Complete a chat.
    pub async fn complete(
        &self,
        messages: &[Message],
        o: &ChatOptions,
        logprobs: bool,
    ) -> Result<ChatResult, TeacherError> {
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
            .map_err(|_| err("the client is closed"))?;
        let url = format!(
            "{}/chat/completions",
            self.endpoint.base_url.trim_end_matches('/')
        );
        let mut attempt = 0u32;
        let response: Value = loop {
            let mut req = self.http.post(&url).json(&body);
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key);
            }
            let outcome = req.send().await;
            let retry_after = match outcome {
                Ok(r) if r.status().is_success() => {
                    break r
                        .json()
                        .await
                        .map_err(|e| err(format!("{url}: bad response: {e}")))?;
                }
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    let wait = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<f64>().ok());
                    if attempt >= self.endpoint.retries {
                        return Err(err(format!(
                            "{url}: HTTP {} after {} retries",
                            r.status(),
                            attempt
                        )));
                    }
                    wait
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    return Err(err(format!(
                        "{url}: HTTP {status}: {}",
                        text.chars().take(500).collect::<String>()
                    )));
                }
                Err(e) if (e.is_timeout() || e.is_connect()) && attempt < self.endpoint.retries => {
                    None
                }
                Err(e) => return Err(err(format!("{url}: {e}"))),
            };
            attempt += 1;
            if let Ok(mut u) = self.usage.lock() {
                u.retries += 1;
            }
            let backoff = retry_after.unwrap_or(0.25 * f64::from(1u32 << attempt.min(6)));
            tokio::time::sleep(Duration::from_secs_f64(backoff.min(30.0))).await;
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
        let r = self.complete(messages, options, false).await?;
        Ok(ChatReply {
            text: r.text,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
        })
    }
}
