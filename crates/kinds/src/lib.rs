//! What the SCoRe node kinds take and give, without doing the work: each kind's typed params
//! with their defaults, its ports, and the param types they share (policies, sampling, the
//! student's size and precision).
//!
//! The work needs libtorch; these declarations do not. The `scorch` binary type-checks
//! workflows and computes cache keys from them without loading libtorch, and runs a node of
//! these kinds in `scorch-worker`, whose plugins (`plugins/*`) implement each declaration
//! with exactly its params and ports.
#![deny(missing_docs)]

pub mod correct;
mod episodes;
pub mod eval;
pub mod rl;
pub mod rollout;
pub mod sft;

// The param types the kinds share live a layer below, where the model reads them too.
pub use scorch_spec::{memory, policy, student, trainer};

pub use correct::Correct;
pub use eval::Eval;
pub use rl::Rl;
pub use rollout::Rollout;
pub use sft::Sft;
