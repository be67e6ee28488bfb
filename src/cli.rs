//! Command-line parsing and the commands' output.

/// `print!` for the command's output: a reader that has gone away (`scorch runs | head`)
/// ends the command quietly instead of panicking.
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::emit(format_args!($($t)*), false) };
}

/// `println!` for the command's output; see [`out!`].
macro_rules! outln {
    () => { $crate::cli::emit(format_args!(""), true) };
    ($($t:tt)*) => { $crate::cli::emit(format_args!($($t)*), true) };
}

/// Write to stdout; on a closed pipe, exit with success (the reader asked for no more).
pub(crate) fn emit(args: std::fmt::Arguments<'_>, newline: bool) {
    use std::io::Write as _;
    let mut o = std::io::stdout().lock();
    let written = o
        .write_fmt(args)
        .and_then(|()| if newline { o.write_all(b"\n") } else { Ok(()) });
    if let Err(e) = written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scorch::error::{EngineError, EngineErrorKind, WorkflowError};
use scorch::plan::{PlanStatus, plan};
use scorch::progress::{Mode, Reporter};
use scorch::record::{Outcome, RunRecord, RunStatus};
use scorch::run::{RunOptions, run};
use scorch::store::{DEFAULT_STORE, Store, gc, verify};
use scorch::workflow::{LoadOptions, Workflow, load};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Distil LLM agents with SCoRe: YAML workflows run as cached DAGs.
#[derive(Debug, Parser)]
#[command(name = "scorch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and check a workflow; nothing runs.
    Validate(WorkflowArgs),
    /// Show what a run would do, and why.
    Plan(PlanArgs),
    /// Run a workflow; cached nodes are reused.
    Run(RunArgs),
    /// Draw the DAG.
    Dag {
        #[command(flatten)]
        wf: WorkflowArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: DagFormat,
    },
    /// List recorded runs, newest first.
    Runs {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one run record.
    Show {
        /// Run id (a unique prefix is enough).
        run: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every component of a node's cache key and what changed since it last ran.
    Explain {
        #[command(flatten)]
        wf: WorkflowArgs,
        /// Node id.
        node: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Write a run's report folder: results table, node timings and teacher cost, the DAG, HTML.
    Report {
        /// Run id (a unique prefix is enough).
        run: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Folder to write (default: `report-<run id>`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Compare the arms of an experiment run: success with intervals across seeds, the
    /// paired difference against a baseline arm, McNemar per seed, teacher cost per arm.
    Compare {
        /// Run id (a unique prefix is enough).
        run: String,
        #[command(flatten)]
        store: StoreArgs,
        /// The arm (eval `label`) that differences are taken against.
        #[arg(long)]
        baseline: Option<String>,
        /// Folder to write (default: `compare-<run id>`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Remove staging leftovers and unreferenced artifacts.
    Gc {
        #[command(flatten)]
        store: StoreArgs,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that every published node's artifacts and objects are in the store (exit 1
    /// if any is missing)
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the built-in node kinds.
    Plugins,
    /// Import the method's reference JSONL files into trajectory and repair tables.
    Import {
        /// Reference JSONL files (trajectories, or mentored-solving records with repairs).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Folder for `trajectories.parquet` and `repairs.parquet`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Export a trajectories table to multi-turn chat JSON lines (LLaMA-Factory, TRL).
    ExportChat {
        /// A trajectories Parquet file.
        table: PathBuf,
        /// The JSONL file to write.
        #[arg(long)]
        out: PathBuf,
        /// System prompt of every conversation.
        #[arg(long, default_value = scorch_agent::format::PYTHON_SYSTEM)]
        system: String,
    },
    /// Serve a checkpoint folder as an OpenAI-compatible endpoint.
    Serve {
        /// An HF-layout checkpoint folder.
        checkpoint: PathBuf,
        /// Address to listen on (port 0 picks a free one; the URL is printed).
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: std::net::SocketAddr,
        /// `auto`, `cpu` or `cuda`.
        #[arg(long, default_value = "auto")]
        device: String,
        /// The model name clients use (default: the folder's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Write the built-in suite's tasks as a tasks table.
    Tasks {
        /// `train`, `test` or `hard`.
        #[arg(long, default_value = "train")]
        split: String,
        /// How many.
        #[arg(long, default_value_t = 10)]
        count: u64,
        /// Suite seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// A Parquet file to write; without it the tasks are printed.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema of workflow files, or of a table kind's rows.
    Schema {
        /// A table kind (`tasks`, `trajectories`, `repairs`, `rl_prompts`).
        #[arg(long)]
        table: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DagFormat {
    Mermaid,
    Dot,
}

#[derive(Debug, Args)]
struct WorkflowArgs {
    /// The workflow file.
    workflow: PathBuf,
    /// Override a value: `vars.x=3`, `nodes.rl.params.lr=1e-6` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    sets: Vec<String>,
    /// Resource limits: `cpu=4`, `gpu=1` (repeatable).
    #[arg(long = "slots", value_name = "NAME=N")]
    slots: Vec<String>,
    /// Print one JSON document.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StoreArgs {
    /// Artifact store URL (default: the workflow's `store:`, else file://.scorch).
    #[arg(long, env = "SCORCH_STORE")]
    store: Option<String>,
}

#[derive(Debug, Args)]
struct SelectArgs {
    /// Run only this node; its inputs must be cached (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Run this node and everything downstream (repeatable).
    #[arg(long)]
    from: Vec<String>,
    /// Recompute this node even if cached (repeatable).
    #[arg(long)]
    force: Vec<String>,
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    wf: WorkflowArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    select: SelectArgs,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    wf: WorkflowArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    select: SelectArgs,
    /// Run at most N nodes at once (default: the number of cores).
    #[arg(short = 'j', long)]
    jobs: Option<usize>,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

/// Why the command stopped.
pub(crate) enum Failure {
    Workflow(WorkflowError, bool),
    Engine(EngineError),
    RunFailed,
    Cancelled,
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}

/// Entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Workflow(e, as_json)) => {
            if as_json {
                outln!("{}", workflow_error_json(&e));
            } else {
                eprint!("{}", crate::report::render(&e));
                eprintln!("error: {} problem(s) in {}", e.diagnostics.len(), e.file);
            }
            ExitCode::from(2)
        }
        Err(Failure::Engine(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.kind == EngineErrorKind::Usage {
                2
            } else {
                1
            })
        }
        Err(Failure::RunFailed) => ExitCode::from(1),
        Err(Failure::Cancelled) => ExitCode::from(130),
    }
}

fn workflow_error_json(e: &WorkflowError) -> serde_json::Value {
    json!({
        "ok": false,
        "file": e.file,
        "errors": e.diagnostics.iter().map(|d| json!({
            "code": d.kind.code(),
            "message": d.message,
            "path": d.path,
            "line": d.span.map(|s| s.line),
            "column": d.span.map(|s| s.column),
            "hint": d.hint,
        })).collect::<Vec<_>>(),
    })
}

fn parse_slots(slots: &[String]) -> Result<BTreeMap<String, u32>, EngineError> {
    slots
        .iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| EngineError::usage(format!("`--slots {s}` is not NAME=N")))?;
            let n = v
                .parse::<u32>()
                .map_err(|_| EngineError::usage(format!("`--slots {s}`: `{v}` is not a count")))?;
            Ok((k.to_owned(), n))
        })
        .collect()
}

fn load_workflow(args: &WorkflowArgs) -> Result<Workflow, Failure> {
    let options = LoadOptions {
        sets: args.sets.clone(),
        slots: parse_slots(&args.slots)?,
    };
    load(&args.workflow, &scorch::builtin::registry(), &options)
        .map_err(|e| Failure::Workflow(e, args.json))
}

fn open_store(flag: &StoreArgs, wf: Option<&Workflow>) -> Result<Store, EngineError> {
    let url = flag
        .store
        .clone()
        .or_else(|| wf.and_then(|w| w.store.clone()))
        .unwrap_or_else(|| DEFAULT_STORE.to_owned());
    let cwd =
        std::env::current_dir().map_err(|e| EngineError::io("reading the current directory", e))?;
    Store::open(&url, &cwd)
}

fn run_options(select: &SelectArgs, jobs: Option<usize>) -> RunOptions {
    RunOptions {
        jobs: jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        only: select.only.clone(),
        from: select.from.clone(),
        force: select.force.clone(),
        retry_backoff: std::env::var("SCORCH_RETRY_BACKOFF_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_millis(500), Duration::from_millis),
    }
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Validate(args) => {
            let wf = load_workflow(&args)?;
            if args.json {
                let nodes: Vec<_> = wf
                    .nodes
                    .iter()
                    .map(|n| json!({"id": n.id, "kind": n.plugin.kind()}))
                    .collect();
                outln!(
                    "{}",
                    json!({"ok": true, "workflow": wf.name, "nodes": nodes})
                );
            } else {
                outln!(
                    "{}: ok — workflow `{}`, {} node(s)",
                    args.workflow.display(),
                    wf.name,
                    wf.nodes.len()
                );
            }
            Ok(())
        }
        Command::Plan(args) => {
            let wf = load_workflow(&args.wf)?;
            let store = open_store(&args.store, Some(&wf))?;
            let entries = plan(&wf, &store, &run_options(&args.select, None)).await?;
            if args.wf.json {
                outln!(
                    "{}",
                    json!({"workflow": wf.name, "store": store.url(), "nodes": entries})
                );
            } else {
                let width = entries.iter().map(|e| e.id.len()).max().unwrap_or(4);
                for e in &entries {
                    outln!("{:width$}  {}", e.id, e.describe());
                }
                let runs = entries
                    .iter()
                    .filter(|e| matches!(e.status, PlanStatus::Runs | PlanStatus::Pending))
                    .count();
                outln!(
                    "{} node(s): {} cached, {} to run",
                    entries.len(),
                    entries
                        .iter()
                        .filter(|e| e.status == PlanStatus::Cached)
                        .count(),
                    runs
                );
            }
            Ok(())
        }
        Command::Run(args) => {
            let wf = load_workflow(&args.wf)?;
            let opts = run_options(&args.select, args.jobs);
            // Fail early on unknown node names: nothing is written, not even the store folder.
            scorch::run::targets(&wf, &opts)?;
            let store = open_store(&args.store, Some(&wf))?;
            let cancel = CancellationToken::new();
            let c2 = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("interrupted: cancelling running nodes (Ctrl-C again to force)");
                    c2.cancel();
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            });
            let mode = if args.quiet || args.wf.json {
                Mode::Quiet
            } else {
                Mode::Auto
            };
            let reporter = Reporter::new(mode);
            reporter.line(&format!(
                "run of `{}` on {} ({} node(s))",
                wf.name,
                store.url(),
                wf.nodes.len()
            ));
            let record = run(&wf, &store, &opts, cancel, &reporter).await?;
            if args.wf.json {
                outln!("{}", serde_json::to_string(&record).unwrap_or_default());
            } else {
                print_record(&record);
                let results = scorch::summary::collect_results(&store, &record).await?;
                if !results.is_empty() {
                    outln!("\n{}", scorch::summary::results_markdown(&results));
                }
            }
            match record.status {
                RunStatus::Succeeded => Ok(()),
                RunStatus::Cancelled => Err(Failure::Cancelled),
                _ => Err(Failure::RunFailed),
            }
        }
        Command::Dag { wf: args, format } => {
            let wf = load_workflow(&args)?;
            out!("{}", draw(&wf, format));
            Ok(())
        }
        Command::Runs { store, json } => {
            let store = open_store(&store, None)?;
            let mut ids = store.list("runs").await?;
            ids.reverse();
            let mut records = Vec::new();
            for (id, _) in ids {
                if let Some(r) = store.run::<RunRecord>(&id).await? {
                    records.push(r);
                }
            }
            if json {
                outln!("{}", serde_json::to_string(&records).unwrap_or_default());
            } else if records.is_empty() {
                outln!("no runs in {}", store.url());
            } else {
                outln!(
                    "{:<24}  {:<10}  {:<16}  {:>8}  nodes",
                    "run",
                    "status",
                    "workflow",
                    "time"
                );
                for r in &records {
                    let status = effective_status(r);
                    outln!(
                        "{:<24}  {:<10}  {:<16}  {:>7.1}s  {} ran, {} cached, {} failed",
                        r.id,
                        status,
                        r.workflow,
                        r.duration_ms as f64 / 1000.0,
                        r.count(Outcome::Ran),
                        r.count(Outcome::Cached),
                        r.count(Outcome::Failed)
                    );
                }
            }
            Ok(())
        }
        Command::Show {
            run: id,
            store,
            json,
        } => {
            let store = open_store(&store, None)?;
            let record = find_run(&store, &id).await?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&record).unwrap_or_default()
                );
            } else {
                print_settings(&record);
                print_record(&record);
            }
            Ok(())
        }
        Command::Compare {
            run: id,
            store,
            baseline,
            out,
        } => {
            let store = open_store(&store, None)?;
            let record = find_run(&store, &id).await?;
            let file = PathBuf::from(&record.file);
            let wf = load(&file, &scorch::builtin::registry(), &LoadOptions::default())
                .map_err(|_| {
                    EngineError::usage(format!(
                        "the workflow file {} of run {} is needed to trace teacher cost; it is gone or no longer valid",
                        record.file, record.id
                    ))
                })?;
            let graph = scorch::compare::Graph {
                nodes: wf
                    .nodes
                    .iter()
                    .map(|n| (n.id.clone(), n.plugin.kind().to_owned()))
                    .collect(),
                inputs: wf
                    .nodes
                    .iter()
                    .map(|n| {
                        n.inputs
                            .iter()
                            .map(|e| (e.node, e.output.clone(), e.input.clone()))
                            .collect()
                    })
                    .collect(),
            };
            let arms =
                scorch::compare::compare(&store, &record, &graph, baseline.as_deref()).await?;
            let dir = out.unwrap_or_else(|| PathBuf::from(format!("compare-{}", record.id)));
            scorch::compare::write(&arms, baseline.as_deref(), &dir)?;
            out!("{}", scorch::compare::markdown(&arms, baseline.as_deref()));
            outln!("comparison written to {}", dir.display());
            Ok(())
        }
        Command::Report {
            run: id,
            store,
            out,
        } => {
            let store = open_store(&store, None)?;
            let record = find_run(&store, &id).await?;
            let file = PathBuf::from(&record.file);
            let dag = file
                .exists()
                .then(|| load(&file, &scorch::builtin::registry(), &LoadOptions::default()).ok())
                .flatten()
                .map(|wf| scorch::summary::DagDrawing {
                    mermaid: draw(&wf, DagFormat::Mermaid),
                    dot: draw(&wf, DagFormat::Dot),
                    nodes: wf
                        .nodes
                        .iter()
                        .map(|n| (n.id.clone(), n.plugin.kind().to_owned()))
                        .collect(),
                    edges: wf
                        .nodes
                        .iter()
                        .enumerate()
                        .flat_map(|(i, n)| n.inputs.iter().map(move |e| (e.node, i)))
                        .collect(),
                });
            let dir = out.unwrap_or_else(|| PathBuf::from(format!("report-{}", record.id)));
            let results = scorch::summary::write(&store, &record, dag, &dir).await?;
            out!("{}", scorch::summary::results_markdown(&results));
            outln!("report written to {}", dir.join("index.html").display());
            Ok(())
        }
        Command::Explain {
            wf: args,
            node,
            store,
        } => {
            let wf = load_workflow(&args)?;
            let store = open_store(&store, Some(&wf))?;
            explain(&wf, &store, &node).await
        }
        Command::Gc {
            store,
            dry_run,
            json,
        } => {
            let store = open_store(&store, None)?;
            let report = gc(&store, dry_run).await?;
            if json {
                outln!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                let verb = if dry_run { "would remove" } else { "removed" };
                if report.kept_for_live_runs {
                    outln!("a run is in progress: unreferenced artifacts are kept until it ends");
                }
                outln!(
                    "{verb} {} staging folder(s), {} artifact(s), {} object(s) ({} bytes) from {}",
                    report.staging_dirs.len(),
                    report.artifacts.len(),
                    report.objects.len(),
                    report.bytes,
                    store.url()
                );
            }
            Ok(())
        }
        Command::Verify { store, json } => {
            let store = open_store(&store, None)?;
            let report = verify(&store).await?;
            if json {
                outln!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                for m in &report.missing {
                    outln!("missing: {m}");
                }
                outln!(
                    "checked {} node(s), {} artifact(s), {} object(s) in {}: {} missing",
                    report.manifests,
                    report.artifacts,
                    report.objects,
                    store.url(),
                    report.missing.len()
                );
            }
            if report.missing.is_empty() {
                Ok(())
            } else {
                Err(Failure::RunFailed)
            }
        }
        Command::Plugins => {
            for p in scorch::builtin::registry().plugins() {
                outln!("{:<10} v{:<4} {}", p.kind(), p.version(), p.description());
            }
            Ok(())
        }
        Command::Schema { table } => {
            let schema = match table {
                None => scorch::spec::workflow_schema(),
                Some(kind) => scorch_api::tables::table_schemas()
                    .into_iter()
                    .find(|(k, _)| *k == kind)
                    .map(|(_, s)| s)
                    .ok_or_else(|| {
                        EngineError::usage(format!("no table kind `{kind}`; kinds: tasks, trajectories, repairs, rl_prompts"))
                    })?,
            };
            outln!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            Ok(())
        }
        Command::Serve {
            checkpoint,
            addr,
            device,
            name,
        } => crate::data::serve(&checkpoint, addr, &device, name).await,
        Command::Import { files, out } => crate::data::import(&files, &out),
        Command::ExportChat { table, out, system } => {
            crate::data::export_chat(&table, &out, &system)
        }
        Command::Tasks {
            split,
            count,
            seed,
            out,
        } => crate::data::tasks(&split, count, seed, out.as_deref()),
    }
}

async fn find_run(store: &Store, id: &str) -> Result<RunRecord, Failure> {
    let ids = store.list("runs").await?;
    let hits: Vec<&String> = ids
        .iter()
        .map(|(i, _)| i)
        .filter(|i| i.starts_with(id))
        .collect();
    let full = match hits.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(EngineError::usage(format!(
                "no run `{id}` in {}; see `scorch runs`",
                store.url()
            ))
            .into());
        }
        many => {
            return Err(EngineError::usage(format!(
                "`{id}` matches {} runs; give more of the id",
                many.len()
            ))
            .into());
        }
    };
    let record = store
        .run::<RunRecord>(&full)
        .await?
        .ok_or_else(|| EngineError::usage(format!("run `{full}` vanished")))?;
    Ok(reconcile(store, record).await?)
}

/// A run that died (its record still says running, its lease is gone) may have published
/// nodes after its last record: show them as ran.
async fn reconcile(store: &Store, mut r: RunRecord) -> Result<RunRecord, EngineError> {
    if r.status != RunStatus::Running || scorch::lease::run_live(store, &r.id).await? {
        return Ok(r);
    }
    for n in &mut r.nodes {
        if n.outcome != Outcome::Skipped {
            continue;
        }
        if let Some(key) = &n.key
            && let Some(m) = store.manifest(key).await?
        {
            n.outcome = Outcome::Ran;
            n.reason = Some("published; the run died before recording it".into());
            n.metrics = m.metrics;
        }
    }
    Ok(r)
}

fn effective_status(r: &RunRecord) -> String {
    let alive = scorch::lease::pid_alive(r.pid);
    match r.status {
        RunStatus::Running if !alive => "died".into(),
        s => serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// The run's profile and variables, one line.
fn print_settings(r: &RunRecord) {
    let vars: Vec<String> = r.vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
    outln!(
        "profile: {}; vars: {}",
        r.profile.as_deref().unwrap_or("(none)"),
        if vars.is_empty() {
            "(none)".to_owned()
        } else {
            vars.join(" ")
        }
    );
}

fn print_record(r: &RunRecord) {
    let width = r.nodes.iter().map(|n| n.id.len()).max().unwrap_or(4).max(4);
    outln!("{:width$}  {:<9}  {:>8}  detail", "node", "outcome", "time");
    for n in &r.nodes {
        let detail = n
            .error
            .clone()
            .or_else(|| n.reason.clone())
            .unwrap_or_else(|| {
                n.outputs
                    .iter()
                    .map(|(k, o)| match o.rows {
                        Some(rows) => format!("{k}: {rows} rows"),
                        None => format!("{k}: {} bytes", o.bytes),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            });
        let detail = detail.lines().next().unwrap_or("").to_owned();
        outln!(
            "{:width$}  {:<9}  {:>7.2}s  {detail}",
            n.id,
            n.outcome.to_string(),
            n.duration_ms as f64 / 1000.0
        );
    }
    outln!(
        "run {} {}: {} ran, {} cached, {} failed, {} skipped in {:.2}s",
        r.id,
        effective_status(r),
        r.count(Outcome::Ran),
        r.count(Outcome::Cached),
        r.count(Outcome::Failed),
        r.count(Outcome::Skipped) + r.count(Outcome::Cancelled),
        r.duration_ms as f64 / 1000.0
    );
    for n in r.nodes.iter().filter(|n| n.outcome == Outcome::Failed) {
        if let Some(e) = &n.error {
            eprintln!("error in node `{}`:\n{e}", n.id);
        }
    }
}

async fn explain(wf: &Workflow, store: &Store, node: &str) -> Result<(), Failure> {
    let idx = wf.index_of(node).ok_or_else(|| {
        let hint = scorch_api::did_you_mean(node, wf.nodes.iter().map(|n| n.id.as_str()))
            .map(|c| format!("; did you mean `{c}`?"))
            .unwrap_or_default();
        EngineError::usage(format!("no node `{node}` in workflow `{}`{hint}", wf.name))
    })?;
    let entries = plan(wf, store, &RunOptions::default()).await?;
    let e = &entries[idx];
    outln!(
        "node     {} ({} v{})",
        e.id,
        e.kind,
        wf.nodes[idx].plugin.version()
    );
    outln!(
        "key      {}",
        e.key
            .as_deref()
            .unwrap_or("unknown until upstream nodes run")
    );
    outln!("status   {}", e.describe());
    let mark = |changed: bool| {
        if e.last.is_none() {
            "(never ran)"
        } else if changed {
            "CHANGED"
        } else {
            "unchanged"
        }
    };
    if let Some(c) = &e.components {
        let last = e.last.as_ref();
        outln!("components:");
        outln!(
            "  format   {:<66} {}",
            c.format,
            mark(last.is_some_and(|l| l.format != c.format))
        );
        outln!(
            "  kind     {:<66} {}",
            c.kind,
            mark(last.is_some_and(|l| l.kind != c.kind))
        );
        outln!(
            "  version  {:<66} {}",
            c.version,
            mark(last.is_some_and(|l| l.version != c.version))
        );
        outln!(
            "  params   {:<66} {}",
            scorch::cache::canonical_json(&c.params),
            mark(last.is_some_and(|l| l.params != c.params))
        );
        outln!(
            "  seed     {:<66} {}",
            c.seed,
            mark(last.is_some_and(|l| l.seed != c.seed))
        );
        for (name, hash) in &c.inputs {
            let changed = last.is_some_and(|l| l.inputs.get(name) != Some(hash));
            outln!("  input {name:<3}{:<66} {}", hash, mark(changed));
        }
        if let Some(l) = last {
            let changes = c.changes_since(l);
            if !changes.is_empty() {
                outln!("changed since it last ran: {}", changes.join("; "));
            }
        }
    } else {
        for edge in &wf.nodes[idx].inputs {
            outln!(
                "  input {:<10} from `{}.{}` (not computed yet)",
                edge.input,
                wf.nodes[edge.node].id,
                edge.output
            );
        }
    }
    Ok(())
}

type NodeLine = fn(usize, &str, &str) -> String;
type EdgeLine = fn(usize, usize, &str) -> String;

fn draw(wf: &Workflow, format: DagFormat) -> String {
    // One walk over nodes and edges; the format only decides how each line looks.
    let (header, node, edge, footer): (String, NodeLine, EdgeLine, &str) = match format {
        DagFormat::Mermaid => (
            "flowchart TD\n".into(),
            |i, id, kind| format!("  n{i}[\"{id}<br/><i>{kind}</i>\"]\n"),
            |from, to, output| format!("  n{from} -->|{output}| n{to}\n"),
            "",
        ),
        DagFormat::Dot => (
            format!(
                "digraph \"{}\" {{\n  rankdir=TB;\n",
                wf.name.replace('"', "'")
            ),
            |i, id, kind| format!("  n{i} [label=\"{id}\\n({kind})\", shape=box];\n"),
            |from, to, output| format!("  n{from} -> n{to} [label=\"{output}\"];\n"),
            "}\n",
        ),
    };
    let mut out = header;
    for (i, n) in wf.nodes.iter().enumerate() {
        out.push_str(&node(i, &n.id.replace('"', "'"), n.plugin.kind()));
    }
    for (i, n) in wf.nodes.iter().enumerate() {
        for e in &n.inputs {
            out.push_str(&edge(e.node, i, &e.output));
        }
    }
    out.push_str(footer);
    out
}
