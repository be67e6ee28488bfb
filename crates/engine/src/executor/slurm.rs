//! The Slurm executor: each attempt is a batch job (see [`crate::slurm`] for the submission
//! and [`crate::cluster`] for what the job runs); the job commits the outputs, and the
//! manifest comes from the store.

use scorch_api::PluginError;
use scorch_api::reexports::async_trait;

use super::{Executor, NodeJob};
use crate::cluster::ClusterJob;
use crate::error::EngineError;
use crate::spec::SlurmSpec;
use crate::store::{NodeManifest, Store};

/// Runs nodes as Slurm jobs with these options.
#[derive(Debug, Clone)]
pub struct Slurm(pub SlurmSpec);

#[async_trait]
impl Executor for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn runs_here(&self) -> bool {
        false
    }

    /// A job on another machine must reach the store.
    fn preflight(&self, store: &Store) -> Result<(), EngineError> {
        crate::slurm::check_store(&self.0, store)
    }

    async fn attempt(
        &self,
        job: &NodeJob,
        number: u32,
        jobs: &mut Vec<String>,
    ) -> Result<NodeManifest, PluginError> {
        let params = job.comps.params.to_string();
        // The secrets its params name reach the job by name; their values stay in this
        // process's environment, which `sbatch` exports.
        let env = job
            .secrets
            .values
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| params.contains(&format!("${{env.{name}}}")))
            .collect();
        let workflow_dir = std::path::absolute(&job.workflow_dir)
            .map_err(|e| PluginError::io("the workflow's folder", e))?;
        let cluster_job = ClusterJob {
            run_id: job.run_id.clone(),
            node_id: job.node.id.clone(),
            attempt: number,
            components: job.comps.clone(),
            env,
            overwrite: job.overwrite,
            workflow_dir,
        };
        let submission = crate::slurm::Submission {
            spec: &self.0,
            store: &job.store,
            job: &cluster_job,
            resources: &job.node.resources,
            progress: job.progress.as_ref(),
            cancel: &job.cancel,
        };
        let (id, result) = submission.run().await;
        let id = id.inspect(|id| jobs.push(id.clone()));
        result?;
        job.store.manifest(&job.comps.key()).await?.ok_or_else(|| {
            PluginError::failed(format!(
                "Slurm job {} completed but published no result for the node",
                id.unwrap_or_default()
            ))
        })
    }
}
