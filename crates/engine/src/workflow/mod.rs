//! Loading a workflow: YAML → variables and matrix → typed spec → plugins and params →
//! references and schemas → a DAG. Every problem found becomes a [`Diagnostic`]; the
//! stages are in `resolve.rs`, one function each.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scorch_api::{DynPlugin, Registry, Signature};
use serde_json::Value;

use crate::dag;
use crate::error::{Diagnostic, ErrorKind, WorkflowError};
use crate::interp::Secrets;
use crate::yaml;

mod ctx;
mod matrix;
mod memory;
mod processes;
mod resolve;

pub use memory::GPU_MEM_SLOT;

use ctx::Ctx;

/// Options that change how a file loads.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--set PATH=VALUE` overrides, in order (VALUE is a YAML scalar or flow value).
    pub sets: Vec<String>,
    /// `--slots NAME=N` resource limits.
    pub slots: BTreeMap<String, u32>,
    /// What `auto` params settle to for nodes that run on this machine; `None`: this
    /// machine, probed ([`Hardware::probe`](scorch_api::Hardware::probe)). A node with a
    /// cluster executor settles for what its resources ask (a `gpu` slot: CUDA).
    pub hardware: Option<scorch_api::Hardware>,
}

/// An input edge.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The consumer's input name.
    pub input: String,
    /// The producer's index in [`Workflow::nodes`].
    pub node: usize,
    /// The producer's output name.
    pub output: String,
}

/// A node ready to plan and run.
#[derive(Clone)]
pub struct Node {
    /// Id (`rl[lr=1e-6]` for a matrix instance).
    pub id: String,
    /// The id as written in the file.
    pub base: String,
    /// Matrix bindings of this instance.
    pub matrix: Vec<(String, Value)>,
    /// The plugin.
    pub plugin: Arc<dyn DynPlugin>,
    /// Params as the plugin gets them (secrets included).
    pub params: Value,
    /// Params as they enter the cache key and records (secrets as `${env.NAME}`).
    pub key_params: Value,
    /// Inputs and outputs.
    pub signature: Signature,
    /// Inputs, by input name order.
    pub inputs: Vec<Edge>,
    /// Slots held while running.
    pub resources: BTreeMap<String, u32>,
    /// Retries after a failure.
    pub retries: u32,
    /// The seed.
    pub seed: u64,
    /// Where it runs.
    pub executor: crate::spec::ExecutorSpec,
    /// Its memory plan, if it trains (an `Err` says why there is none).
    pub memory: Option<Result<scorch_api::MemoryPlan, scorch_api::memory::PlanError>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("kind", &self.plugin.kind())
            .finish_non_exhaustive()
    }
}

/// A checked workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Its name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The file's directory.
    pub dir: PathBuf,
    /// The `store:` URL, if the file sets one.
    pub store: Option<String>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Resource limits of a run.
    pub limits: BTreeMap<String, u32>,
    /// Where runs report as they go.
    pub trackers: crate::spec::TrackersSpec,
    /// The `--set profile=NAME` applied, if any.
    pub profile: Option<String>,
    /// The variables after the profile and `--set`s, as written: `${env.…}` references stay
    /// unresolved, so no secret is in them.
    pub vars: serde_json::Map<String, Value>,
    /// The environment values the workflow read: what records, errors and output redact.
    pub secrets: Secrets,
    /// What may be wrong but does not stop it from loading (a local file that is missing).
    pub warnings: Vec<Diagnostic>,
    /// The file's text, to show where the warnings are.
    pub source_text: Arc<str>,
}

impl Workflow {
    /// The index of node `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }
    /// Dependencies of each node, by index.
    pub fn deps(&self) -> Vec<Vec<usize>> {
        deps_of(&self.nodes)
    }
    /// The graph as data: node ids and kinds, and each node's inputs.
    pub fn graph(&self) -> dag::Graph {
        dag::Graph {
            nodes: self
                .nodes
                .iter()
                .map(|n| (n.id.clone(), n.plugin.kind().to_owned()))
                .collect(),
            inputs: self
                .nodes
                .iter()
                .map(|n| {
                    n.inputs
                        .iter()
                        .map(|e| (e.node, e.output.clone(), e.input.clone()))
                        .collect()
                })
                .collect(),
        }
    }
}

/// Each node's producers, by index into `nodes`: what scheduling and sorting walk.
fn deps_of(nodes: &[Node]) -> Vec<Vec<usize>> {
    nodes
        .iter()
        .map(|n| n.inputs.iter().map(|e| e.node).collect())
        .collect()
}

/// Read, check and resolve the workflow at `path`.
pub fn load(
    path: &Path,
    registry: &Registry,
    options: &LoadOptions,
) -> Result<Workflow, WorkflowError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| WorkflowError {
        file: file.clone(),
        source_text: Arc::from(""),
        diagnostics: vec![Diagnostic::new(
            ErrorKind::Io,
            format!("cannot read the workflow file: {e}"),
        )],
    })?;
    let source_text: Arc<str> = Arc::from(text.as_str());
    let fail = |diagnostics: Vec<Diagnostic>| WorkflowError {
        file: file.clone(),
        source_text: source_text.clone(),
        diagnostics,
    };
    let (doc, index) = yaml::parse(&text).map_err(|e| {
        let d = if e.limit {
            Diagnostic::new(ErrorKind::Syntax, e.message).hint(Some(
                "split the experiment into several workflows that share a store (cached nodes are reused across them)".into(),
            ))
        } else {
            Diagnostic::new(ErrorKind::Syntax, format!("invalid YAML: {}", e.message))
                .spanned(e.span)
                .hint(Some(
                    "check the indentation, brackets and quotes around this place".into(),
                ))
        };
        fail(vec![d])
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let mut ctx = Ctx {
        index: &index,
        text: &text,
        sets: Vec::new(),
        diags: Vec::new(),
        warnings: Vec::new(),
        bases: HashMap::new(),
    };
    match resolve::resolve(doc, &text, registry, options, &mut ctx, path, &dir) {
        Some(w) if ctx.diags.is_empty() => Ok(Workflow {
            warnings: std::mem::take(&mut ctx.warnings),
            ..w
        }),
        _ => Err(fail(std::mem::take(&mut ctx.diags))),
    }
}
