//! A node's table outputs (`ctx.write_rows`, `TableWriter::write`) through the plugin test
//! harness: rows of the declared kind are written and read back; rows or batches of another
//! kind are refused with an error naming the output and both column lists.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;

use common::{task, trajectory};
use schemars::JsonSchema;
use scorch_api::reexports::async_trait;
use scorch_api::testing::{RunOptions, run_plugin};
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, Signature};
use scorch_tables::{TableRow, Task};
use serde::{Deserialize, Serialize};

/// Declares a `tasks` output and writes what its params say into it.
#[derive(Debug, Clone, Copy, Default)]
struct Writes;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
struct WritesParams {
    /// `tasks` or `trajectories`.
    kind: String,
    /// Through `TableWriter::write` with a record batch, not `write_rows`.
    batch: bool,
}

async fn write<T: TableRow>(ctx: &NodeContext, rows: &[T], batch: bool) -> Result<(), PluginError> {
    if batch {
        let mut w = ctx.table_writer("out")?;
        w.write(&T::to_batch(rows)?)?;
        w.finish().map(|_| ())
    } else {
        ctx.write_rows("out", rows)
    }
}

#[async_trait]
impl Plugin for Writes {
    type Params = WritesParams;
    fn kind(&self) -> &'static str {
        "writes"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "Writes tasks or trajectories into a tasks output"
    }
    fn signature(&self, _: &WritesParams) -> Result<Signature, ParamError> {
        Ok(Signature::new().output("out", Task::port()))
    }
    async fn run(&self, p: WritesParams, ctx: &NodeContext) -> Result<(), PluginError> {
        match p.kind.as_str() {
            "tasks" => write(ctx, &(0..5000).map(task).collect::<Vec<_>>(), p.batch).await,
            _ => write(ctx, &(0..3).map(trajectory).collect::<Vec<_>>(), p.batch).await,
        }
    }
}

async fn run(kind: &str, batch: bool) -> Result<Vec<Task>, PluginError> {
    let params = serde_json::json!({"kind": kind, "batch": batch});
    let out = run_plugin(&Writes, &params, BTreeMap::new(), RunOptions::default()).await?;
    let mut rows = Vec::new();
    for b in &out.tables["out"] {
        rows.extend(Task::from_batch(b).unwrap());
    }
    Ok(rows)
}

#[tokio::test]
async fn rows_of_the_declared_kind_come_back_in_order() {
    for batch in [false, true] {
        let rows = run("tasks", batch).await.unwrap();
        assert_eq!(
            rows,
            (0..5000).map(task).collect::<Vec<_>>(),
            "batch: {batch}"
        );
    }
}

#[tokio::test]
async fn rows_of_another_kind_are_refused_naming_both_column_lists() {
    for (batch, what) in [
        (false, "the columns of trajectories rows"),
        (true, "batch columns"),
    ] {
        let e = run("trajectories", batch).await.unwrap_err().to_string();
        assert!(
            e.contains(&format!("output `out`: {what} [trajectory_id: Utf8"))
                && e.contains("differ from the declared [task_id: Utf8"),
            "{e}"
        );
    }
}
