//! `serve` and `bench`: handed to `scorch-worker`, which has libtorch.

use std::os::unix::process::CommandExt;

use scorch_engine::error::EngineError;

use super::Failure;

/// Replace this process with `scorch-worker`, given the same arguments.
pub(crate) fn forward() -> Result<(), Failure> {
    let program = scorch::builtin::worker_program();
    let err = std::process::Command::new(&program)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(Failure::Engine(EngineError::new(
        scorch_engine::error::EngineErrorKind::Io,
        format!(
            "cannot start {} ({err}); build it with `cargo build --bin scorch-worker` or set SCORCH_WORKER",
            program.display()
        ),
    )))
}
