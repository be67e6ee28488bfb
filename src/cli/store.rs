//! `scorch gc` and `scorch verify`: a store's upkeep.

use scorch_engine::gc::{GcOptions, gc};
use scorch_engine::store::verify;

use super::{Failure, StoreArgs, open_store};

pub(super) async fn gc_cmd(
    store: StoreArgs,
    options: GcOptions,
    json: bool,
) -> Result<(), Failure> {
    let store = open_store(&store, None)?;
    let report = gc(&store, options).await?;
    if json {
        outln!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        let verb = if options.dry_run {
            "would remove"
        } else {
            "removed"
        };
        if report.kept_for_live_runs {
            outln!("a run is in progress: unreferenced artifacts are kept until it ends");
        }
        outln!(
            "{verb} {} staging folder(s), {} artifact(s), {} object(s) ({} bytes), {} saved state(s) ({} bytes) from {}",
            report.staging_dirs.len(),
            report.artifacts.len(),
            report.objects.len(),
            report.bytes,
            report.states.len(),
            report.state_bytes,
            store.url()
        );
        if !report.kept_states.is_empty() {
            outln!(
                "kept the saved state of {} interrupted node(s) ({} bytes): a rerun resumes from it; `--interrupted` removes it",
                report.kept_states.len(),
                report.kept_state_bytes
            );
        }
    }
    Ok(())
}

pub(super) async fn verify_cmd(store: StoreArgs, json: bool) -> Result<(), Failure> {
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
