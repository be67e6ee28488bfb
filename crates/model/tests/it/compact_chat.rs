//! The embedded student's view of a chat stays short: the median oracle trajectory of the
//! built-in suite renders, in the compact format with the student's own tokenizer, to at
//! most `BOUND` tokens (measured: 131; ChatML with the same tokenizer: 228), and every
//! number is written digit by digit.

#![allow(clippy::unwrap_used)]

use scorch_agent::oracle::demonstration_rows;
use scorch_agent::suite::{Split, tasks};
use scorch_model::encode::encode_trajectory;
use scorch_model::scratch::student_tokenizer;
use scorch_model::tokenizer::encode;
use scorch_spec::student::ChatFormat;
use scorch_spec::student::InitParams;
use scorch_tables::Trajectory;

/// Most tokens of the median compact trajectory.
const BOUND: usize = 140;

fn demonstrations(n: u64) -> Vec<Trajectory> {
    demonstration_rows(&tasks(0, Split::Train, 0, n))
}

fn init(format: ChatFormat) -> InitParams {
    let mut init: InitParams = serde_json::from_value(serde_json::json!({})).unwrap();
    init.chat_format = format;
    init
}

fn median_tokens(format: ChatFormat, demos: &[Trajectory]) -> (usize, f64) {
    let tk = student_tokenizer(&init(format), demos).unwrap();
    let mut lens = Vec::new();
    let (mut learned, mut total) = (0.0, 0.0);
    for t in demos {
        let (ids, mask) = encode_trajectory(&tk, format, t).unwrap();
        lens.push(ids.len());
        learned += mask.iter().map(|&m| f64::from(m)).sum::<f64>();
        total += ids.len() as f64;
    }
    lens.sort_unstable();
    (lens[lens.len() / 2], learned / total)
}

#[test]
fn the_median_compact_trajectory_is_short() {
    let demos = demonstrations(400);
    assert!(demos.iter().all(|t| t.correct));
    let (compact, share) = median_tokens(ChatFormat::Compact, &demos);
    let (chatml, _) = median_tokens(ChatFormat::Chatml, &demos);
    eprintln!("median tokens: compact {compact}, chatml {chatml}; loss share {share:.2}");
    assert!(
        compact <= BOUND,
        "median compact trajectory: {compact} tokens"
    );
    assert!(chatml > compact + 40, "chatml {chatml}, compact {compact}");
    assert!(share > 0.25, "share of tokens with loss: {share:.2}");
}

#[test]
fn the_students_tokenizer_writes_numbers_digit_by_digit() {
    let demos = demonstrations(200);
    let tk = student_tokenizer(&init(ChatFormat::Compact), &demos).unwrap();
    for number in ["7", "42", "120", "6039"] {
        assert_eq!(encode(&tk, number).unwrap().len(), number.len(), "{number}");
    }
}
