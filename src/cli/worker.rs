//! `serve` and `bench`: handed to `scorch-worker`, which has libtorch. A store reference in
//! place of `serve`'s checkpoint folder (or its adapter's `--base`) is fetched here first.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use scorch::model_commands::ModelCommand;
use scorch_engine::error::EngineError;

use super::{Failure, StoreArgs};

/// glibc's variable for a fixed mmap threshold.
const MMAP_THRESHOLD: &str = "MALLOC_MMAP_THRESHOLD_";

/// Replace this process with `scorch-worker`, given the same arguments (a `serve` reference
/// replaced by the folder it names).
pub(crate) async fn forward(command: ModelCommand) -> Result<(), Failure> {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let ModelCommand::Serve(a) = &command {
        let store = StoreArgs {
            store: a.store.clone(),
        };
        for given in std::iter::once(&a.checkpoint).chain(a.base.as_ref()) {
            let local = super::export::local_path(given, &store, "checkpoint").await?;
            if local != *given {
                for arg in &mut args {
                    if *arg == *given.as_os_str() {
                        *arg = local.clone().into_os_string();
                    }
                }
            }
        }
    }
    let program = scorch::builtin::worker_program();
    let mut cmd = std::process::Command::new(&program);
    if matches!(command, ModelCommand::Bench(_)) && std::env::var_os(MMAP_THRESHOLD).is_none() {
        // glibc raises its mmap threshold as blocks are freed and then keeps freed tensors in
        // its heap: the process's peak RSS would count memory no tensor holds. A fixed
        // threshold returns every block over 64 KiB at free, so the peak that `bench train`
        // reports is the tensors' (the memory plan's measure).
        cmd.env(MMAP_THRESHOLD, "65536");
    }
    let err = cmd.args(args).exec();
    Err(Failure::Engine(EngineError::new(
        scorch_engine::error::EngineErrorKind::Io,
        format!(
            "cannot start {} ({err}); build it with `cargo build --bin scorch-worker` or set SCORCH_WORKER",
            program.display()
        ),
    )))
}

/// `scorch node-job`: one node attempt of a run, as a cluster job. SIGTERM (what `scancel`
/// and a time limit send first) cancels the node; the exit code says whether it succeeded.
pub(crate) async fn node_job(store: &str, run: &str, node: &str) -> Result<(), Failure> {
    let cancel = tokio_util::sync::CancellationToken::new();
    let on_term = cancel.clone();
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::spawn(async move {
            term.recv().await;
            on_term.cancel();
        });
    }
    let registry = scorch::builtin::registry();
    if scorch_engine::cluster::serve(&registry, store, run, node, cancel).await {
        Ok(())
    } else {
        Err(Failure::RunFailed)
    }
}
