//! Helpers for the tests of node kinds that roll out, correct or train a student: built-in
//! tasks and the oracle's demonstrations of them as table inputs, and a tiny student
//! checkpoint as a blob input.

use std::path::Path;

use scorch_agent::suite::{Split, tasks as suite_tasks};
use scorch_api::tables::{TableRow, Task, Trajectory};

pub use scorch_agent::oracle::demonstration_rows as demonstrations;
use scorch_api::testing::TestInput;
use tch::Device;

use crate::ModelError;
use crate::scratch::{InitParams, from_scratch};

/// The first `n` tasks of `split` of the built-in suite (world seed 0).
pub fn tasks(split: Split, n: u64) -> Vec<Task> {
    suite_tasks(0, split, 0, n)
}

/// Rows as a table input.
pub fn table<T: TableRow>(rows: &[T]) -> Result<TestInput, scorch_api::PluginError> {
    Ok(TestInput::Table(vec![T::to_batch(rows)?]))
}

/// The smallest student worth running (one layer of width 32, a 300-token tokenizer trained
/// on `demos`), saved in `dir` and given as a blob input.
pub fn tiny_student(demos: &[Trajectory], dir: &Path) -> Result<TestInput, ModelError> {
    let init: InitParams = serde_json::from_value(serde_json::json!({
        "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 64
    }))
    .map_err(|e| ModelError::Config(e.to_string()))?;
    from_scratch(&init, demos, Device::Cpu, 0)?.save(dir)?;
    Ok(TestInput::Blobs(dir.to_path_buf()))
}
