//! Tokenizers: `tokenizer.json` through the `tokenizers` crate, ChatML rendering for
//! Qwen-family models, and training a small byte-level BPE for the embedded student.

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

fn err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// Train a byte-level BPE of about `vocab_size` tokens on `texts`, with the ChatML special
/// tokens; digits are always split one by one (as Qwen's tokenizer does).
pub fn train_bpe(texts: &[String], vocab_size: usize) -> Result<Tokenizer, ModelError> {
    train_bpe_with(texts, vocab_size, true)
}

/// [`train_bpe`], choosing whether digits are split one by one. Kept whole, frequent numbers
/// become single tokens, which a tiny model copies far more easily than digit strings.
pub fn train_bpe_with(
    texts: &[String],
    vocab_size: usize,
    split_digits: bool,
) -> Result<Tokenizer, ModelError> {
    let specials: Vec<AddedToken> = [END_OF_TEXT, IM_START, IM_END]
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    let mut trainer = BpeTrainer::builder()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials)
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
    tokenizer.add_special_tokens(&[
        AddedToken::from(END_OF_TEXT, true),
        AddedToken::from(IM_START, true),
        AddedToken::from(IM_END, true),
    ]);
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

/// A chat turn for ChatML: role and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn<'a> {
    /// `system`, `user` or `assistant`.
    pub role: &'a str,
    /// The text.
    pub content: &'a str,
}

/// ChatML token ids of `turns`, with a loss mask that is 1 on assistant content and its
/// `<|im_end|>`; with `generation_prompt`, ends with an open assistant turn.
pub fn chatml(
    tk: &Tokenizer,
    turns: &[Turn<'_>],
    generation_prompt: bool,
) -> Result<(Vec<i64>, Vec<f32>), ModelError> {
    let start = token_id(tk, IM_START)?;
    let end = token_id(tk, IM_END)?;
    let nl = encode(tk, "\n")?;
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    let push = |ids_: &[i64], m: f32, ids: &mut Vec<i64>, mask: &mut Vec<f32>| {
        ids.extend_from_slice(ids_);
        mask.extend(std::iter::repeat_n(m, ids_.len()));
    };
    for t in turns {
        let learn = if t.role == "assistant" { 1.0 } else { 0.0 };
        push(&[start], 0.0, &mut ids, &mut mask);
        push(
            &encode(tk, &format!("{}\n", t.role))?,
            0.0,
            &mut ids,
            &mut mask,
        );
        push(&encode(tk, t.content)?, learn, &mut ids, &mut mask);
        push(&[end], learn, &mut ids, &mut mask);
        push(&nl, 0.0, &mut ids, &mut mask);
    }
    if generation_prompt {
        push(&[start], 0.0, &mut ids, &mut mask);
        push(&encode(tk, "assistant\n")?, 0.0, &mut ids, &mut mask);
    }
    Ok((ids, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_masks_only_assistant_turns() {
        let texts: Vec<String> = (0..200)
            .map(|i| format!("Thought: add {i}\nCode: {i} + 7\nObservation: {}", i + 7))
            .collect();
        let tk = train_bpe(&texts, 300).unwrap();
        let (ids, mask) = chatml(
            &tk,
            &[
                Turn {
                    role: "user",
                    content: "Q 12",
                },
                Turn {
                    role: "assistant",
                    content: "Code: 12 + 7",
                },
            ],
            false,
        )
        .unwrap();
        assert_eq!(ids.len(), mask.len());
        let learned: Vec<i64> = ids
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m > 0.0)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(*learned.last().unwrap(), token_id(&tk, IM_END).unwrap());
        assert_eq!(decode(&tk, &learned).unwrap(), "Code: 12 + 7");
        // Digits are single tokens.
        assert_eq!(encode(&tk, "1234").unwrap().len(), 4);
    }
}
