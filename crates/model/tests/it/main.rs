//! The integration tests of `scorch-model`: one binary (one link), a module per
//! concern.

mod common;
mod compact_chat;
mod endpoint_faults;
mod episode_pace;
mod golden;
mod local_batching;
mod lora_peft;
mod prefix;
mod train;
mod turn_limits;
