//! The local student keeps each chat's keys and values for its next turn: a turn that
//! reuses them writes exactly what a fresh prefill of the whole chat writes, says how many
//! prompt tokens it reused, and nothing is reused once the weights may have changed.

#![allow(clippy::unwrap_used)]

use scorch_agent::format::{Message, Role};
use scorch_agent::llm::ChatOptions;
use scorch_model::checkpoint::Checkpoint;
use scorch_model::local::LocalModel;
use scorch_model::openai::ChatResult;
use scorch_model::qwen2::Config;
use scorch_model::tokenizer::train_bpe;
use tch::Device;

fn student() -> LocalModel {
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

fn first_turns(n: usize) -> Vec<Vec<Message>> {
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
fn next_turns(chats: &[Vec<Message>], replies: &[ChatResult]) -> Vec<Vec<Message>> {
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

fn texts(r: &[ChatResult]) -> Vec<&str> {
    r.iter().map(|r| r.text.as_str()).collect()
}

#[test]
fn a_turn_that_reuses_the_last_turns_keys_writes_what_a_fresh_prefill_writes() {
    for temperature in [0.0, 1.0] {
        let o = ChatOptions {
            temperature,
            max_tokens: 10,
            seed: Some(7),
            ..Default::default()
        };
        // 20 chats: the batch is split over worker threads, and rows of different lengths
        // reuse different amounts.
        let first = first_turns(20);
        let warm = student();
        let replies = warm.complete_batch(&first, &o).unwrap();
        assert!(replies.iter().all(|r| r.cached_tokens == 0));
        let mut second = next_turns(&first, &replies);
        // A chat never seen before, in the same batch as the ones that reuse.
        second.push(first_turns(23).pop().unwrap());
        let reused = warm.complete_batch(&second, &o).unwrap();
        let fresh = student().complete_batch(&second, &o).unwrap();
        assert_eq!(texts(&reused), texts(&fresh), "temperature {temperature}");
        for (r, f) in reused.iter().zip(&fresh).take(20) {
            assert_eq!(r.prompt_tokens, f.prompt_tokens);
            assert_eq!(f.cached_tokens, 0);
            assert!(
                r.cached_tokens > 0 && r.cached_tokens < r.prompt_tokens,
                "reused {} of {}",
                r.cached_tokens,
                r.prompt_tokens
            );
        }
        // A new chat reuses only the start it shares with the others (the system turn and
        // the question's first words), fewer tokens than any chat that continues.
        let min_continuing = reused[..20].iter().map(|r| r.cached_tokens).min().unwrap();
        assert!(reused[20].cached_tokens < min_continuing);
        // A third turn reuses the second's.
        let third = next_turns(&second[..20], &reused[..20]);
        let again = warm.complete_batch(&third, &o).unwrap();
        let fresh = student().complete_batch(&third, &o).unwrap();
        assert_eq!(texts(&again), texts(&fresh));
        assert!(
            again
                .iter()
                .zip(&reused)
                .all(|(a, r)| a.cached_tokens > r.cached_tokens)
        );
    }
}

#[test]
fn nothing_is_reused_after_the_weights_are_taken_for_training() {
    let o = ChatOptions {
        temperature: 0.0,
        max_tokens: 10,
        ..Default::default()
    };
    let first = first_turns(4);
    let model = student();
    let replies = model.complete_batch(&first, &o).unwrap();
    let second = next_turns(&first, &replies);
    // Training takes the checkpoint; here it changes a weight, as a step would.
    tch::no_grad(|| {
        let guard = model.lock();
        for mut v in guard.vs.trainable_variables() {
            let _ = v.g_mul_scalar_(1.1);
        }
    });
    let after = model.complete_batch(&second, &o).unwrap();
    assert!(after.iter().all(|r| r.cached_tokens == 0));
}
