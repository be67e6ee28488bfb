//! One attempt at a node, wherever it runs: stage the inputs, run the plugin, commit the
//! outputs. The scheduler runs it in process; a cluster job runs the same code on a compute
//! node (see [`crate::cluster`]), so caching, early cutoff and crash safety do not depend on
//! where a node ran.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use scorch_api::parquet_io::{StagedKind, collect_outputs};
use scorch_api::{
    DynPlugin, InputArtifact, NodeContext, NodeContextParts, PluginError, PluginErrorKind,
    PortType, ProgressSink, Signature, TableSpec, check_schema,
};
use tokio_util::sync::CancellationToken;

use crate::cache::KeyComponents;
use crate::record::now_rfc3339;
use crate::store::{Artifact, ArtifactFile, ArtifactKind, NodeManifest, Store};

/// The store prefix of a node's resumable state: by its cache key, so that state is resumed
/// exactly by an attempt that computes the same thing.
pub fn resume_prefix(comps: &KeyComponents) -> String {
    crate::layout::states(&comps.key())
}

/// What one attempt at a node needs.
pub struct Attempt<'a> {
    /// Where inputs come from and outputs go.
    pub store: &'a Store,
    /// The node's id.
    pub node_id: &'a str,
    /// Its plugin.
    pub plugin: Arc<dyn DynPlugin>,
    /// Params as the plugin gets them (checked, secrets resolved).
    pub params: &'a serde_json::Value,
    /// Its inputs and outputs.
    pub signature: &'a Signature,
    /// Its seed.
    pub seed: u64,
    /// Its cache key's components; `inputs` names the input artifacts.
    pub comps: &'a KeyComponents,
    /// Replace a published manifest (`--force`).
    pub overwrite: bool,
    /// The workflow file's folder.
    pub workflow_dir: &'a Path,
    /// Fires when the node is no longer wanted.
    pub cancel: &'a CancellationToken,
    /// Where the plugin reports.
    pub progress: Arc<dyn ProgressSink>,
    /// The cpu slots the node holds (0: not counted).
    pub threads: usize,
}

impl std::fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("node_id", &self.node_id)
            .field("kind", &self.plugin.kind())
            .finish_non_exhaustive()
    }
}

impl Attempt<'_> {
    /// Stage the inputs in `staging`, run the plugin with its log at `log`, commit the
    /// outputs (objects, artifacts, then the manifest under the cache key).
    pub async fn run(&self, staging: &Path, log: &Path) -> Result<NodeManifest, PluginError> {
        let started = Instant::now();
        if let Some(dir) = log.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| PluginError::io(format!("creating {}", dir.display()), e))?;
        }
        let out_dir = staging.join("out");
        let scratch = staging.join("scratch");
        for d in [&out_dir, &scratch] {
            tokio::fs::create_dir_all(d)
                .await
                .map_err(|e| PluginError::io(format!("creating {}", d.display()), e))?;
        }
        let mut inputs = BTreeMap::new();
        for (input, hash) in &self.comps.inputs {
            let artifact = self.store.artifact(hash).await?;
            let declared = self.signature.input_type(input).cloned();
            let artifact_input = match artifact.kind {
                ArtifactKind::Table => {
                    let schema = artifact.schema.clone().ok_or_else(|| {
                        PluginError::new(PluginErrorKind::Input, "table artifact without a schema")
                    })?;
                    if let Some(PortType::Table(TableSpec::Columns(want))) = &declared {
                        check_schema(want, &schema).map_err(|why| {
                            PluginError::new(
                                PluginErrorKind::Input,
                                format!("input `{input}` does not fit: {why}"),
                            )
                        })?;
                    }
                    InputArtifact::Table {
                        files: artifact
                            .files
                            .iter()
                            .map(|f| (crate::layout::object(&f.object), f.size))
                            .collect(),
                        schema: Arc::new(schema),
                        rows: artifact.rows.unwrap_or(0),
                    }
                }
                ArtifactKind::Blobs => {
                    let dir = staging.join("in").join(input);
                    tokio::fs::create_dir_all(&dir)
                        .await
                        .map_err(|e| PluginError::io("creating an input folder", e))?;
                    self.store.materialize(&artifact, &dir).await?;
                    InputArtifact::Blobs { dir }
                }
            };
            inputs.insert(input.clone(), artifact_input);
        }
        let ctx = Arc::new(NodeContext::new(NodeContextParts {
            node_id: self.node_id.to_owned(),
            seed: self.seed,
            store: self.store.objects(),
            store_url: self.store.absolute_url(),
            inputs,
            outputs: self.signature.outputs.clone(),
            staging_dir: out_dir.clone(),
            scratch_dir: scratch,
            log_file: log.to_path_buf(),
            workflow_dir: self.workflow_dir.to_path_buf(),
            cancel: self.cancel.clone(),
            progress: self.progress.clone(),
            resume: Some(resume_prefix(self.comps)),
            threads: self.threads,
        }));
        // The plugin runs in its own task so that a panic becomes a node failure.
        let (plugin, params, task_ctx) = (self.plugin.clone(), self.params.clone(), ctx.clone());
        let handle = tokio::spawn(async move { plugin.run_json(&params, &task_ctx).await });
        match handle.await {
            Ok(r) => r?,
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(PluginError::failed(format!("the plugin panicked: {msg}")));
            }
            Err(e) => return Err(PluginError::failed(format!("the plugin task failed: {e}"))),
        }
        if self.cancel.is_cancelled() {
            return Err(PluginError::cancelled());
        }

        // Commit: objects, then artifacts, then the manifest.
        let staged = collect_outputs(&out_dir, &self.signature.outputs)?;
        let mut outputs = BTreeMap::new();
        for out in staged {
            let mut files = Vec::with_capacity(out.files.len());
            for f in &out.files {
                let (object, size) = self.store.put_file(&f.abs).await?;
                files.push(ArtifactFile {
                    path: f.rel.clone(),
                    object,
                    size,
                });
            }
            let artifact = match out.kind {
                StagedKind::Table { schema, rows } => Artifact {
                    kind: ArtifactKind::Table,
                    files,
                    schema: Some(schema.as_ref().clone()),
                    rows: Some(rows),
                },
                StagedKind::Blobs => Artifact {
                    kind: ArtifactKind::Blobs,
                    files,
                    schema: None,
                    rows: None,
                },
            };
            let hash = self.store.put_artifact(&artifact).await?;
            outputs.insert(out.name, hash);
        }
        let manifest = NodeManifest {
            key: self.comps.key(),
            components: self.comps.clone(),
            outputs,
            metrics: ctx.metrics(),
            node: self.node_id.to_owned(),
            created: now_rfc3339(),
            duration_ms: started.elapsed().as_millis() as u64,
        };
        if self.cancel.is_cancelled() {
            return Err(PluginError::cancelled());
        }
        self.store.publish(&manifest, self.overwrite).await?;
        // The node's saved state served its purpose.
        if let Some(state) = ctx.state_store()
            && let Err(e) = state.clear().await
        {
            tracing::warn!(node = %self.node_id, error = %e, "cannot remove the node's saved state");
        }
        Ok(manifest)
    }
}
