//! `scorch-worker`: the half of scorch that links libtorch. The engine (`scorch`) runs each
//! node of a kind that needs a model here (`scorch-worker node JOB_FILE`, see
//! `scorch_engine::worker`), and hands over the commands that need one (`serve`, `bench`).

mod bench;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
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
    #[command(flatten)]
    Model(ModelCommand),
}

/// Why a command failed: bad input (exit 2) or a failure while running (exit 1).
#[derive(Debug)]
pub(crate) enum Failure {
    Usage(String),
    Failed(String),
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
    let ck =
        scorch_model::checkpoint::Checkpoint::load(&a.checkpoint, device, kind).map_err(usage)?;
    let name = a.name.unwrap_or_else(|| {
        a.checkpoint
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "student".into())
    });
    eprintln!(
        "serving {} as `{name}` on {device:?}",
        a.checkpoint.display()
    );
    scorch_model::serve::serve(scorch_model::local::LocalModel::new(&name, ck), a.addr)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))
}

#[global_allocator]
static ALLOCATOR: scorch_alloc::Allocator = scorch_alloc::Allocator;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(runtime) = scorch::start::start() else {
        return ExitCode::from(1);
    };
    let result = match cli.command {
        Command::Node { job } => {
            let ok = runtime.block_on(scorch_engine::worker::serve_job(&registry(), &job));
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
        }
        Command::Model(ModelCommand::Serve(a)) => runtime.block_on(serve(a)),
        Command::Model(ModelCommand::Bench(b)) => bench::bench(b),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(1)
        }
    }
}
