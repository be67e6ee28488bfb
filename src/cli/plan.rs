//! `scorch plan`: what a run would do, and why.

use scorch_engine::plan::{PlanStatus, plan};
use serde_json::json;

use super::{Failure, PlanArgs, load_workflow, open_store, run_options};

pub(super) async fn plan_cmd(args: PlanArgs) -> Result<(), Failure> {
    let wf = load_workflow(&args.wf)?;
    let store = open_store(&args.store, Some(&wf))?;
    let entries = plan(&wf, &store, &run_options(&args.select, None)).await?;
    if args.wf.json {
        outln!(
            "{}",
            json!({"workflow": wf.name, "store": store.url(), "nodes": entries})
        );
    } else {
        let width = entries.iter().map(|e| e.id.len()).max().unwrap_or(4);
        for e in &entries {
            outln!("{:width$}  {}", e.id, e.describe());
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
