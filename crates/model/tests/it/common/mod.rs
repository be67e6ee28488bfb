//! What the local student's tests share: a tiny student with clear choices, and chats that
//! continue turn after turn.

#![allow(dead_code, clippy::unwrap_used)]

use scorch_agent::format::{Message, Role};
use scorch_model::checkpoint::Checkpoint;
use scorch_model::local::LocalModel;
use scorch_model::openai::ChatResult;
use scorch_model::qwen2::Config;
use scorch_model::tokenizer::train_bpe;
use tch::Device;

pub fn student() -> LocalModel {
    let texts: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "Tom has {i} apples.\nThought: buys\nCode: {i} * 3\nObservation: {}",
                i * 3
            )
        })
        .collect();
    let tk = train_bpe(&texts, 200).unwrap();
    let config: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tk.get_vocab_size(true), "hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256, "tie_word_embeddings": true
    }))
    .unwrap();
    let ck = Checkpoint::init(config, tk, Device::Cpu, 5).unwrap();
    // HF's 0.02 initialisation gives near-equal logits; wider weights give clear choices,
    // so that greedy decoding is a sharp test of equal numbers.
    tch::no_grad(|| {
        for mut v in ck.vs.trainable_variables() {
            let _ = v.g_mul_scalar_(20.0);
        }
    });
    LocalModel::new("student", ck)
}

pub fn first_turns(n: usize) -> Vec<Vec<Message>> {
    (0..n)
        .map(|i| {
            vec![
                Message::new(Role::System, "Solve it."),
                Message::new(
                    Role::User,
                    format!("Tom has {} apples. He buys {} more.", 3 + i * 7, i % 5),
                ),
            ]
        })
        .collect()
}

/// Each chat with the reply to it and an observation appended.
pub fn next_turns(chats: &[Vec<Message>], replies: &[ChatResult]) -> Vec<Vec<Message>> {
    chats
        .iter()
        .zip(replies)
        .enumerate()
        .map(|(i, (c, r))| {
            let mut c = c.clone();
            c.push(Message::new(Role::Assistant, r.text.clone()));
            c.push(Message::new(Role::User, format!("Observation: {}", i * 11)));
            c
        })
        .collect()
}

pub fn texts(r: &[ChatResult]) -> Vec<&str> {
    r.iter().map(|r| r.text.as_str()).collect()
}

/// Each reply of `reused` (a turn that could reuse the last turn's keys and values) reused
/// part of its prompt, and `fresh` (the same chats on a new model) none, with equal prompts.
pub fn assert_reused_a_part(reused: &[ChatResult], fresh: &[ChatResult]) {
    for (r, f) in reused.iter().zip(fresh) {
        assert_eq!(r.prompt_tokens, f.prompt_tokens);
        assert_eq!(f.cached_tokens, 0);
        assert!(
            r.cached_tokens > 0 && r.cached_tokens < r.prompt_tokens,
            "reused {} of {}",
            r.cached_tokens,
            r.prompt_tokens
        );
    }
}
