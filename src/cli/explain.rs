//! `scorch explain`: why a node would run or is cached, component by component.

use scorch_engine::error::EngineError;
use scorch_engine::plan::plan;
use scorch_engine::run::RunOptions;
use scorch_engine::store::Store;
use scorch_engine::workflow::Workflow;

use super::Failure;

pub(super) async fn explain(wf: &Workflow, store: &Store, node: &str) -> Result<(), Failure> {
    let idx = wf.index_of(node).ok_or_else(|| {
        let hint = scorch_api::did_you_mean(node, wf.nodes.iter().map(|n| n.id.as_str()))
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        EngineError::usage(format!("no node `{node}` in workflow `{}`{hint}", wf.name))
    })?;
    let entries = plan(wf, store, &RunOptions::default()).await?;
    let e = &entries[idx];
    outln!(
        "node     {} ({} v{})",
        e.id,
        e.kind,
        wf.nodes[idx].plugin.version()
    );
    outln!(
        "key      {}",
        e.key
            .as_deref()
            .unwrap_or("unknown until upstream nodes run")
    );
    outln!("status   {}", e.describe());
    let mark = |changed: bool| {
        if e.last.is_none() {
            "(never ran)"
        } else if changed {
            "CHANGED"
        } else {
            "unchanged"
        }
    };
    if let Some(c) = &e.components {
        let last = e.last.as_ref();
        outln!("components:");
        outln!(
            "  format   {:<66} {}",
            c.format,
            mark(last.is_some_and(|l| l.format != c.format))
        );
        outln!(
            "  kind     {:<66} {}",
            c.kind,
            mark(last.is_some_and(|l| l.kind != c.kind))
        );
        outln!(
            "  version  {:<66} {}",
            c.version,
            mark(last.is_some_and(|l| l.version != c.version))
        );
        outln!(
            "  params   {:<66} {}",
            scorch_engine::cache::canonical_json(&c.params),
            mark(last.is_some_and(|l| l.params != c.params))
        );
        outln!(
            "  seed     {:<66} {}",
            c.seed,
            mark(last.is_some_and(|l| l.seed != c.seed))
        );
        for (name, hash) in &c.inputs {
            let changed = last.is_some_and(|l| l.inputs.get(name) != Some(hash));
            outln!("  input {name:<3}{:<66} {}", hash, mark(changed));
        }
        if let Some(l) = last {
            let changes = c.changes_since(l);
            if !changes.is_empty() {
                outln!("changed since it last ran: {}", changes.join("; "));
            }
        }
    } else {
        for edge in &wf.nodes[idx].inputs {
            outln!(
                "  input {:<10} from `{}.{}` (not computed yet)",
                edge.input,
                wf.nodes[edge.node].id,
                edge.output
            );
        }
    }
    Ok(())
}
