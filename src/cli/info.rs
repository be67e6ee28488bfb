//! `scorch plugins` and `scorch schema`: what this binary knows.

use scorch_engine::error::EngineError;

use super::Failure;

pub(super) fn plugins() -> Result<(), Failure> {
    for p in scorch::builtin::registry().plugins() {
        outln!("{:<10} v{:<4} {}", p.kind(), p.version(), p.description());
    }
    Ok(())
}

pub(super) fn schema(table: Option<String>) -> Result<(), Failure> {
    let schema = match table {
        None => scorch_engine::spec::workflow_schema(),
        Some(kind) => scorch_api::tables::table_schemas()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                EngineError::usage(format!(
                    "no table kind `{kind}`; kinds: tasks, trajectories, repairs, rl_prompts"
                ))
            })?,
    };
    outln!(
        "{}",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    );
    Ok(())
}
