//! `scorch compare`: the arms of an experiment run, with intervals across seeds, paired
//! differences against a baseline arm and teacher cost.

use std::path::PathBuf;

use scorch_engine::error::EngineError;
use scorch_engine::workflow::{LoadOptions, load};

use super::{Failure, StoreArgs, find_run, open_store};

pub(super) async fn compare(
    id: String,
    store: StoreArgs,
    baseline: Option<String>,
    gap: Option<String>,
    out: Option<PathBuf>,
) -> Result<(), Failure> {
    let gap = gap
        .map(|g| match g.split_once(',') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => {
                Ok((from.trim().to_owned(), to.trim().to_owned()))
            }
            _ => Err(EngineError::usage(format!(
                "--gap {g:?}: expected two arms as FROM,TO, e.g. `--gap warm_start,teacher`"
            ))),
        })
        .transpose()?;
    let store = open_store(&store, None)?;
    let record = find_run(&store, &id).await?;
    let file = PathBuf::from(&record.file);
    let wf = load(&file, &scorch::builtin::registry(), &LoadOptions::default())
        .map_err(|_| {
            EngineError::usage(format!(
                "the workflow file {} of run {} is needed to trace teacher cost; it is gone or no longer valid",
                record.file, record.id
            ))
        })?;
    let graph = wf.graph();
    let mut arms =
        scorch_report::compare::compare(&store, &record, &graph, baseline.as_deref()).await?;
    if let Some((from, to)) = &gap {
        scorch_report::compare::gap_closed(&mut arms, from, to)
            .map_err(|e| EngineError::usage(e.to_string()))?;
    }
    let dir = out.unwrap_or_else(|| PathBuf::from(format!("compare-{}", record.id)));
    scorch_report::compare::write(&arms, baseline.as_deref(), &dir)?;
    out!(
        "{}",
        scorch_report::compare::markdown(&arms, baseline.as_deref())
    );
    outln!("comparison written to {}", dir.display());
    Ok(())
}
