//! How a chat becomes token ids: ChatML for HF/Qwen checkpoints, and a compact form for
//! students trained from scratch. The checkpoint records its format (`config.json` key
//! [`CHAT_FORMAT_KEY`]; absent means ChatML), so training, `rollout`, `eval` and `serve` all
//! render a chat the way the model was trained on it.
//!
//! Compact form: no system turn; each turn opens with one special token, `<|user|>` or
//! `<|assistant|>`; an assistant turn ends with `<|im_end|>` (the stop token); and the
//! trajectory format's labels (`Plan: `, `Thought: `, `\nCode: `, `Observation: `) are one
//! special token each. The messages' text is the same as in ChatML: the labels are swapped
//! for their tokens when encoding and back when decoding, so parsing sees the usual text.
//! For the built-in suite the median demonstration is 131 tokens against 228 in ChatML
//! (see `tests/compact_chat.rs` in `sft`).

use scorch_spec::student::ChatFormat;
use tokenizers::Tokenizer;

use crate::ModelError;
use crate::qwen2::Config;
use crate::tokenizer::{ASSISTANT, IM_END, IM_START, LABELS, USER, decode, encode, token_id};

/// The `config.json` key that records a checkpoint's chat format.
pub const CHAT_FORMAT_KEY: &str = "scorch_chat_format";
/// `text` encoded with each label of [`LABELS`] as its one token.
fn encode_labelled(tk: &Tokenizer, text: &str) -> Result<Vec<i64>, ModelError> {
    let mut ids = Vec::new();
    let mut rest = text;
    loop {
        let next = LABELS
            .iter()
            .filter_map(|(token, label)| rest.find(label).map(|at| (at, *token, label.len())))
            .min_by_key(|(at, _, _)| *at);
        let Some((at, token, len)) = next else {
            if !rest.is_empty() {
                ids.extend(encode(tk, rest)?);
            }
            return Ok(ids);
        };
        if at > 0 {
            ids.extend(encode(tk, &rest[..at])?);
        }
        ids.push(token_id(tk, token)?);
        rest = &rest[at + len..];
    }
}

/// Generated ids as text, each label token written back as its label; other special
/// tokens are left out.
fn decode_labelled(tk: &Tokenizer, ids: &[i64]) -> Result<String, ModelError> {
    let labels: Vec<(i64, &str)> = LABELS
        .iter()
        .map(|(token, label)| Ok((token_id(tk, token)?, *label)))
        .collect::<Result<_, ModelError>>()?;
    let mut text = String::new();
    let mut start = 0;
    for (i, id) in ids.iter().enumerate() {
        if let Some((_, label)) = labels.iter().find(|(l, _)| l == id) {
            text.push_str(&decode(tk, &ids[start..i])?);
            text.push_str(label);
            start = i + 1;
        }
    }
    text.push_str(&decode(tk, &ids[start..])?);
    Ok(text)
}

/// A chat turn: role and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn<'a> {
    /// `system`, `user` or `assistant`.
    pub role: &'a str,
    /// The text.
    pub content: &'a str,
}

/// A checkpoint's config records a chat format this code does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`scorch_chat_format` is {value}; expected \"chatml\" or \"compact\"")]
pub struct UnknownChatFormat {
    /// What the key holds (as JSON).
    pub value: String,
}

/// How a [`ChatFormat`] is read from and recorded in a checkpoint's config, and how it turns
/// chats into token ids and back (the format itself is declared in `scorch-kinds`, beside the
/// params that name it).
pub trait ChatFormatExt: Sized {
    /// The format a checkpoint's config records (ChatML where it records none); the error
    /// says what the key holds.
    fn of_config(config: &Config) -> Result<Self, UnknownChatFormat>;
    /// Record the format in `config` (ChatML is recorded too, so a reader need not guess).
    fn record(self, config: &mut Config);
    /// The text a from-scratch tokenizer trains on for these turns.
    fn training_text(self, turns: &[Turn<'_>]) -> String;
    /// Generated ids as the text of the message.
    fn decode(self, tk: &Tokenizer, ids: &[i64]) -> Result<String, ModelError>;
    /// Token ids of `turns` with a loss mask (1 on assistant content); with
    /// `generation_prompt`, ends with an open assistant turn.
    fn encode(
        self,
        tk: &Tokenizer,
        turns: &[Turn<'_>],
        generation_prompt: bool,
    ) -> Result<(Vec<i64>, Vec<f32>), ModelError>;
}

impl ChatFormatExt for ChatFormat {
    /// The format a checkpoint's config records (ChatML where it records none); the error
    /// says what the key holds.
    fn of_config(config: &Config) -> Result<Self, UnknownChatFormat> {
        match config.extra.get(CHAT_FORMAT_KEY) {
            None => Ok(Self::Chatml),
            Some(v) => match v.as_str() {
                Some("chatml") => Ok(Self::Chatml),
                Some("compact") => Ok(Self::Compact),
                _ => Err(UnknownChatFormat {
                    value: v.to_string(),
                }),
            },
        }
    }

    /// Record the format in `config` (ChatML is recorded too, so a reader need not guess).
    fn record(self, config: &mut Config) {
        config
            .extra
            .insert(CHAT_FORMAT_KEY.into(), self.name().into());
    }

    /// The text a from-scratch tokenizer trains on for these turns: what the format writes
    /// as plain text (role names for ChatML; nothing but the contents for the compact form),
    /// so no part of a rendered chat is split into bytes the BPE never saw.
    fn training_text(self, turns: &[Turn<'_>]) -> String {
        let mut s = String::new();
        for t in turns {
            match self {
                Self::Chatml => {
                    s.push_str(t.role);
                    s.push('\n');
                    s.push_str(t.content);
                    s.push('\n');
                }
                Self::Compact if t.role == "system" => {}
                Self::Compact => {
                    let mut content = t.content.to_owned();
                    for (_, label) in LABELS {
                        content = content.replace(label, "\n");
                    }
                    s.push_str(&content);
                    s.push('\n');
                }
            }
        }
        s
    }

    /// Generated ids as the text of the message (special tokens other than labels left out).
    fn decode(self, tk: &Tokenizer, ids: &[i64]) -> Result<String, ModelError> {
        match self {
            Self::Chatml => decode(tk, ids),
            Self::Compact => decode_labelled(tk, ids),
        }
    }

    /// Token ids of `turns` with a loss mask that is 1 on assistant content and the
    /// `<|im_end|>` that closes it; with `generation_prompt`, ends with an open assistant turn.
    fn encode(
        self,
        tk: &Tokenizer,
        turns: &[Turn<'_>],
        generation_prompt: bool,
    ) -> Result<(Vec<i64>, Vec<f32>), ModelError> {
        let end = token_id(tk, IM_END)?;
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        let mut push = |part: &[i64], m: f32| {
            ids.extend_from_slice(part);
            mask.extend(std::iter::repeat_n(m, part.len()));
        };
        match self {
            Self::Chatml => {
                let start = token_id(tk, IM_START)?;
                let nl = encode(tk, "\n")?;
                for t in turns {
                    let learn = if t.role == "assistant" { 1.0 } else { 0.0 };
                    push(&[start], 0.0);
                    push(&encode(tk, &format!("{}\n", t.role))?, 0.0);
                    push(&encode(tk, t.content)?, learn);
                    push(&[end], learn);
                    push(&nl, 0.0);
                }
                if generation_prompt {
                    push(&[start], 0.0);
                    push(&encode(tk, "assistant\n")?, 0.0);
                }
            }
            Self::Compact => {
                let user = token_id(tk, USER)?;
                let assistant = token_id(tk, ASSISTANT)?;
                for t in turns {
                    match t.role {
                        "system" => {}
                        "assistant" => {
                            push(&[assistant], 0.0);
                            push(&encode_labelled(tk, t.content)?, 1.0);
                            push(&[end], 1.0);
                        }
                        _ => {
                            push(&[user], 0.0);
                            push(&encode_labelled(tk, t.content)?, 0.0);
                        }
                    }
                }
                if generation_prompt {
                    push(&[assistant], 0.0);
                }
            }
        }
        Ok((ids, mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::train_bpe;

    fn tokenizer() -> Tokenizer {
        let texts: Vec<String> = (0..200)
            .map(|i| format!("Thought: add {i}\nCode: {i} + 7\nObservation: {}", i + 7))
            .collect();
        train_bpe(&texts, 300).unwrap()
    }

    fn turns<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<Turn<'a>> {
        pairs
            .iter()
            .map(|&(role, content)| Turn { role, content })
            .collect()
    }

    fn learned(ids: &[i64], mask: &[f32]) -> Vec<i64> {
        ids.iter()
            .zip(mask)
            .filter(|(_, m)| **m > 0.0)
            .map(|(i, _)| *i)
            .collect()
    }

    #[test]
    fn both_formats_mask_only_assistant_turns() {
        let tk = tokenizer();
        let turns = turns(&[
            ("system", "Solve it."),
            ("user", "Q 12"),
            ("assistant", "Code: 12 + 7"),
            ("user", "Observation: 19"),
        ]);
        for format in [ChatFormat::Chatml, ChatFormat::Compact] {
            let (ids, mask) = format.encode(&tk, &turns, false).unwrap();
            assert_eq!(ids.len(), mask.len());
            let l = learned(&ids, &mask);
            assert_eq!(*l.last().unwrap(), token_id(&tk, IM_END).unwrap());
            assert_eq!(decode(&tk, &l).unwrap(), "Code: 12 + 7", "{format:?}");
        }
    }

    #[test]
    fn the_compact_form_drops_the_system_turn_and_opens_turns_with_one_token() {
        let tk = tokenizer();
        let turns = turns(&[("system", "Solve it."), ("user", "Q 12")]);
        let (ids, _) = ChatFormat::Compact.encode(&tk, &turns, true).unwrap();
        let user = token_id(&tk, USER).unwrap();
        let assistant = token_id(&tk, ASSISTANT).unwrap();
        assert_eq!(ids.first(), Some(&user));
        assert_eq!(ids.last(), Some(&assistant));
        assert_eq!(ids.len(), 2 + encode(&tk, "Q 12").unwrap().len());
        let (chatml, _) = ChatFormat::Chatml.encode(&tk, &turns, true).unwrap();
        assert!(chatml.len() > ids.len() + 5);
    }

    #[test]
    fn compact_labels_are_one_token_each_and_decode_back_to_the_text() {
        let tk = tokenizer();
        let step = "Thought: add\nCode: 12 + 7";
        let turn = [Turn {
            role: "assistant",
            content: step,
        }];
        let (ids, mask) = ChatFormat::Compact.encode(&tk, &turn, false).unwrap();
        let (chatml, _) = ChatFormat::Chatml.encode(&tk, &turn, false).unwrap();
        assert!(
            ids.len() + 4 < chatml.len(),
            "{} vs {}",
            ids.len(),
            chatml.len()
        );
        let thought = token_id(&tk, "<|thought|>").unwrap();
        let code = token_id(&tk, "<|code|>").unwrap();
        assert!(ids.contains(&thought) && ids.contains(&code));
        // What the student writes (its learned tokens but the stop token) reads as the step.
        let written: Vec<i64> = learned(&ids, &mask);
        let written = &written[..written.len() - 1];
        assert_eq!(ChatFormat::Compact.decode(&tk, written).unwrap(), step);
        for text in ["Plan: use 1 2", "Observation: 19", "no label at all", ""] {
            let ids = encode_labelled(&tk, text).unwrap();
            assert_eq!(decode_labelled(&tk, &ids).unwrap(), text);
        }
    }

    #[test]
    fn the_format_round_trips_through_the_config_and_defaults_to_chatml() {
        let mut config: Config = serde_json::from_value(serde_json::json!({
            "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2
        }))
        .unwrap();
        assert_eq!(ChatFormat::of_config(&config).unwrap(), ChatFormat::Chatml);
        ChatFormat::Compact.record(&mut config);
        let text = serde_json::to_string(&config).unwrap();
        let back: Config = serde_json::from_str(&text).unwrap();
        assert_eq!(ChatFormat::of_config(&back).unwrap(), ChatFormat::Compact);
        config.extra.insert(CHAT_FORMAT_KEY.into(), "jinja".into());
        assert!(ChatFormat::of_config(&config).is_err());
    }
}
