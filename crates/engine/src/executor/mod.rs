//! Where a node's attempt runs. The scheduler ([`crate::run`]) decides *when* a node runs; an
//! [`Executor`] decides *where*: in this process ([`local::Local`]; a kind that needs libtorch
//! runs its plugin in a `scorch-worker` process from there, see [`crate::worker`]) or as a
//! Slurm job ([`slurm::Slurm`]). Every executor stages, runs and commits through the same
//! [`crate::attempt::Attempt`], so a node's key and outputs do not depend on where it ran.
//!
//! Adding an executor: a module here with a type that implements [`Executor`], a variant of
//! [`ExecutorSpec`] for its options in the workflow file, and that variant's arm in
//! [`ExecutorSpec::executor`].

pub mod local;
pub mod slurm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use scorch_api::PluginError;
use scorch_api::reexports::async_trait;
use tokio_util::sync::CancellationToken;

use crate::cache::KeyComponents;
use crate::error::EngineError;
use crate::spec::ExecutorSpec;
use crate::store::{NodeManifest, Store};
use crate::workflow::Node;

/// A node to compute, with what its attempts need.
pub struct NodeJob {
    /// Its place in the workflow.
    pub index: usize,
    /// The node.
    pub node: Node,
    /// Where its attempts run.
    pub executor: Arc<dyn Executor>,
    /// Its cache key's components.
    pub comps: KeyComponents,
    /// The run's store.
    pub store: Store,
    /// Fires when the node is no longer wanted.
    pub cancel: CancellationToken,
    /// Where it reports.
    pub progress: Arc<crate::progress::NodeProgress>,
    /// Replace a published manifest (`--force`).
    pub overwrite: bool,
    /// First retry delay; doubles each retry.
    pub backoff: Duration,
    /// The workflow file's folder.
    pub workflow_dir: PathBuf,
    /// The run.
    pub run_id: String,
    /// The workflow's secrets (redacted from logs and errors).
    pub secrets: crate::interp::Secrets,
}

impl std::fmt::Debug for NodeJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeJob")
            .field("node", &self.node.id)
            .field("executor", &self.executor.name())
            .field("key", &self.comps.key())
            .field("run_id", &self.run_id)
            .finish_non_exhaustive()
    }
}

/// Runs attempts at nodes somewhere.
#[async_trait]
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// Its name in the workflow file (`executor: {kind: NAME}`).
    fn name(&self) -> &'static str;

    /// Whether the node runs on this machine: it counts against `--jobs` and holds its
    /// machine slots (`cpu`, `gpu`, `mem_gb`, `gpu_mem_gb`) in the run. A cluster's jobs run on
    /// the cluster's machines, which the cluster schedules.
    fn runs_here(&self) -> bool;

    /// Checks made before the run starts anything (for a node the run needs).
    fn preflight(&self, _store: &Store) -> Result<(), EngineError> {
        Ok(())
    }

    /// One attempt at `job` (its `number`, from 1): stage the inputs, run the plugin, commit
    /// the outputs, and return the published manifest. Ids of the cluster jobs it submitted
    /// are added to `jobs`.
    async fn attempt(
        &self,
        job: &NodeJob,
        number: u32,
        jobs: &mut Vec<String>,
    ) -> Result<NodeManifest, PluginError>;
}

impl ExecutorSpec {
    /// The executor these options describe: the one registration of every executor.
    pub fn executor(&self) -> Arc<dyn Executor> {
        match self {
            Self::Local => Arc::new(local::Local),
            Self::Slurm(spec) => Arc::new(slurm::Slurm(spec.clone())),
        }
    }

    /// Whether nodes run as cluster jobs (not on this machine).
    pub fn is_cluster(&self) -> bool {
        !self.executor().runs_here()
    }
}
