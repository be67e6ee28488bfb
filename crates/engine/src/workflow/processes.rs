//! Nodes that launch processes beside themselves (a distributed trainer): one process per core
//! or GPU of its machine, over one machine or a cluster allocation of several. The slots are
//! taken from the node's `resources` where it gives them (and refused when they are fewer than
//! the processes), else asked for: locally they are held from the run's, and a cluster job
//! asks its allocation for them.

use std::collections::BTreeMap;

use scorch_api::Processes;

use super::Ctx;
use crate::error::ErrorKind;

/// The slot that says how many machines a cluster job spans.
pub const NODES_SLOT: &str = "nodes";

/// Fit `processes` of node `id` into `resources` (from the node's own `asked`); `cluster`:
/// it runs as a cluster job.
pub(super) fn fit(
    id: &str,
    base_path: &str,
    processes: Processes,
    asked: &BTreeMap<String, u32>,
    cluster: bool,
    resources: &mut BTreeMap<String, u32>,
    ctx: &mut Ctx<'_>,
) {
    if processes.nodes > 1 && !cluster {
        ctx.push(
            ErrorKind::Resources,
            &format!("{base_path}.params"),
            format!(
                "node `{id}` launches processes on {} machines; more than one is a cluster allocation",
                processes.nodes
            ),
            Some("run it with `executor: slurm`, or on one machine".into()),
        );
        return;
    }
    let (slot, unit) = if processes.gpus {
        ("gpu", "GPU")
    } else {
        ("cpu", "core")
    };
    match asked.get(slot) {
        Some(&given) if given < processes.per_node => ctx.push(
            ErrorKind::Resources,
            &format!("{base_path}.resources.{slot}"),
            format!(
                "node `{id}` launches {} processes on each machine, one per {unit}, but `resources.{slot}` gives it {given}",
                processes.per_node
            ),
            Some(format!(
                "raise `resources.{slot}` to {}, or lower the processes per machine",
                processes.per_node
            )),
        ),
        Some(_) => {}
        None => {
            let held = resources.entry(slot.into()).or_insert(0);
            *held = (*held).max(processes.per_node);
        }
    }
    if cluster {
        resources.insert(NODES_SLOT.into(), processes.nodes);
    }
}
