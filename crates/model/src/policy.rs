//! One interface for every policy: the in-process student and any OpenAI-compatible endpoint
//! complete many chats per call (one batched generation for the student, concurrent
//! requests for an endpoint).

use async_trait::async_trait;
use scorch_agent::format::Message;
use scorch_agent::llm::ChatOptions;

use crate::ModelError;
use crate::local::LocalModel;
use crate::openai::{ChatResult, OpenAiClient};

/// A policy that completes chats.
#[async_trait]
pub trait Policy: Send + Sync {
    /// A name for records.
    fn name(&self) -> &str;
    /// Complete every chat with the same sampling settings; results in order.
    async fn complete_many(
        &self,
        chats: Vec<Vec<Message>>,
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
impl Policy for LocalModel {
    fn name(&self) -> &str {
        LocalModel::name(self)
    }
    async fn complete_many(
        &self,
        chats: Vec<Vec<Message>>,
        options: &ChatOptions,
    ) -> Result<Vec<ChatResult>, ModelError> {
        let me = self.clone();
        let o = options.clone();
        tokio::task::spawn_blocking(move || me.complete_batch(&chats, &o))
            .await
            .map_err(|e| ModelError::Torch(format!("generation thread: {e}")))?
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
        chats: Vec<Vec<Message>>,
        options: &ChatOptions,
    ) -> Result<Vec<ChatResult>, ModelError> {
        let calls = chats.iter().map(|c| self.complete(c, options, true));
        // The client's semaphore bounds concurrency; awaiting them together lets them overlap.
        futures::future::join_all(calls)
            .await
            .into_iter()
            .map(|r| r.map_err(ModelError::from))
            .collect()
    }
}
