//! Tokenizers: `tokenizer.json` through the `tokenizers` crate, and training a small
//! byte-level BPE for the embedded student (how a chat becomes tokens is in `chat`).

use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerBuilder, TokenizerImpl};

use crate::ModelError;

/// ChatML's turn start.
pub const IM_START: &str = "<|im_start|>";
/// ChatML's turn end (the stop token of an assistant turn).
pub const IM_END: &str = "<|im_end|>";
/// Padding / end of text.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The compact form's user-turn token.
pub const USER: &str = "<|user|>";
/// The compact form's assistant-turn token.
pub const ASSISTANT: &str = "<|assistant|>";
/// The compact form's labels: the text each token stands for (longest first where one
/// contains another).
pub const LABELS: [(&str, &str); 4] = [
    ("<|plan|>", "Plan: "),
    ("<|thought|>", "Thought: "),
    ("<|code|>", "\nCode: "),
    ("<|observation|>", "Observation: "),
];

/// The special tokens of a trained tokenizer: padding, ChatML's and the compact form's.
const SPECIALS: [&str; 9] = [
    END_OF_TEXT,
    IM_START,
    IM_END,
    USER,
    ASSISTANT,
    LABELS[0].0,
    LABELS[1].0,
    LABELS[2].0,
    LABELS[3].0,
];

fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// Train a byte-level BPE of about `vocab_size` tokens on `texts`, with the special tokens
/// of both chat formats; digits are split one by one (as Qwen's tokenizer does).
pub fn train_bpe(texts: &[String], vocab_size: usize) -> Result<Tokenizer, ModelError> {
    train_bpe_with(texts, vocab_size, true)
}

/// [`train_bpe`], choosing whether digits are split one by one. Split them: a number kept
/// whole is a token of its own, which a from-scratch student sees a few times at most and
/// cannot learn to copy (measured in docs/score.md: 4.5% with whole numbers, 43-66% with digits).
pub fn train_bpe_with(
    texts: &[String],
    vocab_size: usize,
    split_digits: bool,
) -> Result<Tokenizer, ModelError> {
    let specials: Vec<AddedToken> = SPECIALS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let mut trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let pre = Sequence::new(vec![
        Digits::new(split_digits).into(),
        ByteLevel::new(false, true, true).into(),
    ]);
    let mut tk: TokenizerImpl<BPE, NormalizerWrapper, Sequence, PostProcessorWrapper, ByteLevel> =
        TokenizerBuilder::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(pre))
            .with_post_processor(None)
            .with_decoder(Some(ByteLevel::default()))
            .build()
            .map_err(err)?;
    tk.train(&mut trainer, texts.iter()).map_err(err)?;
    let mut tokenizer: Tokenizer = tk.into();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

/// The id of a token that must exist.
pub fn token_id(tk: &Tokenizer, token: &str) -> Result<i64, ModelError> {
    tk.token_to_id(token)
        .map(i64::from)
        .ok_or_else(|| ModelError::Tokenizer(format!("the tokenizer has no `{token}` token")))
}

/// Encode text without adding special tokens.
pub fn encode(tk: &Tokenizer, text: &str) -> Result<Vec<i64>, ModelError> {
    Ok(tk
        .encode(text, false)
        .map_err(err)?
        .get_ids()
        .iter()
        .map(|&i| i64::from(i))
        .collect())
}

/// Decode ids, keeping special tokens out.
pub fn decode(tk: &Tokenizer, ids: &[i64]) -> Result<String, ModelError> {
    let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
    tk.decode(&ids, true).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_tokenize_digit_by_digit() {
        // Frequent numbers would become single tokens if digits were not split.
        let texts: Vec<String> = (0..300)
            .map(|i| format!("Code: {} + 17\nObservation: {}", i % 40, i % 40 + 17))
            .collect();
        let tk = train_bpe(&texts, 400).unwrap();
        for number in ["17", "57", "1234", "100"] {
            let ids = encode(&tk, number).unwrap();
            assert_eq!(ids.len(), number.len(), "{number}");
            assert_eq!(decode(&tk, &ids).unwrap(), number);
        }
        let whole = train_bpe_with(&texts, 400, false).unwrap();
        assert_eq!(
            encode(&whole, "17").unwrap().len(),
            1,
            "the control: whole numbers merge"
        );
    }
}
