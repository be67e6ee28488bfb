//! `scorch validate`: check a workflow file without running it.

use serde_json::json;

use super::{Failure, WorkflowArgs, load_workflow};

pub(super) fn validate(args: &WorkflowArgs) -> Result<(), Failure> {
    let wf = load_workflow(args)?;
    if args.json {
        let nodes: Vec<_> = wf
            .nodes
            .iter()
            .map(|n| {
                let mut v = json!({"id": n.id, "kind": n.plugin.kind()});
                if let Some(m) = &n.memory {
                    v["memory"] = super::memory_json(m);
                }
                v
            })
            .collect();
        outln!(
            "{}",
            json!({
                "ok": true,
                "workflow": wf.name,
                "nodes": nodes,
                "warnings": super::diagnostics_json(&wf.warnings),
            })
        );
    } else {
        let warnings = match wf.warnings.len() {
            0 => String::new(),
            n => format!(", {n} warning(s)"),
        };
        outln!(
            "{}: ok — workflow `{}`, {} node(s){warnings}",
            args.workflow.display(),
            wf.name,
            wf.nodes.len()
        );
        for n in &wf.nodes {
            if let Some(m) = &n.memory {
                outln!("  {}: memory {}", n.id, super::memory_line(m));
            }
        }
    }
    Ok(())
}
