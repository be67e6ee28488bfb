//! The in-process student behind the chat interface: a chat rendered in the checkpoint's
//! format, batched generation, text out.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use scorch_agent::format::Message;
use scorch_agent::llm::{ChatClient, ChatOptions, ChatReply};
use scorch_agent::teacher::TeacherError;

use crate::ModelError;
use crate::chat::{ChatFormatExt, Turn};
use crate::checkpoint::Checkpoint;
use crate::generate::{Finish, Sampling, generate_reusing};
use crate::openai::ChatResult;
use crate::prefix::PrefixCache;
use crate::tokenizer::{END_OF_TEXT, IM_END, token_id};

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
        }
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
    pub fn complete_batch(
        &self,
        chats: &[Vec<Message>],
        o: &ChatOptions,
    ) -> Result<Vec<ChatResult>, ModelError> {
        self.complete_batch_watched(chats, o, None)
    }

    /// [`complete_batch`](Self::complete_batch), calling `on_text(chat, text)` with each
    /// chat's decoded completion so far after every token it generates (what a streaming
    /// server sends from).
    pub fn complete_batch_watched(
        &self,
        chats: &[Vec<Message>],
        o: &ChatOptions,
        on_text: Option<&OnText<'_>>,
    ) -> Result<Vec<ChatResult>, ModelError> {
        let ck = self
            .inner
            .lock()
            .map_err(|_| ModelError::Torch("the model lock is poisoned".into()))?;
        let tk = &ck.tokenizer;
        let mut all = Vec::with_capacity(chats.len());
        for chat in chats {
            let turns: Vec<Turn<'_>> = chat
                .iter()
                .map(|m| Turn {
                    role: m.role.as_str(),
                    content: &m.content,
                })
                .collect();
            all.push(ck.chat.encode(tk, &turns, true)?.0);
        }
        // A chat that leaves no room to write gets an empty completion ("length").
        let limit = ck.model.config.max_position_embeddings as usize;
        let prompts: Vec<Vec<i64>> = all.iter().filter(|p| p.len() < limit).cloned().collect();
        // prompt index → chat index (a chat with no room is not generated).
        let chat_of: Vec<usize> = (0..all.len()).filter(|&i| all[i].len() < limit).collect();
        let stop_tokens = vec![token_id(tk, IM_END)?, token_id(tk, END_OF_TEXT)?];
        let pad = token_id(tk, END_OF_TEXT)?;
        let sampling = Sampling {
            temperature: o.temperature,
            top_p: o.top_p,
            top_k: o.top_k,
            max_new_tokens: o.max_tokens,
            stop_tokens,
            seed: o.seed.unwrap_or(0),
        };
        let stops = &o.stop;
        let chat = ck.chat;
        // Generate in chunks of similar length: little padding, and memory bounded however
        // many chats come (attention over a padded batch grows with batch x length^2).
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| (prompts[i].len(), i));
        let mut slots: Vec<Option<crate::generate::Generation>> = vec![None; prompts.len()];
        let mut cached = vec![0u64; prompts.len()];
        let mut prefixes = self.prefixes();
        let mut kept = Vec::new();
        for (c, chunk) in order.chunks(CHUNK).enumerate() {
            let batch: Vec<Vec<i64>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            let reuse: Vec<_> = batch.iter().map(|p| prefixes.lookup(p)).collect();
            for (&i, r) in chunk.iter().zip(&reuse) {
                cached[i] = r.as_ref().map_or(0, |r| r.len() as u64);
            }
            let sampling = Sampling {
                seed: sampling.seed.wrapping_add(c as u64),
                ..sampling.clone()
            };
            let (out, k) = generate_reusing(
                &ck.model,
                &batch,
                reuse,
                &sampling,
                pad,
                true,
                |row, ids| {
                    if let Some(on_text) = on_text
                        && let Ok(text) = chat.decode(tk, ids)
                    {
                        on_text(chat_of[chunk[row]], &text);
                    }
                    !stops.is_empty() && {
                        let tail = &ids[ids.len().saturating_sub(16)..];
                        chat.decode(tk, tail)
                            .is_ok_and(|t| stops.iter().any(|s| t.contains(s.as_str())))
                    }
                },
            )?;
            kept.extend(k);
            for (&i, g) in chunk.iter().zip(out) {
                slots[i] = Some(g);
            }
        }
        prefixes.replace(kept);
        drop(prefixes);
        let gens: Vec<(crate::generate::Generation, u64)> = slots
            .into_iter()
            .zip(cached)
            .filter_map(|(g, c)| g.map(|g| (g, c)))
            .collect();
        let mut gens = gens.into_iter();
        let mut out = Vec::with_capacity(all.len());
        for p in &all {
            let (g, cached_tokens) = match (p.len() < limit).then(|| gens.next()).flatten() {
                Some(g) => g,
                None => {
                    out.push(ChatResult {
                        text: String::new(),
                        prompt_tokens: p.len() as u64,
                        completion_tokens: 0,
                        cached_tokens: 0,
                        finish_reason: "length".into(),
                        logprobs: Some(Vec::new()),
                        tokens: Some(Vec::new()),
                    });
                    continue;
                }
            };
            let mut text = ck.chat.decode(tk, &g.ids)?;
            if let Some(cut) = stops.iter().filter_map(|s| text.find(s.as_str())).min() {
                text.truncate(cut);
            }
            let finish = if g.finish == Finish::Length {
                "length"
            } else {
                "stop"
            };
            let tokens = g
                .ids
                .iter()
                .map(|&id| ck.chat.decode(tk, &[id]))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(ChatResult {
                text,
                prompt_tokens: p.len() as u64,
                completion_tokens: g.ids.len() as u64,
                cached_tokens,
                finish_reason: finish.into(),
                logprobs: Some(g.logprobs),
                tokens: Some(tokens),
            });
        }
        Ok(out)
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
        let chat = messages.to_vec();
        let mut r = tokio::task::spawn_blocking(move || me.complete_batch(&[chat], &o))
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
