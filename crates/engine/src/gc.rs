//! `gc`: remove what no published node needs — staging folders of dead runs, unreferenced
//! artifacts and objects, and saved states of nodes that have finished since (or, when asked,
//! of interrupted nodes too).

use std::collections::{BTreeMap, BTreeSet};

use scorch_api::resume::StateStore;
use serde::Serialize;

use crate::error::EngineError;
use crate::layout::{self, ARTIFACTS, NODES, OBJECTS, STATES};
use crate::store::Store;

/// What `gc` removes besides what it always removes.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcOptions {
    /// Only report what would be removed.
    pub dry_run: bool,
    /// Also remove the saved states of nodes that were interrupted and have not finished
    /// since: they would start over instead of resuming.
    pub interrupted: bool,
}

/// What `gc` found (and removed, unless it was a dry run).
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Staging folders of runs that are no longer alive.
    pub staging_dirs: Vec<String>,
    /// Artifacts no manifest refers to.
    pub artifacts: Vec<String>,
    /// Objects no artifact refers to.
    pub objects: Vec<String>,
    /// Bytes of the removed objects.
    pub bytes: u64,
    /// Cache keys whose saved state (`resume/<key>/`) was removed: the node has a manifest
    /// (its state outlived it), or it was interrupted and `interrupted` was asked for.
    pub states: Vec<String>,
    /// Bytes of the removed states.
    pub state_bytes: u64,
    /// Cache keys of interrupted nodes whose saved state was kept (a rerun resumes from it).
    pub kept_states: Vec<String>,
    /// Bytes of the kept states.
    pub kept_state_bytes: u64,
    /// Nodes of live runs were staging: unreferenced objects were kept, since they may be
    /// theirs, not yet published.
    pub kept_for_live_runs: bool,
}

/// Remove staging leftovers of dead runs, unreferenced artifacts and objects, and saved
/// states no rerun would resume from.
///
/// gc holds the store's `gc.lock` while it works and sweeps nothing while any run holds a
/// live lease (see [`crate::lease`]), so it never removes what a live run has published, is
/// about to publish, or is saving its state into.
pub async fn gc(store: &Store, options: GcOptions) -> Result<GcReport, EngineError> {
    let lock = crate::lease::GcLock::acquire(store).await?;
    let report = sweep(store, options).await;
    let released = lock.release().await;
    let report = report?;
    released?;
    Ok(report)
}

async fn sweep(store: &Store, options: GcOptions) -> Result<GcReport, EngineError> {
    let dry_run = options.dry_run;
    let mut report = GcReport::default();
    let staging = layout::staging_root(store.work_dir());
    if let Ok(entries) = std::fs::read_dir(&staging) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Staging folders are named `<pid>-<uuid>`: keep those of live processes.
            let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
            if pid.is_some_and(crate::lease::pid_alive) {
                report.kept_for_live_runs = true;
                continue;
            }
            if !dry_run {
                std::fs::remove_dir_all(entry.path()).map_err(|e| {
                    EngineError::io(format!("removing {}", entry.path().display()), e)
                })?;
            }
            report.staging_dirs.push(name);
        }
    }
    if !crate::lease::live_runs(store).await?.is_empty() {
        report.kept_for_live_runs = true;
    }
    if report.kept_for_live_runs {
        return Ok(report);
    }
    let mut live_artifacts = BTreeSet::new();
    let mut published = BTreeSet::new();
    for (key, _) in store.list(NODES).await? {
        if let Some(m) = store.manifest(&key).await? {
            live_artifacts.extend(m.outputs.into_values());
            published.insert(key);
        }
    }
    let mut live_objects = BTreeSet::new();
    for (hash, _) in store.list(ARTIFACTS).await? {
        if live_artifacts.contains(&hash) {
            live_objects.extend(
                store
                    .artifact(&hash)
                    .await?
                    .files
                    .into_iter()
                    .map(|f| f.object),
            );
        } else {
            if !dry_run {
                store.delete(&layout::artifact(&hash)).await?;
            }
            report.artifacts.push(hash);
        }
    }
    for (hash, size) in store.list(OBJECTS).await? {
        if !live_objects.contains(&hash) {
            if !dry_run {
                store.delete(&layout::object(&hash)).await?;
            }
            report.bytes += size;
            report.objects.push(hash);
        }
    }
    sweep_states(store, options, &published, &mut report).await?;
    Ok(report)
}

/// Saved states (`resume/<key>/...`): a published node's is left over (the run that
/// published it was stopped before removing it); an interrupted node's is kept unless
/// `options.interrupted`.
async fn sweep_states(
    store: &Store,
    options: GcOptions,
    published: &BTreeSet<String>,
    report: &mut GcReport,
) -> Result<(), EngineError> {
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    for (name, size) in store.list(STATES).await? {
        let key = name.split('/').next().unwrap_or(&name).to_owned();
        *states.entry(key).or_default() += size;
    }
    for (key, bytes) in states {
        if !published.contains(&key) && !options.interrupted {
            report.kept_states.push(key);
            report.kept_state_bytes += bytes;
            continue;
        }
        if !options.dry_run {
            let state = StateStore::new(
                store.objects(),
                layout::states(&key),
                tokio::runtime::Handle::current(),
            );
            state.clear().await.map_err(|e| {
                EngineError::store(
                    format!("removing the saved state {}", layout::states(&key)),
                    e,
                )
            })?;
        }
        report.states.push(key);
        report.state_bytes += bytes;
    }
    Ok(())
}
