//! The workflow file, as typed Rust. `schemas/workflow.schema.json` is generated from these
//! types (`scorch schema`), and a test fails when the committed file is out of date.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A workflow: a named DAG of nodes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "scorch workflow")]
pub struct WorkflowSpec {
    /// The workflow's name; run records and `explain` history are kept per name.
    pub name: String,
    /// What the workflow is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Variables, used as `${vars.NAME}`; `--set vars.NAME=VALUE` overrides them.
    /// `${env.NAME}` reads the environment (for secrets: never written to records).
    #[serde(default)]
    pub vars: IndexMap<String, Value>,
    /// Where artifacts live: `file://DIR` (relative to the current directory), `s3://BUCKET/PREFIX`
    /// or `memory://`. Default `file://.scorch`; `--store` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// The default seed of every node.
    #[serde(default)]
    #[schemars(schema_with = "templated_uint")]
    pub seed: u64,
    /// Resource slot limits for a run (`cpu: 2`, `gpu: 1`, `teacher: 8`); `--slots` overrides.
    /// `cpu` defaults to the number of cores.
    #[serde(default)]
    pub resources: BTreeMap<String, u32>,
    /// Named sets of variable values (`smoke: {tasks: 40}`), chosen with `--set profile=NAME`;
    /// `--set vars.x=...` still wins over a profile.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub profiles: IndexMap<String, serde_json::Map<String, Value>>,
    /// Where runs report their metrics, params and logs as they go (MLflow, TensorBoard);
    /// `scorch run --tracker` adds to these.
    #[serde(default, skip_serializing_if = "TrackersSpec::is_empty")]
    pub trackers: TrackersSpec,
    /// Where nodes run: `local` (the default: tasks of this process) or `slurm` (each node a
    /// cluster job). A node's own `executor:` replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorSpec>,
    /// The nodes, by id.
    pub nodes: IndexMap<String, NodeSpec>,
}

/// The trackers a run reports to. They watch the run; they never change a cache key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackersSpec {
    /// TensorBoard event files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorboard: Option<TensorBoardSpec>,
    /// An MLflow tracking server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowSpec>,
}

impl TrackersSpec {
    /// Whether no tracker is set.
    pub fn is_empty(&self) -> bool {
        self.tensorboard.is_none() && self.mlflow.is_none()
    }
}

/// TensorBoard: one event file per node that reports metrics, in `DIR/<run id>/<node id>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorBoardSpec {
    /// The log folder (`tensorboard --logdir DIR`), relative to the current directory.
    pub dir: String,
}

/// MLflow: one MLflow run per scorch run, and a child run per node that computes, with its
/// params, its metrics as they come, its summary metrics and its log as an artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MlflowSpec {
    /// The tracking server (`http://127.0.0.1:5000`).
    pub uri: String,
    /// The experiment (created if missing); default the workflow's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
}

/// Where a node runs. Never part of a cache key: a node computes the same bytes wherever it
/// runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ExecutorSpec {
    /// A task of the `scorch run` process (a worker process for kinds that need libtorch).
    Local,
    /// A Slurm job per node attempt, submitted with `sbatch` once the node's inputs are ready.
    Slurm(SlurmSpec),
}

/// Options of the Slurm executor. A node's `resources` become the job's requests: `cpu` →
/// `--cpus-per-task`, `gpu` → `--gres=gpu:N`, `mem_gb` → `--mem=NG`; other slots (`teacher`)
/// stay limits of the run.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmSpec {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// `--time`, the job's time limit (`30`, `2:00:00`, `1-00:00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// More `sbatch` flags, as given (`[--constraint=a100, --exclusive]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_args: Vec<String>,
    /// The `scorch` binary as the compute nodes see it; default this one's path (a shared
    /// filesystem).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// The store is a `file://` folder that every compute node sees at the same path (a
    /// shared filesystem). Without it a `file://` store is refused: jobs on other machines
    /// would write where the run never looks.
    #[serde(default)]
    pub shared_store: bool,
}

/// One node: a configured plugin.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The plugin kind (`exec`, `rollout`, `sft`, ...).
    pub kind: String,
    /// What the node is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The plugin's typed parameters.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
    /// Named inputs, each taken from another node's named output.
    #[serde(default)]
    pub inputs: IndexMap<String, InputSpec>,
    /// Resource slots the node holds while it runs; default `{cpu: 1}`.
    #[serde(default)]
    pub resources: BTreeMap<String, u32>,
    /// How many times a failed run is retried, with exponential backoff.
    #[serde(default)]
    #[schemars(schema_with = "templated_uint")]
    pub retries: u32,
    /// The node's seed (default: the workflow's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "templated_uint")]
    pub seed: Option<u64>,
    /// Expand the node into one node per combination of values, named `id[key=value,...]`;
    /// use the values as `${matrix.KEY}`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub matrix: IndexMap<String, Vec<Value>>,
    /// Where this node runs, replacing the workflow's `executor:` (`{kind: local}` keeps a
    /// light node out of the cluster queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorSpec>,
}

/// Where an input comes from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// `NODE.OUTPUT`, e.g. `warm_sft.checkpoint` or `rl[lr=1e-6].checkpoint`. A reference to a
    /// matrix node from a node with the same matrix keys picks the instance with the same values.
    pub from: String,
}

fn templated_uint(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": "^\\$\\{[a-z]+\\.[A-Za-z0-9_-]+\\}$"}
        ]
    })
}

/// The JSON Schema of the workflow file's structure, params left open;
/// [`crate::schema::workflow_schema`] adds each kind's params (what is committed in
/// `schemas/workflow.schema.json`).
pub fn workflow_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(WorkflowSpec)).unwrap_or_default()
}
