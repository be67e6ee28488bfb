use std::collections::{BTreeMap, BTreeSet};
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
// ParquetObjectReader is deprecated upstream in favour of hand-written readers; it is the
// maintained implementation of exactly what we need, so we keep it until it is removed.
#[allow(deprecated)]
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use tokio_util::sync::CancellationToken;

use crate::parquet_io::TABLE_FILE;
use crate::parquet_sink::{ParquetSink, RowGroupLimits};
use crate::port::{OutputPort, PortType, TableSpec};
use crate::progress::{Metric, ProgressSink};
use crate::{PluginError, PluginErrorKind};

/// An input artifact as the engine hands it to a node.
#[derive(Debug, Clone)]
pub enum InputArtifact {
    /// A table: Parquet objects in the store, read in order.
    Table {
        /// Object paths and sizes in bytes.
        files: Vec<(object_store::path::Path, u64)>,
        /// The table's schema.
        schema: SchemaRef,
        /// Total rows.
        rows: u64,
    },
    /// A blob set, materialised in a local directory (read-only by convention).
    Blobs {
        /// The directory holding the files.
        dir: PathBuf,
    },
}

/// Everything the engine provides to build a [`NodeContext`].
pub struct NodeContextParts {
    /// The node's id in the workflow (`rl[lr=1e-6]`).
    pub node_id: String,
    /// The node's seed.
    pub seed: u64,
    /// Where input tables are read from.
    pub store: Arc<dyn ObjectStore>,
    /// The store's URL, absolute (`file:///abs/dir`, `s3://bucket/prefix`): what a worker
    /// process opens to read the same inputs.
    pub store_url: String,
    /// Inputs by name.
    pub inputs: BTreeMap<String, InputArtifact>,
    /// Declared outputs.
    pub outputs: Vec<OutputPort>,
    /// Outputs are staged under `staging_dir/<output name>/`.
    pub staging_dir: PathBuf,
    /// A private scratch directory, removed after the run.
    pub scratch_dir: PathBuf,
    /// The node's log: a plugin appends what a person may want to read (a command's output,
    /// a worker's messages); the engine keeps it with the run (`scorch logs`).
    pub log_file: PathBuf,
    /// The workflow file's directory: relative paths in params resolve against it.
    pub workflow_dir: PathBuf,
    /// Fires when the node must stop.
    pub cancel: CancellationToken,
    /// Where progress goes.
    pub progress: Arc<dyn ProgressSink>,
    /// The store prefix of the node's resumable state ([`crate::resume`]), derived from its
    /// cache key; `None` where state cannot be kept.
    pub resume: Option<String>,
    /// The cpu slots the engine granted the node: the threads its compute may use (0: not
    /// set, the machine's cores).
    pub threads: usize,
}

impl std::fmt::Debug for NodeContextParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeContextParts")
            .field("node_id", &self.node_id)
            .field("inputs", &self.inputs)
            .field("staging_dir", &self.staging_dir)
            .finish_non_exhaustive()
    }
}

/// What a running node sees of the world.
pub struct NodeContext {
    parts: NodeContextParts,
    claimed: Mutex<BTreeSet<String>>,
    metrics: Mutex<Vec<Metric>>,
}

impl std::fmt::Debug for NodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeContext")
            .field("node_id", &self.parts.node_id)
            .finish_non_exhaustive()
    }
}

impl NodeContext {
    /// Build a context (the engine and the test harness do this).
    pub fn new(parts: NodeContextParts) -> Self {
        Self {
            parts,
            claimed: Mutex::new(BTreeSet::new()),
            metrics: Mutex::new(Vec::new()),
        }
    }

    /// What the engine provided: what a node kind that runs in a worker process hands on.
    pub fn parts(&self) -> &NodeContextParts {
        &self.parts
    }
    /// The node's id.
    pub fn node_id(&self) -> &str {
        &self.parts.node_id
    }
    /// The node's seed: use it for every random choice.
    pub fn seed(&self) -> u64 {
        self.parts.seed
    }
    /// A private scratch directory, removed after the run.
    pub fn scratch_dir(&self) -> &Path {
        &self.parts.scratch_dir
    }
    /// The node's log file (append to it); the engine keeps it with the run.
    pub fn log_file(&self) -> &Path {
        &self.parts.log_file
    }
    /// The last `n` lines of the node's log: what a failed command or process said last.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read(&self.parts.log_file)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
    /// The workflow file's directory: resolve relative paths in params against it.
    pub fn workflow_dir(&self) -> &Path {
        &self.parts.workflow_dir
    }
    /// The cancellation signal.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.parts.cancel
    }
    /// `Err(cancelled)` once the run was cancelled.
    pub fn check_cancelled(&self) -> Result<(), PluginError> {
        if self.parts.cancel.is_cancelled() {
            Err(PluginError::cancelled())
        } else {
            Ok(())
        }
    }
    /// The progress reporter.
    pub fn progress(&self) -> &dyn ProgressSink {
        self.parts.progress.as_ref()
    }
    /// The progress reporter as a handle that work on another thread can keep (the body of
    /// [`NodeContext::blocking`]).
    pub fn progress_handle(&self) -> Arc<dyn ProgressSink> {
        self.parts.progress.clone()
    }

    /// Where the node keeps its state between attempts (a long training run saves its
    /// step there and resumes from it); `None` where the engine keeps no state.
    pub fn state_store(&self) -> Option<crate::resume::StateStore> {
        let prefix = self.parts.resume.clone()?;
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(crate::resume::StateStore::new(
            self.parts.store.clone(),
            prefix,
            runtime,
        ))
    }
    /// Report a metric.
    pub fn metric(&self, name: &str, value: f64) {
        self.push_metric(Metric {
            name: name.to_owned(),
            step: None,
            value,
        });
    }
    /// Report a metric at a step (a training step, an epoch).
    pub fn metric_at(&self, name: &str, step: u64, value: f64) {
        self.push_metric(Metric {
            name: name.to_owned(),
            step: Some(step),
            value,
        });
    }
    fn push_metric(&self, m: Metric) {
        if let Ok(mut v) = self.metrics.lock() {
            v.push(m);
        }
    }
    /// Metrics reported so far.
    pub fn metrics(&self) -> Vec<Metric> {
        self.metrics.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Run CPU-heavy work on the blocking thread pool.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, PluginError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, PluginError> + Send + 'static,
    {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| PluginError::failed(format!("worker thread failed: {e}")))?
    }

    /// Names of the connected inputs.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.parts.inputs.keys().map(String::as_str)
    }
    /// Whether input `name` is connected.
    pub fn has_input(&self, name: &str) -> bool {
        self.parts.inputs.contains_key(name)
    }

    fn input(&self, name: &str) -> Result<&InputArtifact, PluginError> {
        self.parts.inputs.get(name).ok_or_else(|| {
            PluginError::new(
                PluginErrorKind::Input,
                format!("input `{name}` is not connected"),
            )
        })
    }

    /// Input table `name`.
    pub fn table(&self, name: &str) -> Result<TableInput, PluginError> {
        match self.input(name)? {
            InputArtifact::Table {
                files,
                schema,
                rows,
            } => Ok(TableInput {
                name: name.to_owned(),
                store: self.parts.store.clone(),
                files: files.clone(),
                schema: schema.clone(),
                rows: *rows,
                scratch: self.parts.scratch_dir.join("inputs").join(name),
            }),
            InputArtifact::Blobs { .. } => Err(PluginError::new(
                PluginErrorKind::Input,
                format!("input `{name}` is a blob set, not a table"),
            )),
        }
    }

    /// Every row of input table `name`, as a table kind's row type.
    pub async fn read_rows<T: crate::tables::TableRow>(
        &self,
        name: &str,
    ) -> Result<Vec<T>, PluginError> {
        let mut rows = Vec::new();
        for batch in self.table(name)?.read_all().await? {
            rows.extend(T::from_batch(&batch)?);
        }
        Ok(rows)
    }

    /// Write output table `name` from rows of a table kind.
    pub fn write_rows<T: crate::tables::TableRow>(
        &self,
        name: &str,
        rows: &[T],
    ) -> Result<(), PluginError> {
        let mut w = self.table_writer(name)?;
        w.write_rows(rows)?;
        w.finish()?;
        Ok(())
    }

    /// The local directory of input blob set `name`, if that optional input is connected.
    pub fn optional_blobs(&self, name: &str) -> Result<Option<PathBuf>, PluginError> {
        if self.has_input(name) {
            self.blobs(name).map(|d| Some(d.to_path_buf()))
        } else {
            Ok(None)
        }
    }

    /// The local directory of input blob set `name`.
    pub fn blobs(&self, name: &str) -> Result<&Path, PluginError> {
        match self.input(name)? {
            InputArtifact::Blobs { dir } => Ok(dir),
            InputArtifact::Table { .. } => Err(PluginError::new(
                PluginErrorKind::Input,
                format!("input `{name}` is a table, not a blob set"),
            )),
        }
    }

    fn claim(&self, name: &str, want_table: bool) -> Result<(&OutputPort, PathBuf), PluginError> {
        let port = self
            .parts
            .outputs
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                PluginError::new(
                    PluginErrorKind::Output,
                    format!("`{name}` is not a declared output"),
                )
            })?;
        let is_table = matches!(port.ty, PortType::Table(_));
        if is_table != want_table {
            return Err(PluginError::new(
                PluginErrorKind::Output,
                format!("output `{name}` is a {}", port.ty),
            ));
        }
        let mut claimed = self
            .claimed
            .lock()
            .map_err(|_| PluginError::failed("context lock poisoned"))?;
        if !claimed.insert(name.to_owned()) {
            return Err(PluginError::new(
                PluginErrorKind::Output,
                format!("output `{name}` was already written"),
            ));
        }
        let dir = self.parts.staging_dir.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| PluginError::io(format!("creating {}", dir.display()), e))?;
        Ok((port, dir))
    }

    /// A writer for output table `name`; call [`TableWriter::finish`] when done.
    pub fn table_writer(&self, name: &str) -> Result<TableWriter, PluginError> {
        let (port, dir) = self.claim(name, true)?;
        let declared = match &port.ty {
            PortType::Table(TableSpec::Columns(s)) => Some(s.clone()),
            _ => None,
        };
        Ok(TableWriter {
            name: name.to_owned(),
            declared,
            path: dir.join(TABLE_FILE),
            writer: None,
            rows: 0,
        })
    }

    /// The path where an external program writes output table `name` as one Parquet file.
    /// The engine checks the file against the declaration when the node succeeds.
    pub fn table_output_path(&self, name: &str) -> Result<PathBuf, PluginError> {
        let (_, dir) = self.claim(name, true)?;
        Ok(dir.join(TABLE_FILE))
    }

    /// The directory to fill with output blob set `name`.
    pub fn blob_dir(&self, name: &str) -> Result<PathBuf, PluginError> {
        Ok(self.claim(name, false)?.1)
    }
}

/// An input table.
#[derive(Debug, Clone)]
pub struct TableInput {
    name: String,
    store: Arc<dyn ObjectStore>,
    files: Vec<(object_store::path::Path, u64)>,
    schema: SchemaRef,
    rows: u64,
    scratch: PathBuf,
}

impl TableInput {
    /// The table's schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }
    /// The number of rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }
    /// Stream the table's record batches.
    pub async fn stream(
        &self,
    ) -> Result<BoxStream<'static, Result<RecordBatch, PluginError>>, PluginError> {
        let mut streams = Vec::with_capacity(self.files.len());
        for (path, size) in &self.files {
            #[allow(deprecated)]
            let reader =
                ParquetObjectReader::new(self.store.clone(), path.clone()).with_file_size(*size);
            let name = self.name.clone();
            let stream = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .and_then(|b| b.build())
                .map_err(|e| {
                    PluginError::new(
                        PluginErrorKind::Input,
                        format!("reading input `{name}`: {e}"),
                    )
                })?;
            streams.push(stream.map_err(move |e| {
                PluginError::new(
                    PluginErrorKind::Input,
                    format!("reading input `{name}`: {e}"),
                )
            }));
        }
        Ok(futures::stream::iter(streams).flatten().boxed())
    }
    /// Read the whole table into memory.
    pub async fn read_all(&self) -> Result<Vec<RecordBatch>, PluginError> {
        self.stream().await?.try_collect().await
    }
    /// Copy the table's Parquet files to local paths (for external programs).
    pub async fn local_paths(&self) -> Result<Vec<PathBuf>, PluginError> {
        tokio::fs::create_dir_all(&self.scratch)
            .await
            .map_err(|e| PluginError::io(format!("creating {}", self.scratch.display()), e))?;
        let mut out = Vec::new();
        for (i, (path, _)) in self.files.iter().enumerate() {
            let fetch = |e| PluginError::io(format!("fetching input `{}`", self.name), e);
            let bytes = self
                .store
                .get(path)
                .await
                .map_err(fetch)?
                .bytes()
                .await
                .map_err(fetch)?;
            let local = self.scratch.join(format!("part-{i:05}.parquet"));
            tokio::fs::write(&local, &bytes)
                .await
                .map_err(|e| PluginError::io(format!("writing {}", local.display()), e))?;
            out.push(local);
        }
        Ok(out)
    }
}

/// Writes one output table as Parquet into the node's staging area.
pub struct TableWriter {
    name: String,
    declared: Option<SchemaRef>,
    path: PathBuf,
    writer: Option<ParquetSink<BufWriter<std::fs::File>>>,
    rows: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter")
            .field("name", &self.name)
            .field("rows", &self.rows)
            .finish()
    }
}

fn describe(schema: &arrow_schema::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{}: {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn same_fields(a: &arrow_schema::Schema, b: &arrow_schema::Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| {
            x.name() == y.name()
                && x.data_type() == y.data_type()
                && x.is_nullable() == y.is_nullable()
        })
}

impl TableWriter {
    fn open(
        &mut self,
        schema: SchemaRef,
    ) -> Result<&mut ParquetSink<BufWriter<std::fs::File>>, PluginError> {
        if self.writer.is_none() {
            let tmp = self.path.with_extension("partial");
            let file = std::fs::File::create(&tmp)
                .map_err(|e| PluginError::io(format!("creating {}", tmp.display()), e))?;
            let file = BufWriter::with_capacity(1 << 20, file);
            let w = ParquetSink::new(
                file,
                schema,
                RowGroupLimits::default(),
                format!("output `{}`", self.name),
            )?;
            self.writer = Some(w);
        }
        self.writer
            .as_mut()
            .ok_or_else(|| PluginError::failed("writer missing"))
    }

    /// The schema to write columns of `schema` with: the declared one, which they must match
    /// (`what` names them in the error), or their own when none was declared.
    fn schema_for(&self, schema: SchemaRef, what: &str) -> Result<SchemaRef, PluginError> {
        match &self.declared {
            Some(declared) if !same_fields(declared, &schema) => Err(PluginError::new(
                PluginErrorKind::Output,
                format!(
                    "output `{}`: {what} [{}] differ from the declared [{}]",
                    self.name,
                    describe(&schema),
                    describe(declared)
                ),
            )),
            Some(declared) => Ok(declared.clone()),
            None => Ok(schema),
        }
    }

    /// Append a batch; its columns must be exactly the declared ones.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        let schema = self.schema_for(batch.schema(), "batch columns")?;
        let batch = batch
            .clone()
            .with_schema(schema.clone())
            .map_err(|e| PluginError::failed(e.to_string()))?;
        self.open(schema)?.write(&batch)?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Append rows of a table kind, converting each chunk while the one before is encoded.
    pub fn write_rows<T: crate::tables::TableRow>(
        &mut self,
        rows: &[T],
    ) -> Result<(), PluginError> {
        let fields = T::fields();
        let schema = Arc::new(arrow_schema::Schema::new(fields.clone()));
        let schema = self.schema_for(schema, &format!("the columns of {} rows", T::KIND))?;
        crate::row_writer::write_rows(self.open(schema)?, &fields, rows)?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Close the file and make the output visible to the engine. Returns the row count.
    pub fn finish(mut self) -> Result<u64, PluginError> {
        if self.writer.is_none() {
            let schema = self.declared.clone().ok_or_else(|| {
                PluginError::new(
                    PluginErrorKind::Output,
                    format!(
                        "output `{}` has no declared columns and no batch was written",
                        self.name
                    ),
                )
            })?;
            self.open(schema)?;
        }
        let name = self.name.clone();
        if let Some(w) = self.writer.take() {
            w.close()?;
        }
        let tmp = self.path.with_extension("partial");
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| PluginError::io(format!("finishing output `{name}`"), e))?;
        Ok(self.rows)
    }
}
