//! The local student keeps each chat's keys and values for its next turn: a turn that
//! reuses them writes exactly what a fresh prefill of the whole chat writes, says how many
//! prompt tokens it reused, and nothing is reused once the weights may have changed.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{assert_reused_a_part, first_turns, next_turns, student, texts};
use scorch_agent::llm::ChatOptions;
use scorch_model::policy::Request;

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
        let replies = warm
            .complete_batch(&Request::each(first.clone(), 7), &o)
            .unwrap();
        assert!(replies.iter().all(|r| r.cached_tokens == 0));
        let mut second = next_turns(&first, &replies);
        // A chat never seen before, in the same batch as the ones that reuse.
        second.push(first_turns(23).pop().unwrap());
        let reused = warm
            .complete_batch(&Request::each(second.clone(), 7), &o)
            .unwrap();
        let fresh = student()
            .complete_batch(&Request::each(second.clone(), 7), &o)
            .unwrap();
        assert_eq!(texts(&reused), texts(&fresh), "temperature {temperature}");
        assert_reused_a_part(&reused[..20], &fresh[..20]);
        // A new chat reuses only the start it shares with the others (the system turn and
        // the question's first words), fewer tokens than any chat that continues.
        let min_continuing = reused[..20].iter().map(|r| r.cached_tokens).min().unwrap();
        assert!(reused[20].cached_tokens < min_continuing);
        // A third turn reuses the second's.
        let third = next_turns(&second[..20], &reused[..20]);
        let again = warm
            .complete_batch(&Request::each(third.clone(), 7), &o)
            .unwrap();
        let fresh = student()
            .complete_batch(&Request::each(third.clone(), 7), &o)
            .unwrap();
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
    let replies = model
        .complete_batch(&Request::each(first.clone(), 7), &o)
        .unwrap();
    let second = next_turns(&first, &replies);
    // Training takes the checkpoint; here it changes a weight, as a step would.
    tch::no_grad(|| {
        let guard = model.lock();
        for mut v in guard.vs.trainable_variables() {
            let _ = v.g_mul_scalar_(1.1);
        }
    });
    let after = model
        .complete_batch(&Request::each(second.clone(), 7), &o)
        .unwrap();
    assert!(after.iter().all(|r| r.cached_tokens == 0));
}
