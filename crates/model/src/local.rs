//! The in-process student behind the chat interface: a chat rendered in the checkpoint's
//! format, batched generation, text out.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use scorch_agent::format::Message;
use scorch_agent::llm::{ChatClient, ChatOptions, ChatReply};
use scorch_agent::teacher::TeacherError;

use crate::ModelError;
use crate::chat::ChatFormatExt;
use crate::checkpoint::Checkpoint;
use crate::continuous::Engine;
use crate::generate::{Generation, generate_reusing};
use crate::openai::ChatResult;
use crate::policy::Request;
use crate::prefix::PrefixCache;
use crate::text::{Text, no_room};

/// Most sequences generated in one batch.
const CHUNK: usize = 64;

/// Most memory the keys and values kept for the next turn may take (see [`PrefixCache`]).
/// By arithmetic, not measured: the embedded student keeps 6 KB per token (4 layers, keys
/// and values, 192 floats each), so 300 chats of 200 tokens take about 370 MB.
const PREFIX_BUDGET: usize = 1 << 30;

/// A checkpoint shared by the threads that sample from it, and the keys and values of the
/// chats it completed last, which the next turn of the same chats reuses.
#[derive(Clone)]
pub struct LocalModel {
    name: String,
    inner: Arc<Mutex<Checkpoint>>,
    prefixes: Arc<Mutex<PrefixCache>>,
    batching: Batching,
    engine: Arc<Engine>,
}

/// How the student batches the requests of episodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Batching {
    /// Episodes advance on their own and each request joins the running batch as it comes
    /// ([`crate::continuous`]).
    #[default]
    Continuous,
    /// Episodes advance in rounds: every open episode's request in one call, whose batch
    /// ends with its longest reply.
    Rounds,
}

impl Batching {
    /// The environment variable that picks one for the students a node loads (`continuous`
    /// or `rounds`): both give the same outputs, so it is not part of any cache key.
    pub const ENV: &'static str = "SCORCH_BATCHING";

    /// What [`Self::ENV`] says (the default where it is unset).
    pub fn from_env() -> Result<Self, ModelError> {
        match std::env::var(Self::ENV) {
            Err(_) => Ok(Self::default()),
            Ok(v) if v == "continuous" => Ok(Self::Continuous),
            Ok(v) if v == "rounds" => Ok(Self::Rounds),
            Ok(v) => Err(ModelError::Config(format!(
                "{}={v:?}: expected `continuous` or `rounds`",
                Self::ENV
            ))),
        }
    }
}

impl std::fmt::Debug for LocalModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalModel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Called with a chat's index and its decoded completion so far, after each token.
pub type OnText<'a> = dyn Fn(usize, &str) + Sync + 'a;

impl LocalModel {
    /// Wrap a checkpoint.
    pub fn new(name: &str, checkpoint: Checkpoint) -> Self {
        Self {
            name: name.to_owned(),
            inner: Arc::new(Mutex::new(checkpoint)),
            prefixes: Arc::new(Mutex::new(PrefixCache::new(PREFIX_BUDGET))),
            batching: Batching::default(),
            engine: Arc::default(),
        }
    }

    /// The same model batching as `batching` says.
    pub fn with_batching(mut self, batching: Batching) -> Self {
        self.batching = batching;
        self
    }

    /// How it batches episodes' requests.
    pub fn batching(&self) -> Batching {
        self.batching
    }

    /// Complete one request in the continuous batch (started if none runs).
    pub async fn complete_continuous(
        &self,
        request: Request,
        o: &ChatOptions,
    ) -> Result<ChatResult, ModelError> {
        let (inner, prefixes, engine) = (
            self.inner.clone(),
            self.prefixes.clone(),
            self.engine.clone(),
        );
        let run = move || crate::continuous::serve(&inner, &prefixes, &engine);
        crate::continuous::complete(&self.engine, run, request, o).await
    }

    /// The checkpoint, for training it in place (a poisoned lock is taken over: the weights
    /// are still whole). The kept keys and values are dropped: they belong to the weights
    /// as they were.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Checkpoint> {
        let guard = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Taken after the checkpoint: no completion is running now to refill it.
        self.prefixes().clear();
        guard
    }

    fn prefixes(&self) -> std::sync::MutexGuard<'_, PrefixCache> {
        self.prefixes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Complete many chats in batched generations (blocking: call from a worker thread).
    /// Each request samples with its own seed; `o.seed` is not used.
    pub fn complete_batch(
        &self,
        requests: &[Request],
        o: &ChatOptions,
    ) -> Result<Vec<ChatResult>, ModelError> {
        self.complete_batch_watched(requests, o, None)
    }

    /// [`complete_batch`](Self::complete_batch), calling `on_text(chat, text)` with each
    /// chat's decoded completion so far after every token it generates (what a streaming
    /// server sends from).
    pub fn complete_batch_watched(
        &self,
        requests: &[Request],
        o: &ChatOptions,
        on_text: Option<&OnText<'_>>,
    ) -> Result<Vec<ChatResult>, ModelError> {
        let ck = self
            .inner
            .lock()
            .map_err(|_| ModelError::Torch("the model lock is poisoned".into()))?;
        let text = Text::of(&ck);
        let all = requests
            .iter()
            .map(|r| text.encode(&r.messages))
            .collect::<Result<Vec<_>, _>>()?;
        // A chat that leaves no room to write gets an empty completion ("length").
        let prompts: Vec<Vec<i64>> = all.iter().filter(|p| text.fits(p)).cloned().collect();
        // prompt index → chat index (a chat with no room is not generated).
        let chat_of: Vec<usize> = (0..all.len()).filter(|&i| text.fits(&all[i])).collect();
        let sampling = text.sampling(o)?;
        let pad = text.pad()?;
        let stops = &o.stop;
        let (tk, chat) = (&ck.tokenizer, ck.chat);
        // Generate in chunks of similar length: little padding, and memory bounded however
        // many chats come (attention over a padded batch grows with batch x length^2).
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| (prompts[i].len(), i));
        let mut slots: Vec<Option<Generation>> = vec![None; prompts.len()];
        let mut cached = vec![0u64; prompts.len()];
        let mut prefixes = self.prefixes();
        let mut kept = Vec::new();
        for chunk in order.chunks(CHUNK) {
            let batch: Vec<Vec<i64>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            let reuse: Vec<_> = batch.iter().map(|p| prefixes.lookup(p)).collect();
            for (&i, r) in chunk.iter().zip(&reuse) {
                cached[i] = r.as_ref().map_or(0, |r| r.len() as u64);
            }
            let seeds: Vec<u64> = chunk.iter().map(|&i| requests[chat_of[i]].seed).collect();
            let (out, k) = generate_reusing(
                &ck.model,
                &batch,
                reuse,
                &seeds,
                &sampling,
                pad,
                true,
                |row, ids| {
                    if let Some(on_text) = on_text
                        && let Ok(text) = chat.decode(tk, ids)
                    {
                        on_text(chat_of[chunk[row]], &text);
                    }
                    text.stopped(stops, ids)
                },
            )?;
            kept.extend(k);
            for (&i, g) in chunk.iter().zip(out) {
                slots[i] = Some(g);
            }
        }
        prefixes.replace(kept);
        drop(prefixes);
        let mut gens = slots.into_iter().zip(cached);
        all.iter()
            .map(|p| {
                let g = text.fits(p).then(|| gens.next()).flatten();
                match g {
                    Some((Some(g), cached)) => text.reply(p.len(), &g, cached, stops),
                    _ => Ok(no_room(p.len())),
                }
            })
            .collect()
    }
}

#[async_trait]
impl ChatClient for LocalModel {
    fn model(&self) -> &str {
        &self.name
    }
    async fn chat(
        &self,
        messages: &[Message],
        options: &ChatOptions,
    ) -> Result<ChatReply, TeacherError> {
        let o = options.clone();
        let me = self.clone();
        let messages = messages.to_vec();
        let request = Request {
            messages,
            seed: o.seed.unwrap_or(0),
        };
        let mut r = tokio::task::spawn_blocking(move || me.complete_batch(&[request], &o))
            .await
            .map_err(|e| TeacherError(e.to_string()))?
            .map_err(|e| TeacherError(e.to_string()))?;
        let r = r
            .pop()
            .ok_or_else(|| TeacherError("no completion".into()))?;
        Ok(ChatReply {
            text: r.text,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
        })
    }
}

#[async_trait]
impl crate::policy::Policy for LocalModel {
    fn name(&self) -> &str {
        LocalModel::name(self)
    }
    fn independent(&self) -> bool {
        self.batching() == Batching::Continuous
    }
    async fn complete_many(
        &self,
        requests: Vec<Request>,
        options: &ChatOptions,
    ) -> Result<Vec<ChatResult>, ModelError> {
        if self.batching() == Batching::Continuous {
            let calls = requests
                .into_iter()
                .map(|r| self.complete_continuous(r, options));
            return futures::future::try_join_all(calls).await;
        }
        let me = self.clone();
        let o = options.clone();
        tokio::task::spawn_blocking(move || me.complete_batch(&requests, &o))
            .await
            .map_err(|e| ModelError::Torch(format!("generation thread: {e}")))?
    }
}
