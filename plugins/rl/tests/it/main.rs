//! The integration tests of `scorch-rl`: one binary (one link), a module per
//! concern.

mod conformance;
mod known_answer;
mod trl_loss;
