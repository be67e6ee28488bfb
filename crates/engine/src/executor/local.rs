//! The executor of this machine: the attempt runs in the `scorch run` process (a kind that
//! needs libtorch runs its plugin in a `scorch-worker` process it starts; see
//! [`crate::worker`]), staging in the store's work folder.

use scorch_api::PluginError;
use scorch_api::reexports::async_trait;

use super::{Executor, NodeJob};
use crate::attempt::Attempt;
use crate::store::{NodeFile, NodeManifest};

/// Runs nodes on this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

#[async_trait]
impl Executor for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn runs_here(&self) -> bool {
        true
    }

    async fn attempt(
        &self,
        job: &NodeJob,
        _number: u32,
        _jobs: &mut Vec<String>,
    ) -> Result<NodeManifest, PluginError> {
        let staging = crate::layout::new_staging(job.store.work_dir());
        let log = job
            .store
            .live_node_file(&job.run_id, &job.node.id, NodeFile::Log);
        let attempt = Attempt {
            store: &job.store,
            node_id: &job.node.id,
            plugin: job.node.plugin.clone(),
            params: &job.node.params,
            signature: &job.node.signature,
            seed: job.node.seed,
            comps: &job.comps,
            overwrite: job.overwrite,
            workflow_dir: &job.workflow_dir,
            cancel: &job.cancel,
            progress: job.progress.clone(),
            threads: job.node.resources.get("cpu").map_or(0, |n| *n as usize),
        };
        let result = attempt.run(&staging, &log).await;
        if let Err(e) = tokio::fs::remove_dir_all(&staging).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %staging.display(), error = %e, "cannot remove a staging folder; `scorch gc` will");
        }
        result
    }
}
