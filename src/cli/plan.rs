//! `scorch plan`: what a run would do, and why.

use scorch_engine::plan::{PlanStatus, plan};
use serde_json::json;

use super::{Failure, PlanArgs, load_workflow, open_store, run_options};

pub(super) async fn plan_cmd(args: PlanArgs) -> Result<(), Failure> {
    let wf = load_workflow(&args.wf)?;
    let store = open_store(&args.store, Some(&wf))?;
    let entries = plan(&wf, &store, &run_options(&args.select, None)).await?;
    if args.wf.json {
        let nodes: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| {
                let mut v = json!(e);
                if let Some(m) = wf.index_of(&e.id).and_then(|i| wf.nodes[i].memory.as_ref()) {
                    v["memory"] = super::memory_json(m);
                }
                v
            })
            .collect();
        outln!(
            "{}",
            json!({"workflow": wf.name, "store": store.url(), "nodes": nodes})
        );
    } else {
        let width = entries.iter().map(|e| e.id.len()).max().unwrap_or(4);
        for e in &entries {
            outln!("{:width$}  {}", e.id, e.describe());
            if let Some(m) = wf.index_of(&e.id).and_then(|i| wf.nodes[i].memory.as_ref()) {
                outln!("{:width$}  memory: {}", "", super::memory_line(m));
            }
        }
        let runs = entries
            .iter()
            .filter(|e| matches!(e.status, PlanStatus::Runs | PlanStatus::Pending))
            .count();
        outln!(
            "{} node(s): {} cached, {} to run",
            entries.len(),
            entries
                .iter()
                .filter(|e| e.status == PlanStatus::Cached)
                .count(),
            runs
        );
    }
    Ok(())
}
