//! `scorch run`: run a workflow, print its record and SCoRe's results table; the record's
//! printing is shared with `scorch show`.

use std::sync::Arc;

use scorch_engine::error::EngineError;
use scorch_engine::events::JsonLines;
use scorch_engine::progress::{Mode, Reporter};
use scorch_engine::record::{Outcome, RunRecord, RunStatus};
use scorch_engine::run::run;
use tokio_util::sync::CancellationToken;

use super::{Failure, RunArgs, effective_status, load_workflow, open_store, run_options};

pub(super) async fn run_cmd(args: RunArgs) -> Result<(), Failure> {
    let wf = load_workflow(&args.wf)?;
    let opts = run_options(&args.select, args.jobs);
    // Fail early on unknown node names: nothing is written, not even the store folder.
    scorch_engine::run::targets(&wf, &opts)?;
    let store = open_store(&args.store, Some(&wf))?;
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    // Ctrl-C, or SIGTERM (what `timeout`, a cluster scheduler or a service manager sends),
    // cancels the running nodes (and their cluster jobs); a second Ctrl-C forces the exit.
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        let interrupted = tokio::select! {
            r = tokio::signal::ctrl_c() => r.is_ok(),
            () = term => true,
        };
        if interrupted {
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
    let mut reporter = Reporter::new(mode);
    if args.wf.json {
        reporter = reporter.with_observer(Arc::new(JsonLines));
    }
    let trackers = scorch_track::with_flags(&wf.trackers, &args.trackers)
        .map_err(|e| EngineError::usage(e.to_string()))?;
    for tracker in scorch_track::start(&trackers, &wf.name, &store)
        .await
        .map_err(|e| EngineError::usage(e.to_string()))?
    {
        reporter = reporter.with_observer(tracker);
    }
    reporter.line(&format!(
        "run of `{}` on {} ({} node(s))",
        wf.name,
        store.url(),
        wf.nodes.len()
    ));
    let record = run(&wf, &store, &opts, cancel, &reporter).await?;
    // With `--json` the record was the last event printed.
    if !args.wf.json {
        print_record(&record);
        let results = scorch_report::summary::collect_results(&store, &record).await?;
        if !results.is_empty() {
            outln!("\n{}", scorch_report::summary::results_markdown(&results));
        }
        let trends = scorch_report::trend::collect_reward_trends(&store, &record).await?;
        if !trends.is_empty() {
            outln!("{}", scorch_report::trend::trends_markdown(&trends));
        }
    }
    match record.status {
        RunStatus::Succeeded => Ok(()),
        RunStatus::Cancelled => Err(Failure::Cancelled),
        _ => Err(Failure::RunFailed),
    }
}

/// The run's profile and variables, one line.
pub(super) fn print_settings(r: &RunRecord) {
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

pub(super) fn print_record(r: &RunRecord) {
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
