//! Nodes that run in a worker process.
//!
//! A node kind whose work needs libraries the engine must not load (libtorch: half a second
//! and ~450 MB before `main`) is registered as a [`Remote`]: its [`Declaration`] type-checks
//! params and gives ports and cache keys here, and each run spawns the worker binary, which
//! has the kind's plugin. The protocol:
//!
//! - The engine stages the node exactly as for an in-process plugin (inputs, output and
//!   scratch folders), writes a [`Job`] as JSON into the scratch folder, and runs
//!   `WORKER node JOB_FILE` with its stdin a pipe it keeps open.
//! - The worker opens the store by URL, builds the node's context from the job, runs the
//!   plugin, and writes its outputs into the same staging folder. On stdout it writes one
//!   [`Event`] per line: progress while it runs, then `done` with the node's metrics or
//!   `failed` with the error. Its stderr is the engine's.
//! - The engine commits the staged outputs as usual: caching, early cutoff and crash safety
//!   are the same as in process.
//! - Cancellation: the engine kills the worker. If the engine dies, the worker's stdin reaches
//!   end-of-file, and the worker cancels its node and exits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use scorch_api::{
    Checked, Declaration, DynPlugin, InputArtifact, Metric, NodeContext, NodeContextParts,
    ParamError, PluginError, PluginErrorKind, ProgressSink, Registry, check_params,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// One node for a worker to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// The node kind.
    pub kind: String,
    /// Params that passed the kind's check (defaults filled in).
    pub params: serde_json::Value,
    /// The node's id.
    pub node_id: String,
    /// The node's seed.
    pub seed: u64,
    /// The store, as an absolute URL.
    pub store: String,
    /// Inputs by name.
    pub inputs: BTreeMap<String, JobInput>,
    /// Outputs go under `staging_dir/<output name>/`.
    pub staging_dir: PathBuf,
    /// The node's scratch folder.
    pub scratch_dir: PathBuf,
    /// The node's log (the engine also appends the worker's stderr to it).
    pub log_file: PathBuf,
    /// The workflow file's folder.
    pub workflow_dir: PathBuf,
    /// The store prefix of the node's resumable state.
    #[serde(default)]
    pub resume: Option<String>,
}

/// An input of a [`Job`]: [`InputArtifact`] in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobInput {
    /// A table's Parquet objects in the store.
    Table {
        /// Object paths and sizes.
        files: Vec<(String, u64)>,
        /// The table's schema.
        schema: arrow_schema::Schema,
        /// Total rows.
        rows: u64,
    },
    /// A blob set materialised in a local folder.
    Blobs {
        /// The folder.
        dir: PathBuf,
    },
}

impl From<&InputArtifact> for JobInput {
    fn from(a: &InputArtifact) -> Self {
        match a {
            InputArtifact::Table {
                files,
                schema,
                rows,
            } => Self::Table {
                files: files.iter().map(|(p, n)| (p.to_string(), *n)).collect(),
                schema: schema.as_ref().clone(),
                rows: *rows,
            },
            InputArtifact::Blobs { dir } => Self::Blobs { dir: dir.clone() },
        }
    }
}

impl From<JobInput> for InputArtifact {
    fn from(i: JobInput) -> Self {
        match i {
            JobInput::Table {
                files,
                schema,
                rows,
            } => Self::Table {
                files: files
                    .into_iter()
                    .map(|(p, n)| (ObjectPath::from(p), n))
                    .collect(),
                schema: Arc::new(schema),
                rows,
            },
            JobInput::Blobs { dir } => Self::Blobs { dir },
        }
    }
}

/// What a worker reports, one JSON object per line of its stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The amount of work.
    Total(u64),
    /// More work done.
    Advance(u64),
    /// A status line.
    Message(String),
    /// A metric as the work goes ([`ProgressSink::metric`]).
    Metric(Metric),
    /// The node finished; its metrics.
    Done(Vec<Metric>),
    /// The node failed.
    Failed {
        /// The class of failure.
        kind: PluginErrorKind,
        /// What failed.
        message: String,
    },
}

impl Event {
    /// Pass a progress event (total, advance, message, metric) on to `sink`; `false` for
    /// the end of a node (`Done`, `Failed`), which is the caller's to handle.
    pub(crate) fn relay(&self, sink: &dyn ProgressSink) -> bool {
        match self {
            Self::Total(n) => sink.set_total(*n),
            Self::Advance(n) => sink.advance(*n),
            Self::Message(m) => sink.message(m),
            Self::Metric(m) => sink.metric(&m.name, m.step, m.value),
            Self::Done(_) | Self::Failed { .. } => return false,
        }
        true
    }
}

/// A node kind declared here and run by a worker program.
pub struct Remote<D> {
    declaration: D,
    program: PathBuf,
}

impl<D> std::fmt::Debug for Remote<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

impl<D: Declaration> Remote<D> {
    /// Run nodes of `declaration`'s kind with `program` (the worker binary).
    pub fn new(declaration: D, program: PathBuf) -> Self {
        Self {
            declaration,
            program,
        }
    }
}

#[scorch_api::reexports::async_trait]
impl<D: Declaration> DynPlugin for Remote<D> {
    fn kind(&self) -> &'static str {
        self.declaration.kind()
    }
    fn in_worker(&self) -> bool {
        true
    }
    fn version(&self) -> &'static str {
        self.declaration.version()
    }
    fn description(&self) -> &'static str {
        self.declaration.description()
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(D::Params)).unwrap_or_default()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        check_params(params, |p: &D::Params| self.declaration.signature(p))
    }
    fn check_on(
        &self,
        params: &serde_json::Value,
        hardware: scorch_api::Hardware,
    ) -> Result<Checked, ParamError> {
        let settled = scorch_api::settle_params(params, |p: &mut D::Params| {
            self.declaration.settle(p, hardware)
        })?;
        self.check(&settled)
    }
    async fn run_json(
        &self,
        params: &serde_json::Value,
        ctx: &NodeContext,
    ) -> Result<(), PluginError> {
        run_in_worker(&self.program, self.kind(), params, ctx).await
    }
}

/// The environment variable that gives a worker process the threads of its node.
pub const THREADS_ENV: &str = "SCORCH_THREADS";

/// Run one node in a worker process and relay what it reports into `ctx`.
async fn run_in_worker(
    program: &std::path::Path,
    kind: &str,
    params: &serde_json::Value,
    ctx: &NodeContext,
) -> Result<(), PluginError> {
    let parts = ctx.parts();
    if parts.store_url.starts_with("memory:") {
        return Err(PluginError::failed(format!(
            "`{kind}` runs in a worker process, which cannot see an in-memory store; use a \
             file:// or s3:// store"
        )));
    }
    let job = Job {
        kind: kind.to_owned(),
        params: params.clone(),
        node_id: parts.node_id.clone(),
        seed: parts.seed,
        store: parts.store_url.clone(),
        inputs: parts
            .inputs
            .iter()
            .map(|(k, v)| (k.clone(), JobInput::from(v)))
            .collect(),
        staging_dir: parts.staging_dir.clone(),
        scratch_dir: parts.scratch_dir.clone(),
        log_file: parts.log_file.clone(),
        workflow_dir: parts.workflow_dir.clone(),
        resume: parts.resume.clone(),
    };
    let job_file = parts.scratch_dir.join("worker-job.json");
    let bytes = serde_json::to_vec(&job)
        .map_err(|e| PluginError::failed(format!("writing the worker's job: {e}")))?;
    tokio::fs::write(&job_file, bytes)
        .await
        .map_err(|e| PluginError::io(format!("writing {}", job_file.display()), e))?;
    let mut command = tokio::process::Command::new(program);
    if parts.threads > 0 {
        // The worker's compute gets the cpu slots the engine granted the node, not every
        // core: two model nodes side by side then share the cores instead of oversubscribing
        // them (the worker sizes libtorch's pools from it before any tensor work).
        command.env(THREADS_ENV, parts.threads.to_string());
    }
    let mut child = command
        .arg("node")
        .arg(&job_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            PluginError::io(
                format!(
                    "starting the worker {} for `{kind}` (set SCORCH_WORKER to its path)",
                    program.display()
                ),
                e,
            )
        })?;
    // Held open while the node runs: the worker takes end-of-file as "the engine is gone".
    let _stdin = child.stdin.take();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| PluginError::failed("the worker's stdout is not a pipe"))?;
    // The worker's stderr goes to the node's log, and on to ours.
    let stderr = child.stderr.take();
    let log_file = parts.log_file.clone();
    let copier = tokio::spawn(async move {
        let Some(stderr) = stderr else { return };
        let mut log = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_file)
            .await
            .ok();
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("{line}");
            if let Some(f) = log.as_mut() {
                let _ = f.write_all(format!("{line}\n").as_bytes()).await;
            }
        }
    });
    let mut lines = BufReader::new(stdout).lines();
    let mut outcome: Option<Result<(), PluginError>> = None;
    loop {
        tokio::select! {
            () = parts.cancel.cancelled() => {
                let _ = child.kill().await;
                return Err(PluginError::cancelled());
            }
            line = lines.next_line() => {
                let line = line.map_err(|e| PluginError::io("reading the worker's output", e))?;
                let Some(line) = line else { break };
                match serde_json::from_str::<Event>(&line) {
                    Ok(e) if e.relay(parts.progress.as_ref()) => {
                        if let Event::Message(m) = e {
                            append(&parts.log_file, &format!("progress: {m}")).await;
                        }
                    }
                    Ok(Event::Done(metrics)) => {
                        for m in metrics {
                            match m.step {
                                Some(step) => ctx.metric_at(&m.name, step, m.value),
                                None => ctx.metric(&m.name, m.value),
                            }
                        }
                        outcome = Some(Ok(()));
                    }
                    Ok(Event::Failed { kind, message }) => {
                        outcome = Some(Err(PluginError::new(kind, message)));
                    }
                    Ok(_) => {}
                    // Not ours (a library printing to stdout): pass it on.
                    Err(_) => eprintln!("{line}"),
                }
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| PluginError::io("waiting for the worker", e))?;
    let _ = copier.await;
    match outcome {
        Some(r) => r,
        None => Err(PluginError::failed(format!(
            "the worker for `{kind}` ended ({status}) without reporting a result"
        ))),
    }
}

/// Append a line to the node's log (the worker's header, its progress messages).
pub(crate) async fn append(log: &std::path::Path, line: &str) {
    if let Ok(mut f) = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .await
    {
        let _ = f.write_all(format!("{line}\n").as_bytes()).await;
    }
}

/// Progress that a worker writes to its stdout as [`Event`] lines.
#[derive(Debug, Default)]
pub struct StdoutProgress;

/// Write `event` as one line of stdout.
pub(crate) fn emit(event: &Event) {
    use std::io::Write as _;
    if let Ok(line) = serde_json::to_string(event) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

impl ProgressSink for StdoutProgress {
    fn set_total(&self, total: u64) {
        emit(&Event::Total(total));
    }
    fn advance(&self, delta: u64) {
        emit(&Event::Advance(delta));
    }
    fn message(&self, text: &str) {
        emit(&Event::Message(text.to_owned()));
    }
    fn metric(&self, name: &str, step: Option<u64>, value: f64) {
        emit(&Event::Metric(Metric {
            name: name.to_owned(),
            step,
            value,
        }));
    }
}

/// The worker's side: run the job in `job_file` with the plugin of its kind from `registry`,
/// reporting on stdout. Returns whether the node succeeded.
pub async fn serve_job(registry: &Registry, job_file: &std::path::Path) -> bool {
    let result = serve(registry, job_file).await;
    match &result {
        Ok(metrics) => emit(&Event::Done(metrics.clone())),
        Err(e) => emit(&Event::Failed {
            kind: e.kind,
            message: e.message.clone(),
        }),
    }
    result.is_ok()
}

async fn serve(
    registry: &Registry,
    job_file: &std::path::Path,
) -> Result<Vec<Metric>, PluginError> {
    let text = tokio::fs::read(job_file)
        .await
        .map_err(|e| PluginError::io(format!("reading {}", job_file.display()), e))?;
    let job: Job = serde_json::from_slice(&text)
        .map_err(|e| PluginError::failed(format!("{}: not a job: {e}", job_file.display())))?;
    // The log says who wrote it; the terminal needs no such line.
    append(
        &job.log_file,
        &format!(
            "scorch-worker {}: node `{}` ({}), pid {}",
            env!("CARGO_PKG_VERSION"),
            job.node_id,
            job.kind,
            std::process::id()
        ),
    )
    .await;
    let plugin = registry.get(&job.kind).ok_or_else(|| {
        PluginError::failed(format!("this worker has no node kind `{}`", job.kind))
    })?;
    let checked = plugin
        .check(&job.params)
        .map_err(|e| PluginError::failed(format!("params no longer type-check: {e}")))?;
    let store = Store::open(&job.store, &job.workflow_dir)?;
    let cancel = CancellationToken::new();
    // The engine holds our stdin open while it wants the node; end-of-file means it is gone.
    let watch = cancel.clone();
    std::thread::spawn(move || {
        use std::io::Read as _;
        let mut buf = [0u8; 64];
        while let Ok(n) = std::io::stdin().read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        watch.cancel();
    });
    let ctx = NodeContext::new(NodeContextParts {
        node_id: job.node_id,
        seed: job.seed,
        store: store.objects(),
        store_url: job.store,
        inputs: job
            .inputs
            .into_iter()
            .map(|(k, v)| (k, InputArtifact::from(v)))
            .collect(),
        outputs: checked.signature.outputs,
        staging_dir: job.staging_dir,
        scratch_dir: job.scratch_dir,
        log_file: job.log_file,
        workflow_dir: job.workflow_dir,
        cancel: cancel.clone(),
        progress: Arc::new(StdoutProgress),
        resume: job.resume,
        threads: 0,
    });
    plugin.run_json(&checked.params, &ctx).await?;
    if cancel.is_cancelled() {
        return Err(PluginError::cancelled());
    }
    Ok(ctx.metrics())
}
