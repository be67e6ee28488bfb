//! `scorch runs` and `scorch show`: the run records of a store.

use scorch_engine::record::{Outcome, RunRecord};

use super::run::{print_record, print_settings};
use super::{Failure, StoreArgs, effective_status, find_run, open_store};

pub(super) async fn runs(store: StoreArgs, json: bool) -> Result<(), Failure> {
    let store = open_store(&store, None)?;
    let mut ids = store.list("runs").await?;
    ids.reverse();
    let mut records = Vec::new();
    for (id, _) in ids {
        if let Some(r) = store.run::<RunRecord>(&id).await? {
            records.push(r);
        }
    }
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
    }
    Ok(())
}
