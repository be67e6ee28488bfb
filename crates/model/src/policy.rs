//! One interface for every policy: the in-process student and any OpenAI-compatible endpoint
//! complete many chats per call (one batched generation for the student, concurrent
//! requests for an endpoint).

use async_trait::async_trait;
use scorch_agent::format::Message;
use scorch_agent::llm::ChatOptions;

use crate::ModelError;
use crate::openai::{ChatResult, OpenAiClient};

/// One chat to complete, with the seed of its own sampler: what a request samples depends on
/// its chat, its seed and the settings, never on the requests beside it (as vLLM's per-request
/// seed).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The chat.
    pub messages: Vec<Message>,
    /// Its sampler's seed (sent to an endpoint only when the options carry a seed).
    pub seed: u64,
}

impl Request {
    /// Each chat as request `i` of a call seeded with `base` (its stream `i`, turn 0).
    pub fn each(chats: Vec<Vec<Message>>, base: u64) -> Vec<Self> {
        chats
            .into_iter()
            .enumerate()
            .map(|(i, messages)| Self {
                messages,
                seed: request_seed(base, i as u64, 0),
            })
            .collect()
    }
}

/// The seed of one request: a call's `base` seed, the `stream` of the episode that sends it
/// (its place in the node's table), and its `turn`. Two requests share a seed only if all
/// three agree, so the samples of one task differ (an endpoint given the same seed for the
/// same prompt returns the same completion), and a request samples the same whatever else
/// is in its batch, in which order episodes finish, or whether the node resumed.
pub fn request_seed(base: u64, stream: u64, turn: u64) -> u64 {
    splitmix(splitmix(splitmix(base) ^ stream) ^ turn)
}

/// SplitMix64's finaliser: a bijection that spreads nearby inputs far apart.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A policy that completes chats.
#[async_trait]
pub trait Policy: Send + Sync {
    /// A name for records.
    fn name(&self) -> &str;
    /// Complete every request with the same sampling settings; results in order.
    async fn complete_many(
        &self,
        requests: Vec<Request>,
        options: &ChatOptions,
    ) -> Result<Vec<ChatResult>, ModelError>;
    /// Whether episodes should advance on their own, each sending its next request when
    /// ready (a server that batches concurrent requests itself), rather than in rounds of
    /// one call (a policy that batches what one call gives it).
    fn independent(&self) -> bool {
        false
    }
}

#[async_trait]
impl Policy for OpenAiClient {
    fn name(&self) -> &str {
        scorch_agent::llm::ChatClient::model(self)
    }
    fn independent(&self) -> bool {
        true
    }
    async fn complete_many(
        &self,
        requests: Vec<Request>,
        options: &ChatOptions,
    ) -> Result<Vec<ChatResult>, ModelError> {
        // Each request sends its own seed, where the options ask for seeded sampling.
        let options: Vec<ChatOptions> = requests
            .iter()
            .map(|r| ChatOptions {
                seed: options.seed.map(|_| r.seed),
                ..options.clone()
            })
            .collect();
        let calls = requests
            .iter()
            .zip(&options)
            .map(|(r, o)| self.complete(&r.messages, o, true));
        // The client's semaphore bounds concurrency; awaiting them together lets them overlap.
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.map_err(ModelError::from))
            .collect()
    }
}
