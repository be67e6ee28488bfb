//! What a run would do, and why: per node "cached" or "runs: <reason>".

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cache::KeyComponents;
use crate::error::EngineError;
use crate::run::{RunOptions, components, targets};
use crate::store::Store;
use crate::workflow::Workflow;

/// The planned fate of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStatus {
    /// A published result matches its key.
    Cached,
    /// It will run.
    Runs,
    /// It waits for an upstream node that runs; it reruns unless that output is unchanged.
    Pending,
    /// Not selected, and no cached result: the run would fail here.
    Missing,
    /// Not selected and not needed.
    NotSelected,
}

/// One node of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    /// Node id.
    pub id: String,
    /// Plugin kind.
    pub kind: String,
    /// Cache key, when every input is known.
    pub key: Option<String>,
    /// Status.
    pub status: PlanStatus,
    /// Why it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The key components, when known.
    #[serde(skip)]
    pub components: Option<KeyComponents>,
    /// The components it last ran or hit the cache with.
    #[serde(skip)]
    pub last: Option<KeyComponents>,
}

impl PlanEntry {
    /// `cached`, `runs: <reason>`, ...
    pub fn describe(&self) -> String {
        let reason = self.reason.as_deref().unwrap_or("");
        match self.status {
            PlanStatus::Cached => "cached".into(),
            PlanStatus::Runs => format!("runs: {reason}"),
            PlanStatus::Pending => format!("runs: {reason}"),
            PlanStatus::Missing => format!("missing: {reason}"),
            PlanStatus::NotSelected => "not selected".into(),
        }
    }
}

/// Plan `wf` against `store`.
pub async fn plan(
    wf: &Workflow,
    store: &Store,
    opts: &RunOptions,
) -> Result<Vec<PlanEntry>, EngineError> {
    let (target, forced) = targets(wf, opts)?;
    let mut outputs: Vec<Option<BTreeMap<String, String>>> = vec![None; wf.nodes.len()];
    let mut entries: Vec<PlanEntry> = Vec::with_capacity(wf.nodes.len());
    for (i, node) in wf.nodes.iter().enumerate() {
        let last = store.last(&wf.name, &node.id).await?;
        let comps = components(node, &outputs);
        let mut entry = PlanEntry {
            id: node.id.clone(),
            kind: node.plugin.kind().to_owned(),
            key: comps.as_ref().map(KeyComponents::key),
            status: PlanStatus::Runs,
            reason: None,
            components: comps.clone(),
            last: last.clone(),
        };
        match &comps {
            None => {
                let up = node
                    .inputs
                    .iter()
                    .find(|e| outputs[e.node].is_none())
                    .map(|e| wf.nodes[e.node].id.clone())
                    .unwrap_or_default();
                let upstream_missing = node
                    .inputs
                    .iter()
                    .any(|e| entries[e.node].status == PlanStatus::Missing);
                if upstream_missing {
                    entry.status = PlanStatus::Missing;
                    entry.reason = Some(format!("upstream `{up}` has no result"));
                } else if target[i] {
                    entry.status = PlanStatus::Pending;
                    entry.reason = Some(format!(
                        "upstream `{up}` runs first (kept cached if its output is unchanged)"
                    ));
                } else {
                    entry.status = PlanStatus::Missing;
                    entry.reason = Some(format!("not selected, and upstream `{up}` runs"));
                }
            }
            Some(c) => {
                let key = c.key();
                let cached = store.manifest(&key).await?;
                if let (Some(m), false) = (&cached, forced[i]) {
                    entry.status = PlanStatus::Cached;
                    outputs[i] = Some(m.outputs.clone());
                } else if forced[i] {
                    entry.reason = Some("forced with --force".into());
                } else if !target[i] {
                    entry.status = PlanStatus::Missing;
                    entry.reason = Some("not selected and has no cached result".into());
                } else {
                    entry.reason = Some(match &last {
                        None => "never ran".into(),
                        Some(old) if old == c => {
                            "its cached result is gone (removed by gc?)".into()
                        }
                        Some(old) => c.changes_since(old).join("; "),
                    });
                }
            }
        }
        entries.push(entry);
    }
    Ok(entries)
}
