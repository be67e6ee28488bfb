//! Turning chats into a checkpoint's tokens and back, for the threads that generate.

use scorch_agent::format::Message;
use scorch_agent::llm::ChatOptions;

use crate::ModelError;
use crate::chat::{ChatFormatExt, Turn};
use crate::checkpoint::Checkpoint;
use crate::generate::{Finish, Generation, Sampling};
use crate::openai::ChatResult;
use crate::tokenizer::{END_OF_TEXT, IM_END, token_id};

/// What turning chats into tokens and back takes: the checkpoint's tokenizer, its chat format
/// and its positions (shared by the threads that generate, which the weights are not).
#[derive(Clone, Copy)]
pub(crate) struct Text<'a> {
    tk: &'a tokenizers::Tokenizer,
    chat: scorch_spec::student::ChatFormat,
    positions: usize,
}

impl<'a> Text<'a> {
    /// The checkpoint's.
    pub(crate) fn of(ck: &'a Checkpoint) -> Self {
        Self {
            tk: &ck.tokenizer,
            chat: ck.chat,
            positions: ck.model.config.max_position_embeddings as usize,
        }
    }

    /// A chat's prompt in the checkpoint's format, ready for the assistant's turn.
    pub(crate) fn encode(self, messages: &[Message]) -> Result<Vec<i64>, ModelError> {
        let turns: Vec<Turn<'_>> = messages
            .iter()
            .map(|m| Turn {
                role: m.role.as_str(),
                content: &m.content,
            })
            .collect();
        Ok(self.chat.encode(self.tk, &turns, true)?.0)
    }

    /// Whether a prompt leaves the model a position to write in.
    pub(crate) fn fits(self, prompt: &[i64]) -> bool {
        prompt.len() < self.positions
    }

    /// The positions a prompt leaves.
    pub(crate) fn room(self, prompt: &[i64]) -> usize {
        self.positions.saturating_sub(prompt.len())
    }

    /// The padding token.
    pub(crate) fn pad(self) -> Result<i64, ModelError> {
        token_id(self.tk, END_OF_TEXT)
    }

    /// The sampler settings of `o` (its seed aside: each request has its own).
    pub(crate) fn sampling(self, o: &ChatOptions) -> Result<Sampling, ModelError> {
        Ok(Sampling {
            options: ChatOptions {
                stop: Vec::new(),
                seed: None,
                ..o.clone()
            },
            stop_tokens: vec![token_id(self.tk, IM_END)?, token_id(self.tk, END_OF_TEXT)?],
        })
    }

    /// Whether the end of `ids` spells one of `stops`.
    pub(crate) fn stopped(self, stops: &[String], ids: &[i64]) -> bool {
        !stops.is_empty() && {
            let tail = &ids[ids.len().saturating_sub(16)..];
            self.chat
                .decode(self.tk, tail)
                .is_ok_and(|t| stops.iter().any(|s| t.contains(s.as_str())))
        }
    }

    /// The reply a prompt of `prompt_tokens` tokens gets from generation `g`, of which the
    /// first `cached_tokens` came from kept keys and values.
    pub(crate) fn reply(
        self,
        prompt_tokens: usize,
        g: &Generation,
        cached_tokens: u64,
        stops: &[String],
    ) -> Result<ChatResult, ModelError> {
        let mut text = self.chat.decode(self.tk, &g.ids)?;
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
            .map(|&id| self.chat.decode(self.tk, &[id]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ChatResult {
            text,
            prompt_tokens: prompt_tokens as u64,
            completion_tokens: g.ids.len() as u64,
            cached_tokens,
            finish_reason: finish.into(),
            logprobs: Some(g.logprobs.clone()),
            tokens: Some(tokens),
        })
    }
}

/// The reply to a chat that leaves no room to write: empty, "length".
pub(crate) fn no_room(prompt_tokens: usize) -> ChatResult {
    ChatResult {
        text: String::new(),
        prompt_tokens: prompt_tokens as u64,
        completion_tokens: 0,
        cached_tokens: 0,
        finish_reason: "length".into(),
        logprobs: Some(Vec::new()),
        tokens: Some(Vec::new()),
    }
}
