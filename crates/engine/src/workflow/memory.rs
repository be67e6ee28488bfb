//! Memory plans at load time: each node's model shape followed along the edges
//! ([`ModelSource`]), each training node's plan computed from it ([`MemoryRule`]), and a
//! node refused when its plan exceeds its `gpu_mem_gb` resource or the memory of the device
//! it will run on.

use std::collections::HashMap;
use std::path::Path;

use scorch_api::memory::{PlanError, device_memory, gib};
use scorch_api::{MemoryPlan, ModelSource};
use serde_json::Value;

use super::{Ctx, Node};
use crate::error::ErrorKind;

/// The resource slot that gives a node's GPU memory, in GiB.
pub const GPU_MEM_SLOT: &str = "gpu_mem_gb";

/// Plan every training node of `nodes` (topologically sorted) and check each plan.
pub(super) fn plan_memory(nodes: &mut [Node], dir: &Path, ctx: &mut Ctx<'_>) {
    let mut shapes: Vec<Result<Value, PlanError>> = Vec::with_capacity(nodes.len());
    // Each device's memory, read once (for CUDA it runs `nvidia-smi`).
    let mut memory: HashMap<String, Option<u64>> = HashMap::new();
    for node in nodes.iter_mut() {
        let shape = match &node.signature.model {
            None => Err(PlanError::NoModel {
                node: node.id.clone(),
            }),
            Some(ModelSource::Config(c)) => Ok(c.clone()),
            Some(ModelSource::Folder(path)) => read_config(&dir.join(path)),
            Some(ModelSource::Inputs(names)) => names
                .iter()
                .find_map(|name| node.inputs.iter().find(|e| &e.input == name))
                .map_or_else(|| Err(PlanError::NotConnected), |e| shapes[e.node].clone()),
        };
        if let Some(rule) = &node.signature.memory {
            let plan = shape.clone().and_then(|s| rule.plan(&s));
            if let Ok(plan) = &plan {
                check(node, plan, &mut memory, ctx);
            }
            node.memory = Some(plan);
        }
        shapes.push(shape);
    }
}

fn read_config(folder: &Path) -> Result<Value, PlanError> {
    let path = folder.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| PlanError::NoConfig {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    serde_json::from_str(&text).map_err(|e| PlanError::BadConfig {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Refuse `node` if `plan` exceeds its `gpu_mem_gb` (on CUDA) or this machine's device.
fn check(
    node: &Node,
    plan: &MemoryPlan,
    memory: &mut HashMap<String, Option<u64>>,
    ctx: &mut Ctx<'_>,
) {
    let fits = |limit: u64| plan.peak <= limit;
    let advice = |what: String| {
        let mut hint = what;
        if plan.other_checkpointing < plan.peak {
            hint.push_str(&format!(
                "; `gradient_checkpointing: true` plans {} GiB",
                gib(plan.other_checkpointing)
            ));
        }
        if let Some(s) = &plan.smaller {
            hint.push_str(&format!("; {s}"));
        }
        Some(hint)
    };
    if plan.device == "cuda"
        && let Some(&gb) = node.resources.get(GPU_MEM_SLOT)
        && !fits(u64::from(gb) << 30)
    {
        ctx.push(
            ErrorKind::Resources,
            &format!("nodes.{}.resources.{GPU_MEM_SLOT}", node.id),
            format!(
                "node `{}` plans {} but has `{GPU_MEM_SLOT}: {gb}`",
                node.id,
                plan.describe()
            ),
            advice(format!("give it more than {} GiB", gib(plan.peak))),
        );
        return;
    }
    // A cluster job's device is not this machine's.
    if node.executor.is_cluster() {
        return;
    }
    let device = memory
        .entry(plan.device.clone())
        .or_insert_with(|| device_memory(&plan.device));
    if let Some(limit) = *device
        && !fits(limit)
    {
        ctx.push(
            ErrorKind::Resources,
            &format!("nodes.{}.params", node.id),
            format!(
                "node `{}` plans {}, more than this machine's {} ({} GiB)",
                node.id,
                plan.describe(),
                plan.device,
                gib(limit)
            ),
            advice("lower its memory".into()),
        );
    }
}
