//! What node params say about a policy and the student, as types without libtorch: the
//! policy (an endpoint, the oracle, a student checkpoint) and its sampling, the student's
//! initialisation, chat format, precision and LoRA, and the memory plan of a training step.
//!
//! Both the node kinds' declarations (`scorch-kinds`) and the model (`scorch-model`, which
//! turns these into what runs) read them from here; neither depends on the other.
#![deny(missing_docs)]

pub mod memory;
pub mod policy;
pub mod student;
pub mod trainer;
