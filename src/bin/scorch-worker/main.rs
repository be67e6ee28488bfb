//! `scorch-worker`: the half of scorch that links libtorch. The engine (`scorch`) runs each
//! node of a kind that needs a model here (`scorch-worker node JOB_FILE`, see
//! `scorch_engine::worker`), and hands over the commands that need one (`serve`, `bench`).

mod bench;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scorch::exit::Exit;
use scorch::model_commands::{ModelCommand, ServeArgs};
use scorch_api::Registry;

/// scorch's model worker (started by `scorch`; see `scorch --help`).
#[derive(Debug, Parser)]
#[command(name = "scorch-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node from a job file that the engine wrote, reporting on stdout.
    Node {
        /// The job file.
        job: PathBuf,
    },
    /// Merge a LoRA adapter folder into its base and save a whole HF model folder (what
    /// `scorch export --merge` runs).
    #[command(hide = true)]
    MergeAdapter {
        /// The adapter folder.
        adapter: PathBuf,
        /// The base folder the adapter records.
        #[arg(long)]
        base: PathBuf,
        /// The folder to write (it must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    #[command(flatten)]
    Model(ModelCommand),
}

/// Why a command failed: bad input (exit 2) or a failure while running (exit 1).
#[derive(Debug)]
pub(crate) enum Failure {
    Usage(String),
    Failed(String),
}

/// Merge into a folder beside `out`, renamed into place: a failure leaves nothing half-written.
fn merge_adapter(adapter: &Path, base: &Path, out: &Path) -> Result<(), Failure> {
    let usage = |e: scorch_model::ModelError| Failure::Usage(e.to_string());
    let merged = scorch_model::checkpoint::merged(adapter, base).map_err(usage)?;
    let parent = out.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::tempdir_in(parent)
        .map_err(|e| Failure::Failed(format!("writing into {}: {e}", parent.display())))?;
    merged
        .save(tmp.path())
        .map_err(|e| Failure::Failed(e.to_string()))?;
    std::fs::rename(tmp.keep(), out)
        .map_err(|e| Failure::Failed(format!("writing {}: {e}", out.display())))
}

/// The node kinds that need libtorch.
fn registry() -> Registry {
    Registry::new()
        .with(scorch_rollout::Rollout)
        .with(scorch_sft::Sft)
        .with(scorch_eval::Eval)
        .with(scorch_correct::Correct)
        .with(scorch_rl::Rl)
}

async fn serve(a: ServeArgs) -> Result<(), Failure> {
    let usage = |e: scorch_model::ModelError| Failure::Usage(e.to_string());
    let (device, kind) = scorch_model::pick_device(&a.device).map_err(usage)?;
    // An adapter is merged into its base: served at the base's cost.
    let mut ck = scorch_model::checkpoint::Checkpoint::load_model(
        &a.checkpoint,
        a.base.as_deref(),
        device,
        kind,
    )
    .map_err(usage)?;
    let adapter = ck.adapter.is_some();
    ck.merge_adapter();
    let name = a.name.unwrap_or_else(|| {
        a.checkpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "student".into())
    });
    match (&a.base, adapter) {
        (Some(base), true) => eprintln!(
            "serving {} on {} as `{name}` on {device:?}",
            a.checkpoint.display(),
            base.display()
        ),
        _ => eprintln!(
            "serving {} as `{name}` on {device:?}",
            a.checkpoint.display()
        ),
    }
    // Adapters loaded at runtime go onto the served base: `--base` for an adapter, else
    // the checkpoint itself.
    let base = a.base.clone().or_else(|| Some(a.checkpoint.clone()));
    let models = scorch_model::adapters::Adapters::new(
        &name,
        scorch_model::local::LocalModel::new(&name, ck),
        base,
        device,
        kind,
    );
    scorch_model::serve::serve(models, a.addr)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))
}

#[global_allocator]
static ALLOCATOR: scorch_alloc::Allocator = scorch_alloc::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(runtime) = scorch::start::start() else {
        return Exit::Failed.into();
    };
    let result = match cli.command {
        Command::Node { job } => {
            // The threads the engine granted this node (its cpu slots), for both of
            // libtorch's pools. Granted every core (the default), libtorch keeps the pools it
            // sizes itself, so a default run computes exactly as before.
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as i32);
            if let Some(n) = std::env::var(scorch_engine::worker::THREADS_ENV)
                .ok()
                .and_then(|v| v.parse::<i32>().ok())
                .filter(|n| *n > 0)
            {
                if n < cores {
                    scorch_model::set_threads(n);
                }
                eprintln!("scorch-worker uses {} thread(s)", n.min(cores));
            }
            let ok = runtime.block_on(scorch_engine::worker::serve_job(&registry(), &job));
            return if ok {
                ExitCode::SUCCESS
            } else {
                Exit::Failed.into()
            };
        }
        Command::MergeAdapter { adapter, base, out } => merge_adapter(&adapter, &base, &out),
        Command::Model(ModelCommand::Serve(a)) => runtime.block_on(serve(a)),
        Command::Model(ModelCommand::Bench(b)) => bench::bench(b, &runtime),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            Exit::Usage.into()
        }
        Err(Failure::Failed(m)) => {
            eprintln!("error: {m}");
            Exit::Failed.into()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    /// `scorch` declares the libtorch kinds and hands them to this binary; this binary runs
    /// them. The two lists are kept in two places (so that `scorch` links no libtorch): they
    /// must name the same kinds, at the same versions, with the same params.
    #[test]
    fn the_worker_runs_exactly_the_kinds_scorch_hands_it() {
        let scorch = scorch::builtin::registry();
        let worker = super::registry();
        let handed: BTreeSet<&str> = scorch
            .plugins()
            .filter(|p| p.in_worker())
            .map(|p| p.kind())
            .collect();
        let runs: BTreeSet<&str> = worker.kinds().collect();
        assert_eq!(handed, runs);
        for kind in runs {
            let (declared, run) = (scorch.get(kind).unwrap(), worker.get(kind).unwrap());
            assert_eq!(declared.version(), run.version(), "{kind}");
            assert_eq!(declared.description(), run.description(), "{kind}");
            assert_eq!(declared.params_schema(), run.params_schema(), "{kind}");
        }
    }
}
