//! A node attempt as a cluster job. The engine writes a [`ClusterJob`] into the store (the
//! one place a compute node and the run both see) and submits `scorch node-job --store URL
//! RUN NODE`; the job reads it, runs the same [`Attempt`] as a local run (inputs from the
//! store, outputs committed to it, the manifest published under the cache key) and reports
//! on stdout as a worker does. The engine then takes the manifest from the store.
//!
//! The job file holds the params as the cache key has them: secrets stay `${env.NAME}` and
//! are read from the job's own environment (Slurm passes the submitting one on), so no
//! secret is written to the store.

use std::path::PathBuf;
use std::sync::Arc;

use scorch_api::{Metric, PluginError, Registry};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::attempt::Attempt;
use crate::cache::KeyComponents;
use crate::interp::Secrets;
use crate::store::{NodeFile, Store};
use crate::worker::{StdoutProgress, emit};

/// One node attempt for a cluster job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterJob {
    /// The run.
    pub run_id: String,
    /// The node's id.
    pub node_id: String,
    /// The attempt, from 1.
    pub attempt: u32,
    /// The cache key's components: kind, version, params (secrets as `${env.NAME}`), seed,
    /// input artifacts.
    pub components: KeyComponents,
    /// The environment variables the params read.
    pub env: Vec<String>,
    /// Replace a published manifest (`--force`).
    pub overwrite: bool,
    /// The workflow file's folder.
    pub workflow_dir: PathBuf,
}

impl ClusterJob {
    /// Put the job where [`serve`] reads it.
    pub async fn put(&self, store: &Store) -> Result<(), crate::error::EngineError> {
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        store
            .put_node_file(&self.run_id, &self.node_id, NodeFile::Job, bytes)
            .await
    }
}

/// `${env.NAME}` in every string of `v` replaced by the variable's value (from `lookup`,
/// the environment); the values read are returned as secrets.
fn resolve_env(
    v: &Value,
    names: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(Value, Secrets), PluginError> {
    let mut secrets = Secrets::default();
    for name in names {
        let value = lookup(name).ok_or_else(|| {
            PluginError::failed(format!(
                "the job's environment has no `{name}`, which the node's params read; \
                 sbatch passes the submitting environment on unless `--export` says otherwise"
            ))
        })?;
        secrets.values.push((name.clone(), value));
    }
    fn walk(v: &Value, secrets: &Secrets) -> Value {
        match v {
            Value::String(s) => {
                let mut s = s.clone();
                for (name, value) in &secrets.values {
                    s = s.replace(&format!("${{env.{name}}}"), value);
                }
                Value::String(s)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, secrets)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), walk(x, secrets)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    Ok((walk(v, &secrets), secrets))
}

/// The job's side: run node `node_id` of run `run_id` from its job file in the store at
/// `store_url`, reporting [`crate::worker::Event`]s on stdout. Returns whether it
/// succeeded. `cancel` fires when the job is told to stop (SIGTERM from `scancel`).
pub async fn serve(
    registry: &Registry,
    store_url: &str,
    run_id: &str,
    node_id: &str,
    cancel: CancellationToken,
) -> bool {
    let result = attempt(registry, store_url, run_id, node_id, cancel).await;
    match &result {
        Ok(metrics) => emit(&crate::worker::Event::Done(metrics.clone())),
        Err(e) => emit(&crate::worker::Event::Failed {
            kind: e.kind,
            message: e.message.clone(),
        }),
    }
    result.is_ok()
}

async fn attempt(
    registry: &Registry,
    store_url: &str,
    run_id: &str,
    node_id: &str,
    cancel: CancellationToken,
) -> Result<Vec<Metric>, PluginError> {
    let cwd = std::env::current_dir().map_err(|e| PluginError::io("the current folder", e))?;
    let store = Store::open(store_url, &cwd)?;
    let text = store
        .node_file(run_id, node_id, NodeFile::Job)
        .await?
        .ok_or_else(|| {
            PluginError::failed(format!(
                "no job for node `{node_id}` of run {run_id} in {store_url}"
            ))
        })?;
    let job: ClusterJob = serde_json::from_str(&text)
        .map_err(|e| PluginError::failed(format!("the job file does not parse: {e}")))?;
    let comps = &job.components;
    let plugin = registry.get(&comps.kind).ok_or_else(|| {
        PluginError::failed(format!("this scorch has no node kind `{}`", comps.kind))
    })?;
    if plugin.version() != comps.version {
        return Err(PluginError::failed(format!(
            "this scorch has `{}` v{}, the run wants v{}: the compute nodes run another build",
            comps.kind,
            plugin.version(),
            comps.version
        )));
    }
    let (params, secrets) = resolve_env(&comps.params, &job.env, |n| std::env::var(n).ok())?;
    let checked = plugin
        .check(&params)
        .map_err(|e| PluginError::failed(format!("params no longer type-check: {e}")))?;
    let log = store.live_node_file(run_id, node_id, NodeFile::Log);
    if let Some(dir) = log.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| PluginError::io(format!("creating {}", dir.display()), e))?;
    }
    let host = std::env::var("SLURMD_NODENAME").unwrap_or_default();
    let slurm_job = std::env::var("SLURM_JOB_ID").unwrap_or_default();
    crate::worker::append(
        &log,
        &format!(
            "scorch {} node-job: node `{node_id}` ({}), attempt {}, slurm job {slurm_job} on {host}, pid {}",
            env!("CARGO_PKG_VERSION"),
            comps.kind,
            job.attempt,
            std::process::id()
        ),
    )
    .await;
    let staging = crate::layout::new_staging(store.work_dir());
    let attempt = Attempt {
        store: &store,
        node_id,
        plugin: plugin.clone(),
        params: &checked.params,
        signature: &checked.signature,
        seed: comps.seed,
        comps,
        overwrite: job.overwrite,
        workflow_dir: &job.workflow_dir,
        cancel: &cancel,
        progress: Arc::new(StdoutProgress),
        // A cluster job has its machine's cpus (what it asked `sbatch` for).
        threads: 0,
    };
    let result = attempt.run(&staging, &log).await;
    let _ = tokio::fs::remove_dir_all(&staging).await;
    // The log, kept with the run from where the node ran (the run's machine may not see
    // this one's files).
    if let Ok(bytes) = tokio::fs::read(&log).await {
        let text = secrets.redact_str(&String::from_utf8_lossy(&bytes));
        if store
            .put_node_file(run_id, node_id, NodeFile::Log, text.into_bytes())
            .await
            .is_ok()
        {
            let _ = tokio::fs::remove_file(&log).await;
        }
    }
    let manifest = result.map_err(|e| PluginError::new(e.kind, secrets.redact_str(&e.message)))?;
    Ok(manifest.metrics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_are_read_from_the_jobs_environment() {
        let env = |n: &str| (n == "SCORCH_CLUSTER_TEST_KEY").then(|| "s3cr3t".to_owned());
        let params = serde_json::json!({"a": "${env.SCORCH_CLUSTER_TEST_KEY}", "b": ["x-${env.SCORCH_CLUSTER_TEST_KEY}"], "n": 3});
        let (v, secrets) = resolve_env(&params, &["SCORCH_CLUSTER_TEST_KEY".into()], env).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": "s3cr3t", "b": ["x-s3cr3t"], "n": 3})
        );
        assert_eq!(
            secrets.redact_str("key s3cr3t"),
            "key ${env.SCORCH_CLUSTER_TEST_KEY}"
        );
        let err = resolve_env(&params, &["SCORCH_CLUSTER_TEST_MISSING".into()], env).unwrap_err();
        assert!(
            err.message.contains("`SCORCH_CLUSTER_TEST_MISSING`"),
            "{}",
            err.message
        );
    }
}
