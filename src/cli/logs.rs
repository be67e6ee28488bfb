//! `scorch logs RUN NODE [--follow]`: a node's log. A finished node's log is kept in the store
//! with secrets redacted; a running node's grows in the work folder of the machine that runs
//! it, and `--follow` prints it as it grows, until the node is done.

use std::time::Duration;

use scorch_api::did_you_mean;
use scorch_engine::error::EngineError;
use scorch_engine::interp::Secrets;
use scorch_engine::record::{Outcome, RunRecord, RunStatus};
use scorch_engine::store::{NodeFile, Store};
use scorch_engine::workflow::{LoadOptions, load};

use super::{Failure, StoreArgs, find_run, open_store};

/// Whether the node may still write to its log: the run is alive and the node not done.
fn running(record: &RunRecord, node: &str) -> bool {
    record.status == RunStatus::Running
        && scorch_engine::lease::pid_alive(record.pid)
        && record
            .nodes
            .iter()
            .find(|n| n.id == node)
            .is_some_and(|n| matches!(n.outcome, Outcome::Skipped | Outcome::Running))
}

/// The secrets of the run's workflow as this process sees them (the same `${env.…}` values
/// when run beside it), to redact a live log as the kept one is.
pub(crate) fn secrets_of(record: &RunRecord) -> Option<Secrets> {
    let options = LoadOptions::default();
    load(
        std::path::Path::new(&record.file),
        &scorch::builtin::registry(),
        &options,
    )
    .ok()
    .map(|wf| wf.secrets)
}

/// The complete lines of a log that is still being written. Only whole lines are redacted
/// and shown: a secret cut at the end of a read would not be recognised.
pub(crate) fn complete_lines(text: &str) -> &str {
    text.rfind('\n').map_or("", |i| &text[..=i])
}

pub(crate) async fn logs(
    id: String,
    node: String,
    store: StoreArgs,
    follow: bool,
) -> Result<(), Failure> {
    let store = open_store(&store, None)?;
    let mut record = find_run(&store, &id).await?;
    if !record.nodes.iter().any(|n| n.id == node) {
        let prefix = format!("{node}[");
        let instances: Vec<&str> = record
            .nodes
            .iter()
            .map(|n| n.id.as_str())
            .filter(|id| id.starts_with(&prefix))
            .collect();
        let hint = if instances.is_empty() {
            did_you_mean(&node, record.nodes.iter().map(|n| n.id.as_str()))
                .map(|c| format!("; did you mean `{c}`?"))
                .unwrap_or_default()
        } else {
            format!("; it ran as `{}`", instances.join("`, `"))
        };
        return Err(
            EngineError::usage(format!("run {} has no node `{node}`{hint}", record.id)).into(),
        );
    }
    // Lines printed from the live log: the kept log has the same lines (redaction changes
    // bytes within a line, never the count).
    let mut printed = 0usize;
    let mut secrets = None;
    let mut last_look = false;
    loop {
        if let Some(text) = store.node_file(&record.id, &node, NodeFile::Log).await? {
            for line in text.split_inclusive('\n').skip(printed) {
                out!("{line}");
            }
            return Ok(());
        }
        let live = store.live_node_file(&record.id, &node, NodeFile::Log);
        if follow && live.exists() {
            let secrets = secrets.get_or_insert_with(|| secrets_of(&record));
            let Some(secrets) = secrets.as_ref() else {
                return Err(EngineError::usage(format!(
                    "cannot read {} to redact its secrets from the live log; `scorch logs` \
                     prints the log once the node is done",
                    record.file
                ))
                .into());
            };
            if let Ok(bytes) = std::fs::read(&live) {
                let text = String::from_utf8_lossy(&bytes);
                for line in complete_lines(&text).split_inclusive('\n').skip(printed) {
                    out!("{}", secrets.redact_str(line));
                    printed += 1;
                }
            }
        }
        if !follow || last_look {
            return Err(not_there(&store, &record, &node, follow));
        }
        // Once the node is done, look once more: its log is kept before it is recorded done.
        last_look = !running(&record, &node);
        tokio::time::sleep(Duration::from_millis(300)).await;
        record = find_run(&store, &record.id).await?;
    }
}

fn not_there(store: &Store, record: &RunRecord, node: &str, follow: bool) -> Failure {
    let outcome = record
        .nodes
        .iter()
        .find(|n| n.id == node)
        .map(|n| n.outcome);
    let why = match outcome {
        Some(Outcome::Cached) => "it was cached in that run (see the run that computed it)",
        Some(Outcome::Skipped | Outcome::Running)
            if record.status == RunStatus::Running && !follow =>
        {
            "it has not finished; `--follow` prints its log as it grows"
        }
        Some(Outcome::Skipped) => "it did not run",
        _ => "none was kept",
    };
    EngineError::usage(format!(
        "no log of `{node}` in run {} ({}): {why}",
        record.id,
        store.url()
    ))
    .into()
}
