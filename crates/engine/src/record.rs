//! Run records: what happened in one `scorch run`, as JSON in the store's `runs/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The outcome of a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still running, or the process died (see `pid`).
    Running,
    /// Every selected node is cached or ran.
    Succeeded,
    /// A node failed.
    Failed,
    /// Ctrl-C.
    Cancelled,
}

/// What happened to one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Computing now (a live run's record).
    Running,
    /// A published result with the same key was reused.
    Cached,
    /// The plugin ran and its result was published.
    Ran,
    /// The plugin failed (after its retries).
    Failed,
    /// Not run: an upstream node failed, or it was not selected.
    Skipped,
    /// Stopped by Ctrl-C.
    Cancelled,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Cached => "cached",
            Self::Ran => "ran",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        })
    }
}

/// One output of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Artifact hash.
    pub artifact: String,
    /// `table` or `blobs`.
    pub kind: String,
    /// Where its descriptor lives.
    pub uri: String,
    /// Rows, for tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Bytes.
    pub bytes: u64,
}

/// One node in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node id.
    pub id: String,
    /// Plugin kind.
    pub kind: String,
    /// The nodes it takes inputs from (the run's DAG).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
    /// Cache key, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What happened.
    pub outcome: Outcome,
    /// Why (for skipped, failed, or a rerun).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Plugin runs (1 + retries used); 0 when cached.
    pub attempts: u32,
    /// Wall time of the node, milliseconds.
    pub duration_ms: u64,
    /// Metrics reported by the plugin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<scorch_api::Metric>,
    /// Outputs by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, OutputRecord>,
    /// The error, for failed nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The cluster jobs of its attempts (Slurm job ids), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
}

/// One `scorch run`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id (`20261127T073718Z-1a2b3c`).
    pub id: String,
    /// Workflow name.
    pub workflow: String,
    /// Workflow file.
    pub file: String,
    /// Store URL.
    pub store: String,
    /// Overall status.
    pub status: RunStatus,
    /// Start time, RFC 3339.
    pub started: String,
    /// End time, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// The process that ran it.
    pub pid: u32,
    /// The `--set profile=NAME` applied, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The workflow's variables after the profile and `--set`s, as written (`${env.…}`
    /// references unresolved).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub vars: serde_json::Map<String, serde_json::Value>,
    /// Per node, in topological order.
    pub nodes: Vec<NodeRecord>,
}

impl RunRecord {
    /// Count of nodes with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.nodes.iter().filter(|n| n.outcome == outcome).count()
    }
}

/// Now, RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// A new run id: UTC time and a random suffix.
pub fn new_run_id() -> String {
    let t: String = now_rfc3339()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let r = uuid::Uuid::new_v4().simple().to_string();
    format!("{t}-{}", &r[..6])
}
