//! `scorch runs` and `scorch show`: the run records of a store.

use scorch_engine::error::EngineError;
use scorch_engine::record::{Outcome, RunRecord};
use scorch_engine::store::Store;

use super::run::{print_record, print_settings};
use super::{Failure, StoreArgs, effective_status, find_run, open_store};

/// Every run record of `store`, newest first.
pub(super) async fn all_runs(store: &Store) -> Result<Vec<RunRecord>, EngineError> {
    let mut ids = store.list(scorch_engine::layout::RUNS).await?;
    ids.reverse();
    let mut records = Vec::new();
    for (id, _) in ids {
        if let Some(r) = store.run::<RunRecord>(&id).await? {
            records.push(r);
        }
    }
    Ok(records)
}

pub(super) async fn runs(store: StoreArgs, json: bool) -> Result<(), Failure> {
    let store = open_store(&store, None)?;
    let records = all_runs(&store).await?;
    if json {
        outln!("{}", serde_json::to_string(&records).unwrap_or_default());
    } else if records.is_empty() {
        outln!("no runs in {}", store.url());
    } else {
        outln!(
            "{:<24}  {:<10}  {:<16}  {:>8}  nodes",
            "run",
            "status",
            "workflow",
            "time"
        );
        for r in &records {
            let status = effective_status(r);
            outln!(
                "{:<24}  {:<10}  {:<16}  {:>7.1}s  {} ran, {} cached, {} failed",
                r.id,
                status,
                r.workflow,
                r.duration_ms as f64 / 1000.0,
                r.count(Outcome::Ran),
                r.count(Outcome::Cached),
                r.count(Outcome::Failed)
            );
        }
    }
    Ok(())
}

pub(super) async fn show(id: String, store: StoreArgs, json: bool) -> Result<(), Failure> {
    let store = open_store(&store, None)?;
    let record = find_run(&store, &id).await?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&record).unwrap_or_default()
        );
    } else {
        print_settings(&record);
        print_record(&record);
        print_locations(&store, &record).await;
    }
    Ok(())
}

/// Files listed per output at most (a checkpoint folder has a handful; more are counted).
const FILES_SHOWN: usize = 8;

/// Where each output of the run lives: its descriptor, and each of its files' objects
/// (a table's `part-*.parquet`, a checkpoint's `model.safetensors` and `config.json`).
async fn print_locations(store: &Store, r: &RunRecord) {
    outln!("outputs:");
    for n in &r.nodes {
        for (name, o) in &n.outputs {
            let size = match o.rows {
                Some(rows) => format!("{rows} rows"),
                None => format!("{} bytes", o.bytes),
            };
            outln!("  {}.{name}  {} ({size})  {}", n.id, o.kind, o.uri);
            match store.artifact(&o.artifact).await {
                Ok(artifact) => {
                    for f in artifact.files.iter().take(FILES_SHOWN) {
                        let place = store.location(&scorch_engine::layout::object(&f.object));
                        outln!("    {}  {place}", f.path);
                    }
                    if artifact.files.len() > FILES_SHOWN {
                        outln!("    and {} more files", artifact.files.len() - FILES_SHOWN);
                    }
                }
                Err(_) => outln!("    (no longer in the store: removed by gc?)"),
            }
        }
    }
}
