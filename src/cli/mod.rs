//! Command-line parsing, the shared pieces of the commands (loading a workflow, opening a
//! store, finding a run) and the exit codes; one module per command.

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

mod compare;
mod dag;
mod data;
mod explain;
mod export;
mod info;
mod logs;
mod plan;
mod report;
mod run;
mod runs;
mod store;
mod ui;
mod validate;
mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scorch::exit::Exit;
use scorch_engine::error::{EngineError, EngineErrorKind, WorkflowError};
use scorch_engine::record::{Outcome, RunRecord, RunStatus};
use scorch_engine::run::RunOptions;
use scorch_engine::store::{DEFAULT_STORE, Store};
use scorch_engine::workflow::{LoadOptions, Workflow, load};
use serde_json::json;

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
        /// `FROM,TO`: give each arm's share of the gap between two arms it closes (e.g.
        /// `warm_start,teacher`), from the means across seeds.
        #[arg(long, value_name = "FROM,TO")]
        gap: Option<String>,
        /// Folder to write (default: `compare-<run id>`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print a node's log from a run (`--follow`: as it grows, until the node is done).
    Logs {
        /// Run id (a unique prefix is enough).
        run: String,
        /// Node id (`eval_warm[split=test]`).
        node: String,
        #[command(flatten)]
        store: StoreArgs,
        /// Keep printing while the node runs.
        #[arg(long, short)]
        follow: bool,
    },
    /// Serve a live web view of the store's runs: each run's DAG with node states as they
    /// change, metric curves, logs, an artifact browser and an experiment's comparison.
    Ui {
        #[command(flatten)]
        store: StoreArgs,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8765")]
        addr: std::net::SocketAddr,
    },
    /// Remove staging leftovers, unreferenced artifacts and objects, and saved states no rerun
    /// resumes from
    Gc {
        #[command(flatten)]
        store: StoreArgs,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also remove the saved state of nodes that were interrupted and have not finished
        /// since (a rerun would start them over)
        #[arg(long)]
        interrupted: bool,
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
    /// List the built-in node kinds, or describe one: its params (type, default, what for),
    /// inputs and outputs.
    Plugins {
        /// A node kind (`sft`, `rollout`, ...).
        kind: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import the method's reference JSONL files into trajectory and repair tables.
    Import {
        /// Reference files: JSONL trajectories or mentored-solving records with repairs, or an
        /// RL prompt file (`math_mps_rl.json`, a JSON array).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Folder for `trajectories.parquet` and `repairs.parquet` (and, from an RL prompt file,
        /// `tasks.parquet` and `rl_prompts.parquet`).
        #[arg(long)]
        out: PathBuf,
    },
    /// Write outputs of a run as plain files: tables as `.parquet`, checkpoints as HF folders.
    Export {
        /// `RUN:NODE[.OUTPUT]`, or `NODE[.OUTPUT]` for the newest run with it.
        reference: String,
        /// The folder to write into.
        #[arg(long)]
        out: PathBuf,
        /// A LoRA adapter output is written merged into its base: a whole HF model folder.
        #[arg(long, requires = "base")]
        merge: bool,
        /// With `--merge`: the adapter's base, a folder or a reference (its content hash must
        /// be the one the adapter records).
        #[arg(long, requires = "merge")]
        base: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Export a trajectories table to multi-turn chat JSON lines (LLaMA-Factory, TRL).
    ExportChat {
        /// A trajectories Parquet file, or a store reference (`RUN:NODE[.OUTPUT]`, `NODE[.OUTPUT]`;
        /// the `trajectories` output by default).
        table: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// The JSONL file to write.
        #[arg(long)]
        out: PathBuf,
        /// System prompt of every conversation.
        #[arg(long, default_value = scorch_agent::format::PYTHON_SYSTEM)]
        system: String,
        /// `messages` (OpenAI/TRL), `sharegpt` (LLaMA-Factory), both in scorch's text, or
        /// `reference` (LLaMA-Factory sharegpt in the SCoRe reference code's own layout: use it
        /// to reproduce the paper with its LLaMA-Factory recipe).
        #[arg(long, value_enum, default_value_t = ChatFormatArg::Messages)]
        format: ChatFormatArg,
        /// Only trajectories whose final answer is right (what the reference code exports).
        #[arg(long)]
        only_correct: bool,
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
    /// `serve` and `bench`, which run in `scorch-worker`.
    #[command(flatten)]
    Model(scorch::model_commands::ModelCommand),
    /// Run one node attempt of a run as a cluster job (what the Slurm executor submits).
    #[command(hide = true)]
    NodeJob {
        /// The run's store.
        #[arg(long)]
        store: String,
        /// The run.
        run: String,
        /// The node.
        node: String,
    },
    /// Print the JSON Schema of workflow files, or of a table kind's rows.
    Schema {
        /// A table kind (`tasks`, `trajectories`, `repairs`, `rl_prompts`, `results`, `train_steps`, `rl_groups`).
        #[arg(long)]
        table: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ChatFormatArg {
    Messages,
    Sharegpt,
    Reference,
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
    /// Print JSON: one document; for `run`, one event per line, ending with the run record.
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
    /// Run at most N nodes at once here (default: the number of cores); cluster jobs are not
    /// counted.
    #[arg(short = 'j', long)]
    jobs: Option<usize>,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
    /// Report to a tracker as the run goes: `tensorboard=DIR` or `mlflow=URI` (repeatable;
    /// replaces the workflow's `trackers:` entry of that kind).
    #[arg(long = "tracker", value_name = "KIND=WHERE")]
    trackers: Vec<String>,
}

/// Why the command stopped.
pub(crate) enum Failure {
    Workflow(WorkflowError, bool),
    Engine(EngineError),
    RunFailed,
    Cancelled,
    /// `scorch-worker` failed and said why: exit as it did.
    Worker(Exit),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Self::Engine(e)
    }
}

/// Entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(runtime) = scorch::start::start() else {
        return Exit::Failed.into();
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Workflow(e, as_json)) => {
            if as_json {
                outln!("{}", workflow_error_json(&e));
            } else {
                eprint!("{}", crate::diagnostics::render(&e));
                eprintln!("error: {} problem(s) in {}", e.diagnostics.len(), e.file);
            }
            Exit::Usage.into()
        }
        Err(Failure::Engine(e)) => {
            eprintln!("error: {e}");
            if e.kind == EngineErrorKind::Usage {
                Exit::Usage.into()
            } else {
                Exit::Failed.into()
            }
        }
        Err(Failure::RunFailed) => Exit::Failed.into(),
        Err(Failure::Cancelled) => Exit::Cancelled.into(),
        Err(Failure::Worker(exit)) => exit.into(),
    }
}

fn workflow_error_json(e: &WorkflowError) -> serde_json::Value {
    json!({
        "ok": false,
        "file": e.file,
        "errors": diagnostics_json(&e.diagnostics),
    })
}

/// Diagnostics (errors or warnings) as JSON objects.
fn diagnostics_json(diagnostics: &[scorch_engine::error::Diagnostic]) -> Vec<serde_json::Value> {
    diagnostics
        .iter()
        .map(|d| {
            json!({
                "code": d.kind.code(),
                "message": d.message,
                "path": d.path,
                "line": d.span.map(|s| s.line),
                "column": d.span.map(|s| s.column),
                "hint": d.hint,
            })
        })
        .collect()
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
        hardware: None,
    };
    let wf = load(&args.workflow, &scorch::builtin::registry(), &options)
        .map_err(|e| Failure::Workflow(e, args.json))?;
    // With `--json` the warnings are part of what `validate` prints.
    if !args.json && !wf.warnings.is_empty() {
        eprint!("{}", crate::diagnostics::render_warnings(&wf));
    }
    Ok(wf)
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
        Command::Validate(args) => validate::validate(&args),
        Command::Plan(args) => plan::plan_cmd(args).await,
        Command::Run(args) => run::run_cmd(args).await,
        Command::Dag { wf: args, format } => {
            let wf = load_workflow(&args)?;
            out!("{}", dag::draw(&wf, format));
            Ok(())
        }
        Command::Runs { store, json } => runs::runs(store, json).await,
        Command::Show {
            run: id,
            store,
            json,
        } => runs::show(id, store, json).await,
        Command::Compare {
            run: id,
            store,
            baseline,
            gap,
            out,
        } => compare::compare(id, store, baseline, gap, out).await,
        Command::Report {
            run: id,
            store,
            out,
        } => report::report(id, store, out).await,
        Command::Explain {
            wf: args,
            node,
            store,
        } => {
            let wf = load_workflow(&args)?;
            let store = open_store(&store, Some(&wf))?;
            explain::explain(&wf, &store, &node).await
        }
        Command::Gc {
            store,
            dry_run,
            interrupted,
            json,
        } => {
            let options = scorch_engine::gc::GcOptions {
                dry_run,
                interrupted,
            };
            store::gc_cmd(store, options, json).await
        }
        Command::Logs {
            run,
            node,
            store,
            follow,
        } => logs::logs(run, node, store, follow).await,
        Command::Ui { store, addr } => ui::ui(store, addr).await,
        Command::Verify { store, json } => store::verify_cmd(store, json).await,
        Command::Plugins { kind, json } => info::plugins(kind.as_deref(), json),
        Command::Schema { table } => info::schema(table),
        Command::Model(command) => worker::forward(command).await,
        // `--merge` and `--base` come together (clap requires each of the other).
        Command::Export {
            reference,
            out,
            merge: _,
            base,
            store,
        } => match base {
            Some(base) => export::export_merged(reference, out, base, store).await,
            None => export::export(reference, out, store).await,
        },
        Command::Import { files, out } => data::import(&files, &out),
        Command::NodeJob { store, run, node } => worker::node_job(&store, &run, &node).await,
        Command::ExportChat {
            table,
            store,
            out,
            system,
            format,
            only_correct,
        } => {
            let table = export::local_path(&table, &store, "trajectories").await?;
            let format = match format {
                ChatFormatArg::Messages => scorch_agent::export::ChatExport::Messages,
                ChatFormatArg::Sharegpt => scorch_agent::export::ChatExport::Sharegpt,
                ChatFormatArg::Reference => scorch_agent::export::ChatExport::Reference,
            };
            data::export_chat(&table, &out, &system, format, only_correct)
        }
        Command::Tasks {
            split,
            count,
            seed,
            out,
        } => data::tasks(&split, count, seed, out.as_deref()),
    }
}

async fn find_run(store: &Store, id: &str) -> Result<RunRecord, Failure> {
    let ids = store.list(scorch_engine::layout::RUNS).await?;
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
    if r.status != RunStatus::Running || scorch_engine::lease::run_live(store, &r.id).await? {
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
    let alive = scorch_engine::lease::pid_alive(r.pid);
    match r.status {
        RunStatus::Running if !alive => "died".into(),
        s => serde_json::to_value(s)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    }
}

/// A node's memory plan in one line.
fn memory_line(m: &Result<scorch_api::MemoryPlan, scorch_api::memory::PlanError>) -> String {
    match m {
        Ok(plan) => plan.describe(),
        Err(why) => format!("not planned: {why}"),
    }
}

/// A node's memory plan for `--json`.
fn memory_json(
    m: &Result<scorch_api::MemoryPlan, scorch_api::memory::PlanError>,
) -> serde_json::Value {
    match m {
        Ok(plan) => serde_json::json!(plan),
        Err(why) => serde_json::json!({"unknown": why.to_string()}),
    }
}
