//! `serve` and `bench`: handed to `scorch-worker`, which has libtorch. A store reference in
//! place of `serve`'s checkpoint folder is fetched here first.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use scorch::model_commands::ModelCommand;
use scorch_engine::error::EngineError;

use super::{Failure, StoreArgs};

/// Replace this process with `scorch-worker`, given the same arguments (a `serve` reference
/// replaced by the folder it names).
pub(crate) async fn forward(command: ModelCommand) -> Result<(), Failure> {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let ModelCommand::Serve(a) = &command {
        let store = StoreArgs {
            store: a.store.clone(),
        };
        let local = super::export::local_path(&a.checkpoint, &store, "checkpoint").await?;
        if local != a.checkpoint {
            for arg in &mut args {
                if *arg == *a.checkpoint.as_os_str() {
                    *arg = local.clone().into_os_string();
                }
            }
        }
    }
    let program = scorch::builtin::worker_program();
    let err = std::process::Command::new(&program).args(args).exec();
    Err(Failure::Engine(EngineError::new(
        scorch_engine::error::EngineErrorKind::Io,
        format!(
            "cannot start {} ({err}); build it with `cargo build --bin scorch-worker` or set SCORCH_WORKER",
            program.display()
        ),
    )))
}
