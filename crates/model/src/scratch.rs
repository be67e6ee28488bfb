//! A student trained from scratch: its size, its tokenizer (a byte-level BPE trained on the
//! trajectories' chats) and its chat format, and the checkpoint they make.

use scorch_spec::student::InitParams;
use scorch_tables::Trajectory;
use tch::Device;

use crate::ModelError;
use crate::chat::ChatFormatExt;
use crate::checkpoint::Checkpoint;
use crate::encode::chat_text;
use crate::qwen2::Config;
use crate::tokenizer::{IM_END, token_id, train_bpe_with};

/// The tokenizer of a from-scratch student: a byte-level BPE trained on the trajectories'
/// chats as `init.chat_format` writes them.
pub fn student_tokenizer(
    init: &InitParams,
    trajectories: &[Trajectory],
) -> Result<tokenizers::Tokenizer, ModelError> {
    let texts: Vec<String> = trajectories
        .iter()
        .map(|t| chat_text(init.chat_format, t))
        .collect();
    train_bpe_with(&texts, init.vocab_size, init.split_digits)
}

/// A new student of `init`'s size with random weights (seeded), its tokenizer trained on
/// `trajectories`, and `init.chat_format` recorded in its config.
pub fn from_scratch(
    init: &InitParams,
    trajectories: &[Trajectory],
    device: Device,
    seed: u64,
) -> Result<Checkpoint, ModelError> {
    let tk = student_tokenizer(init, trajectories)?;
    let mut config = Config {
        vocab_size: tk.get_vocab_size(true) as i64,
        hidden_size: init.hidden_size,
        intermediate_size: init.intermediate_size,
        num_hidden_layers: init.num_hidden_layers,
        num_attention_heads: init.num_attention_heads,
        num_key_value_heads: init.num_key_value_heads,
        max_position_embeddings: 1024,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-6,
        tie_word_embeddings: true,
        hidden_act: "silu".into(),
        bos_token_id: None,
        eos_token_id: Some(token_id(&tk, IM_END)?),
        torch_dtype: "float32".into(),
        model_type: "qwen2".into(),
        architectures: vec!["Qwen2ForCausalLM".into()],
        attention_dropout: 0.0,
        use_sliding_window: false,
        extra: Default::default(),
    };
    init.chat_format.record(&mut config);
    Checkpoint::init(config, tk, device, seed)
}
