//! Run a plugin in-process without the engine: for plugin unit tests and the conformance suite.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use tokio_util::sync::CancellationToken;

use crate::parquet_io::{StagedKind, collect_outputs, writer_properties};
use crate::{
    DynPlugin, InputArtifact, Metric, NoProgress, NodeContext, NodeContextParts, PluginError,
};

/// An input given to a plugin under test.
#[derive(Debug, Clone)]
pub enum TestInput {
    /// A table, given as record batches (at least one, for the schema).
    Table(Vec<RecordBatch>),
    /// A blob set, given as a local directory.
    Blobs(PathBuf),
}

/// What a run under test produced.
#[derive(Debug)]
pub struct TestOutputs {
    /// Output tables read back.
    pub tables: BTreeMap<String, Vec<RecordBatch>>,
    /// Output blob sets: their staged directories.
    pub blobs: BTreeMap<String, PathBuf>,
    /// blake3 of each output's files (name, then bytes), by output.
    pub digests: BTreeMap<String, String>,
    /// Reported metrics.
    pub metrics: Vec<Metric>,
    /// Keeps the staged files alive.
    pub dir: tempfile::TempDir,
}

/// Options for [`run_plugin`].
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The node's seed.
    pub seed: u64,
    /// Cancel before starting.
    pub cancelled: bool,
    /// The workflow directory the node sees (default: the current directory).
    pub workflow_dir: Option<PathBuf>,
}

/// Check `params`, then run `plugin` on `inputs`, then check and read back its outputs.
pub async fn run_plugin(
    plugin: &dyn DynPlugin,
    params: &serde_json::Value,
    inputs: BTreeMap<String, TestInput>,
    options: RunOptions,
) -> Result<TestOutputs, PluginError> {
    let checked = plugin
        .check(params)
        .map_err(|e| PluginError::failed(format!("params: {e}")))?;
    let dir = tempfile::tempdir().map_err(|e| PluginError::io("creating a temp dir", e))?;
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut artifacts = BTreeMap::new();
    for (name, input) in inputs {
        let artifact = match input {
            TestInput::Blobs(dir) => InputArtifact::Blobs { dir },
            TestInput::Table(batches) => {
                let schema = batches.first().map(|b| b.schema()).ok_or_else(|| {
                    PluginError::failed(format!("test input `{name}` has no batch"))
                })?;
                let mut bytes = Vec::new();
                let mut w =
                    ArrowWriter::try_new(&mut bytes, schema.clone(), Some(writer_properties()))
                        .map_err(|e| PluginError::failed(e.to_string()))?;
                let mut rows = 0;
                for b in &batches {
                    w.write(b).map_err(|e| PluginError::failed(e.to_string()))?;
                    rows += b.num_rows() as u64;
                }
                w.close().map_err(|e| PluginError::failed(e.to_string()))?;
                let path = ObjectPath::from(format!("inputs/{name}.parquet"));
                let size = bytes.len() as u64;
                store
                    .put(&path, PutPayload::from(bytes))
                    .await
                    .map_err(|e| PluginError::io("storing a test input", e))?;
                InputArtifact::Table {
                    files: vec![(path, size)],
                    schema,
                    rows,
                }
            }
        };
        artifacts.insert(name, artifact);
    }
    let cancel = CancellationToken::new();
    if options.cancelled {
        cancel.cancel();
    }
    let staging = dir.path().join("staging");
    let scratch = dir.path().join("scratch");
    for d in [&staging, &scratch] {
        std::fs::create_dir_all(d).map_err(|e| PluginError::io("creating a temp dir", e))?;
    }
    let ctx = NodeContext::new(NodeContextParts {
        node_id: format!("test-{}", plugin.kind()),
        seed: options.seed,
        store,
        // In memory: the harness runs the plugin in this process.
        store_url: "memory://".into(),
        inputs: artifacts,
        outputs: checked.signature.outputs.clone(),
        staging_dir: staging.clone(),
        log_file: dir.path().join("node.log"),
        scratch_dir: scratch,
        workflow_dir: options
            .workflow_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".")),
        cancel,
        progress: Arc::new(NoProgress),
        resume: None,
        threads: 0,
    });
    plugin.run_json(&checked.params, &ctx).await?;
    let staged = collect_outputs(&staging, &checked.signature.outputs)?;
    let mut out = TestOutputs {
        tables: BTreeMap::new(),
        blobs: BTreeMap::new(),
        digests: BTreeMap::new(),
        metrics: ctx.metrics(),
        dir,
    };
    for output in staged {
        let mut hasher = blake3::Hasher::new();
        for f in &output.files {
            hasher.update(f.rel.as_bytes());
            let bytes =
                std::fs::read(&f.abs).map_err(|e| PluginError::io("reading an output", e))?;
            hasher.update(&bytes);
        }
        out.digests
            .insert(output.name.clone(), hasher.finalize().to_hex().to_string());
        match output.kind {
            StagedKind::Table { .. } => {
                let file = std::fs::File::open(&output.files[0].abs)
                    .map_err(|e| PluginError::io("reading an output", e))?;
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .and_then(|b| b.build())
                        .map_err(|e| PluginError::failed(e.to_string()))?;
                let batches = reader
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| PluginError::failed(e.to_string()))?;
                out.tables.insert(output.name, batches);
            }
            StagedKind::Blobs => {
                out.blobs
                    .insert(output.name.clone(), staging.join(&output.name));
            }
        }
    }
    Ok(out)
}
