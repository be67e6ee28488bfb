//! The scheduler: one dispatcher task owns the run state, starts ready nodes within the
//! job and resource-slot limits, and turns node results into the run record.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use scorch_api::{PluginError, PluginErrorKind};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::attempt::Attempt;
use crate::cache::{CACHE_FORMAT, KeyComponents};
use crate::cluster::ClusterJob;
use crate::dag;
use crate::error::{EngineError, EngineErrorKind};
use crate::events::{Event, MetricsFiles};
use crate::progress::Reporter;
use crate::record::{
    NodeRecord, Outcome, OutputRecord, RunRecord, RunStatus, new_run_id, now_rfc3339,
};
use crate::spec::ExecutorSpec;
use crate::store::{ArtifactKind, NodeFile, NodeManifest, Store};
use crate::workflow::{Node, Workflow};

/// What to run and how.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// At most this many nodes at once on this machine (cluster jobs are the cluster's to
    /// schedule).
    pub jobs: usize,
    /// Run only these nodes (their inputs must be cached).
    pub only: Vec<String>,
    /// Run these nodes and everything downstream of them.
    pub from: Vec<String>,
    /// Recompute these nodes even when cached.
    pub force: Vec<String>,
    /// First retry delay; doubles each retry.
    pub retry_backoff: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            jobs: 1,
            only: Vec::new(),
            from: Vec::new(),
            force: Vec::new(),
            retry_backoff: Duration::from_millis(500),
        }
    }
}

/// Node ids named on the command line, checked: `Err` names the unknown one.
pub fn select(wf: &Workflow, names: &[String]) -> Result<Vec<usize>, EngineError> {
    names
        .iter()
        .map(|name| {
            let hits: Vec<usize> = (0..wf.nodes.len())
                .filter(|&i| wf.nodes[i].id == *name || wf.nodes[i].base == *name)
                .collect();
            if hits.is_empty() {
                let hint = scorch_api::did_you_mean(name, wf.nodes.iter().map(|n| n.id.as_str()))
                    .map(|c| format!("; did you mean `{c}`?"))
                    .unwrap_or_default();
                Err(EngineError::usage(format!(
                    "no node `{name}` in workflow `{}`{hint}",
                    wf.name
                )))
            } else {
                Ok(hits)
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|v| v.into_iter().flatten().collect())
}

/// Which nodes may run (others must come from the cache), and which are forced.
pub fn targets(wf: &Workflow, opts: &RunOptions) -> Result<(Vec<bool>, Vec<bool>), EngineError> {
    let n = wf.nodes.len();
    let only = select(wf, &opts.only)?;
    let from = select(wf, &opts.from)?;
    let force = select(wf, &opts.force)?;
    let mut target = if only.is_empty() && from.is_empty() {
        vec![true; n]
    } else {
        vec![false; n]
    };
    for i in only {
        target[i] = true;
    }
    let down = dag::descendants(&wf.deps(), &from);
    for (i, d) in down.into_iter().enumerate() {
        target[i] |= d;
    }
    let mut forced = vec![false; n];
    for i in force {
        forced[i] = true;
        target[i] = true;
    }
    Ok((target, forced))
}

/// The key components of `node` given the artifacts of its producers.
pub fn components(
    node: &Node,
    outputs: &[Option<BTreeMap<String, String>>],
) -> Option<KeyComponents> {
    let mut inputs = BTreeMap::new();
    for e in &node.inputs {
        let hash = outputs[e.node].as_ref()?.get(&e.output)?;
        inputs.insert(e.input.clone(), hash.clone());
    }
    Some(KeyComponents {
        format: CACHE_FORMAT,
        kind: node.plugin.kind().to_owned(),
        version: node.plugin.version().to_owned(),
        params: node.key_params.clone(),
        seed: node.seed,
        inputs,
    })
}

enum State {
    Waiting,
    Queued(KeyComponents),
    Running,
    Done,
    Stopped,
}

struct Finished {
    index: usize,
    result: Result<NodeManifest, String>,
    /// The run that computed the node while this one waited for it.
    computed_by: Option<crate::lease::Computer>,
    cancelled: bool,
    attempts: u32,
    elapsed: Duration,
    /// Cluster job ids of its attempts.
    jobs: Vec<String>,
}

/// How often a live run rewrites its record with the nodes finished so far.
const SAVE_EVERY: Duration = Duration::from_secs(2);

/// Run `wf` against `store`. Returns the run record; node failures are in it, not errors.
pub async fn run(
    wf: &Workflow,
    store: &Store,
    opts: &RunOptions,
    cancel: CancellationToken,
    reporter: &Reporter,
) -> Result<RunRecord, EngineError> {
    let (target, forced) = targets(wf, opts)?;
    let n = wf.nodes.len();
    let deps = wf.deps();
    // What the selected nodes need; the rest is skipped, not failed.
    let selected: Vec<usize> = (0..n).filter(|&i| target[i]).collect();
    let needed = dag::ancestors(&deps, &selected);
    // A cluster job must reach the store: refuse one it cannot before anything runs.
    for (i, node) in wf.nodes.iter().enumerate() {
        if let ExecutorSpec::Slurm(spec) = &node.executor
            && needed[i]
        {
            crate::slurm::check_store(spec, store)?;
        }
    }
    let started = Instant::now();
    let id = new_run_id();
    // The lease comes first: from here on gc keeps everything this run publishes.
    let lease = crate::lease::Lease::acquire(store, &id, &cancel, |h| {
        reporter.line(&format!(
            "  waiting for gc (pid {} on {}) to release the store",
            h.pid, h.host
        ));
    })
    .await?;
    let mut record = RunRecord {
        id: id.clone(),
        workflow: wf.name.clone(),
        file: wf.file.display().to_string(),
        store: store.url().to_owned(),
        status: RunStatus::Running,
        started: now_rfc3339(),
        finished: None,
        duration_ms: 0,
        pid: std::process::id(),
        profile: wf.profile.clone(),
        vars: wf.vars.clone(),
        nodes: wf
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| NodeRecord {
                id: node.id.clone(),
                kind: node.plugin.kind().to_owned(),
                inputs: upstream_ids(wf, &deps[i]),
                key: None,
                outcome: Outcome::Skipped,
                reason: Some("not reached".into()),
                attempts: 0,
                duration_ms: 0,
                metrics: Vec::new(),
                outputs: BTreeMap::new(),
                error: None,
                jobs: Vec::new(),
            })
            .collect(),
    };
    store.put_run(&record.id, &record).await?;
    let reporter = &reporter
        .clone()
        .with_observer(Arc::new(MetricsFiles::new(store.live_dir(&id))));
    reporter.emit(&Event::RunStarted {
        run: id.clone(),
        workflow: wf.name.clone(),
        store: store.url().to_owned(),
        nodes: wf.nodes.iter().map(|n| n.id.clone()).collect(),
        vars: wf.vars.clone(),
    });

    let mut state: Vec<State> = (0..n).map(|_| State::Waiting).collect();
    let mut outputs: Vec<Option<BTreeMap<String, String>>> = vec![None; n];
    let mut used: BTreeMap<String, u32> = BTreeMap::new();
    let mut running = 0usize;
    // Nodes running here, which `jobs` limits (a cluster job runs on the cluster's machines).
    let mut running_here = 0usize;
    let (tx, mut rx) = mpsc::unbounded_channel::<Finished>();
    let jobs = opts.jobs.max(1);
    let mut failed = false;
    // The first finished node is recorded at once, later ones within SAVE_EVERY of the last
    // save of a finished node; a node that starts is recorded within SAVE_EVERY of the last
    // save (so a start never delays the record of a finish).
    let mut last_saved: Option<Instant> = None;
    let mut finish_saved: Option<Instant> = None;
    let mut dirty = false;
    let mut finished = false;

    loop {
        // Settle every waiting node whose inputs are settled.
        let mut progressed = true;
        while progressed {
            progressed = false;
            for i in 0..n {
                if !matches!(state[i], State::Waiting) {
                    continue;
                }
                let node = &wf.nodes[i];
                if !needed[i] {
                    let rec = &mut record.nodes[i];
                    rec.outcome = Outcome::Skipped;
                    rec.reason = Some("not selected".into());
                    state[i] = State::Stopped;
                    progressed = true;
                    continue;
                }
                if let Some(e) = node
                    .inputs
                    .iter()
                    .find(|e| matches!(state[e.node], State::Stopped))
                {
                    let up = &wf.nodes[e.node].id;
                    let rec = &mut record.nodes[i];
                    rec.outcome = if cancel.is_cancelled() {
                        Outcome::Cancelled
                    } else {
                        Outcome::Skipped
                    };
                    rec.reason = Some(format!("upstream `{up}` did not complete"));
                    state[i] = State::Stopped;
                    progressed = true;
                    continue;
                }
                if node
                    .inputs
                    .iter()
                    .any(|e| !matches!(state[e.node], State::Done))
                {
                    continue;
                }
                progressed = true;
                let Some(comps) = components(node, &outputs) else {
                    state[i] = State::Stopped;
                    record.nodes[i].outcome = Outcome::Failed;
                    record.nodes[i].reason = Some("an upstream output is missing".into());
                    failed = true;
                    continue;
                };
                let key = comps.key();
                record.nodes[i].key = Some(key.clone());
                if cancel.is_cancelled() {
                    record.nodes[i].outcome = Outcome::Cancelled;
                    record.nodes[i].reason = Some("cancelled before it started".into());
                    state[i] = State::Stopped;
                    continue;
                }
                // The manifest and what `last/` holds, in one round trip; `last/` is rewritten
                // only when it changed (a cached node on S3 then costs reads alone).
                let (manifest, last) = if forced[i] {
                    (Ok(None), Ok(None))
                } else {
                    futures::join!(store.manifest(&key), store.last(&wf.name, &node.id))
                };
                if let Some(m) = manifest? {
                    let twin = ran_with_key(&record, &key, i);
                    let rec = &mut record.nodes[i];
                    rec.outcome = Outcome::Cached;
                    rec.reason = twin.map(|n| same_key(&n));
                    rec.metrics = m.metrics.clone();
                    rec.outputs = output_records(store, &m).await?;
                    if last.ok().flatten().as_ref() != Some(&comps) {
                        store.set_last(&wf.name, &node.id, &comps).await?;
                    }
                    reporter.line(&format!("  cached  {}", node.id));
                    reporter.emit(&Event::NodeCached {
                        node: node.id.clone(),
                        key: key.clone(),
                    });
                    outputs[i] = Some(m.outputs.clone());
                    state[i] = State::Done;
                    continue;
                }
                if !target[i] {
                    let rec = &mut record.nodes[i];
                    rec.outcome = Outcome::Failed;
                    rec.reason = Some(
                        "not selected and has no cached result; run it first or drop --only/--from"
                            .into(),
                    );
                    state[i] = State::Stopped;
                    failed = true;
                    continue;
                }
                state[i] = State::Queued(comps);
            }
        }

        // Start queued nodes, in topological order, within the limits.
        for i in 0..n {
            if cancel.is_cancelled() {
                break;
            }
            if !matches!(state[i], State::Queued(_)) {
                continue;
            }
            let node = &wf.nodes[i];
            let here = !node.executor.is_cluster();
            if here && running_here >= jobs {
                continue;
            }
            let fits = held(node).all(|(slot, need)| {
                used.get(slot).copied().unwrap_or(0) + need
                    <= wf.limits.get(slot).copied().unwrap_or(0)
            });
            if !fits {
                continue;
            }
            let State::Queued(comps) = std::mem::replace(&mut state[i], State::Running) else {
                continue;
            };
            for (slot, need) in held(node) {
                *used.entry(slot.clone()).or_default() += need;
            }
            running += 1;
            running_here += usize::from(here);
            reporter.line(&format!(
                "  run     {}{}",
                node.id,
                if forced[i] { " (forced)" } else { "" }
            ));
            reporter.emit(&Event::NodeStarted {
                node: node.id.clone(),
                kind: node.plugin.kind().to_owned(),
                key: comps.key(),
                params: comps.params.clone(),
            });
            record.nodes[i].outcome = Outcome::Running;
            record.nodes[i].reason = None;
            dirty = true;
            let job = Job {
                index: i,
                node: node.clone(),
                comps,
                store: store.clone(),
                cancel: cancel.child_token(),
                progress: reporter.node(&node.id),
                overwrite: forced[i],
                backoff: opts.retry_backoff,
                workflow_dir: wf.dir.clone(),
                run_id: id.clone(),
                secrets: wf.secrets.clone(),
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let finished = job.execute().await;
                let _ = tx.send(finished);
            });
        }

        if running == 0 {
            break;
        }
        // A run killed while it waits still leaves a record of what it published: the
        // record is rewritten within SAVE_EVERY of a node finishing.
        let done = loop {
            let clock = if finished { finish_saved } else { last_saved };
            let since = clock.map_or(SAVE_EVERY, |t| t.elapsed());
            if dirty && since >= SAVE_EVERY {
                store.put_run(&record.id, &record).await?;
                last_saved = Some(Instant::now());
                if finished {
                    finish_saved = last_saved;
                }
                (dirty, finished) = (false, false);
            }
            tokio::select! {
                d = rx.recv() => break d,
                () = tokio::time::sleep(SAVE_EVERY.saturating_sub(since)), if dirty => {}
            }
        };
        let Some(done) = done else { break };
        (dirty, finished) = (true, true);
        running -= 1;
        let node = &wf.nodes[done.index];
        running_here -= usize::from(!node.executor.is_cluster());
        for (slot, need) in held(node) {
            if let Some(u) = used.get_mut(slot) {
                *u = u.saturating_sub(*need);
            }
        }
        // Taken from another run or another node: say which.
        let cached_reason = match (&done.result, &done.computed_by) {
            (Ok(m), Some(by)) => {
                // Identical work in one run runs once: say which node did it.
                let twin = match &by.node {
                    Some(n) if by.run == record.id => Some(n.clone()),
                    _ if by.run == record.id || by.run.is_empty() => {
                        ran_with_key(&record, &m.key, done.index)
                    }
                    _ => None,
                };
                Some(match twin {
                    Some(n) => same_key(&n),
                    None if by.run.is_empty() => {
                        "computed by another run while this run waited".into()
                    }
                    None => format!("computed by run {} while this run waited", by.run),
                })
            }
            _ => None,
        };
        let rec = &mut record.nodes[done.index];
        rec.attempts = done.attempts;
        rec.jobs = done.jobs;
        rec.duration_ms = done.elapsed.as_millis() as u64;
        match done.result {
            Ok(m) if done.computed_by.is_some() => {
                rec.outcome = Outcome::Cached;
                let reason = cached_reason.unwrap_or_default();
                rec.reason = Some(reason.clone());
                rec.metrics = m.metrics.clone();
                rec.outputs = output_records(store, &m).await?;
                store.set_last(&wf.name, &node.id, &m.components).await?;
                reporter.line(&format!("  cached  {} ({reason})", node.id));
                reporter.emit(&Event::NodeCached {
                    node: node.id.clone(),
                    key: m.key.clone(),
                });
                outputs[done.index] = Some(m.outputs.clone());
                state[done.index] = State::Done;
            }
            Ok(m) => {
                rec.outcome = Outcome::Ran;
                rec.reason = None;
                rec.metrics = m.metrics.clone();
                rec.outputs = output_records(store, &m).await?;
                store.set_last(&wf.name, &node.id, &m.components).await?;
                reporter.line(&format!(
                    "  done    {} in {:.2}s",
                    node.id,
                    done.elapsed.as_secs_f64()
                ));
                reporter.emit(&Event::NodeFinished {
                    node: node.id.clone(),
                    outcome: Outcome::Ran,
                    duration_ms: rec.duration_ms,
                    metrics: m.metrics.clone(),
                    error: None,
                });
                outputs[done.index] = Some(m.outputs.clone());
                state[done.index] = State::Done;
            }
            Err(err) => {
                let err = wf.secrets.redact_str(&err);
                rec.outcome = if done.cancelled {
                    Outcome::Cancelled
                } else {
                    Outcome::Failed
                };
                rec.error = Some(err.clone());
                failed |= !done.cancelled;
                reporter.line(&format!(
                    "  {}  {}: {}",
                    rec.outcome,
                    node.id,
                    err.lines().next().unwrap_or("")
                ));
                reporter.emit(&Event::NodeFinished {
                    node: node.id.clone(),
                    outcome: rec.outcome,
                    duration_ms: rec.duration_ms,
                    metrics: Vec::new(),
                    error: Some(err.clone()),
                });
                state[done.index] = State::Stopped;
            }
        }
    }

    record.status = if cancel.is_cancelled() {
        RunStatus::Cancelled
    } else if failed || record.nodes.iter().any(|r| r.outcome == Outcome::Failed) {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    for (i, r) in record.nodes.iter_mut().enumerate() {
        if matches!(state[i], State::Waiting | State::Queued(_)) && !target[i] {
            r.reason = Some("not selected".into());
        }
    }
    record.finished = Some(now_rfc3339());
    record.duration_ms = started.elapsed().as_millis() as u64;
    store.put_run(&record.id, &record).await?;
    lease.release().await?;
    reporter.emit(&Event::RunFinished(record.clone()));
    reporter.finish().await;
    Ok(record)
}

/// The resource slots a running node holds in this run: all of them, but a cluster job's
/// machine (its cores, GPUs and memory are the cluster's).
fn held(node: &Node) -> impl Iterator<Item = (&String, &u32)> {
    let cluster = node.executor.is_cluster();
    node.resources
        .iter()
        .filter(move |(slot, _)| !(cluster && crate::slurm::MACHINE_SLOTS.contains(&slot.as_str())))
}

/// The ids of the nodes at `deps`, each once, in input order.
fn upstream_ids(wf: &Workflow, deps: &[usize]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for &d in deps {
        let id = &wf.nodes[d].id;
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    ids
}

async fn output_records(
    store: &Store,
    m: &NodeManifest,
) -> Result<BTreeMap<String, OutputRecord>, EngineError> {
    let artifacts =
        futures::future::try_join_all(m.outputs.values().map(|h| store.artifact(h))).await?;
    let mut out = BTreeMap::new();
    for ((name, hash), a) in m.outputs.iter().zip(artifacts) {
        out.insert(
            name.clone(),
            OutputRecord {
                artifact: hash.clone(),
                kind: match a.kind {
                    ArtifactKind::Table => "table".into(),
                    ArtifactKind::Blobs => "blobs".into(),
                },
                uri: format!(
                    "{}/{}",
                    store.url().trim_end_matches('/'),
                    crate::layout::artifact(hash)
                ),
                rows: a.rows,
                bytes: a.size(),
            },
        );
    }
    Ok(out)
}

struct Job {
    index: usize,
    node: Node,
    comps: KeyComponents,
    store: Store,
    cancel: CancellationToken,
    progress: Arc<crate::progress::NodeProgress>,
    overwrite: bool,
    backoff: Duration,
    workflow_dir: PathBuf,
    run_id: String,
    secrets: crate::interp::Secrets,
}

impl Job {
    /// Lock the node against other runs, compute it (or take what another run computed
    /// meanwhile), unlock.
    async fn execute(self) -> Finished {
        let start = Instant::now();
        let key = self.comps.key();
        let finished = |result, cancelled, computed_by| Finished {
            index: self.index,
            result,
            computed_by,
            cancelled,
            attempts: 0,
            elapsed: start.elapsed(),
            jobs: Vec::new(),
        };
        let id = &self.node.id;
        let lock = crate::lease::lock_node(
            &self.store,
            &key,
            &self.run_id,
            id,
            !self.overwrite,
            &self.cancel,
            |h| tracing::info!(node = %id, run = %h.run, "another run is computing this node; waiting for it"),
        )
        .await;
        match lock {
            Ok(crate::lease::NodeLock::Acquired) => {}
            Ok(crate::lease::NodeLock::Published(m, by)) => {
                return finished(Ok(*m), false, Some(by));
            }
            Ok(crate::lease::NodeLock::Cancelled) => {
                return finished(
                    Err("cancelled while another run computed it".into()),
                    true,
                    None,
                );
            }
            Err(e) => return finished(Err(e.to_string()), false, None),
        }
        let done = self.compute(start).await;
        if let Err(e) = crate::lease::unlock_node(&self.store, &key).await {
            tracing::warn!(node = %id, error = %e, "cannot release the node's lock; it expires with the run's lease");
        }
        done
    }

    async fn compute(&self, start: Instant) -> Finished {
        let mut attempts = 0;
        let mut jobs = Vec::new();
        loop {
            attempts += 1;
            let result = self.attempt(attempts, &mut jobs).await;
            match result {
                Ok(m) => {
                    return Finished {
                        index: self.index,
                        result: Ok(m),
                        computed_by: None,
                        cancelled: false,
                        attempts,
                        elapsed: start.elapsed(),
                        jobs,
                    };
                }
                Err(e) => {
                    let cancelled = !e.is_retryable() || self.cancel.is_cancelled();
                    if cancelled || attempts > self.node.retries {
                        let msg = if attempts > 1 {
                            format!("{e} (after {attempts} attempts)")
                        } else {
                            e.to_string()
                        };
                        return Finished {
                            index: self.index,
                            result: Err(msg),
                            computed_by: None,
                            cancelled,
                            attempts,
                            elapsed: start.elapsed(),
                            jobs,
                        };
                    }
                    let e = self.secrets.redact_str(&e.to_string());
                    tracing::warn!(node = %self.node.id, attempt = attempts, error = %e, "node failed; retrying");
                    let delay = self.backoff.saturating_mul(1 << (attempts - 1).min(10));
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.cancel.cancelled() => {}
                    }
                }
            }
        }
    }

    /// One attempt: stage, run the plugin, commit; here, or as a cluster job (whose id is
    /// added to `jobs`).
    async fn attempt(
        &self,
        number: u32,
        jobs: &mut Vec<String>,
    ) -> Result<NodeManifest, PluginError> {
        if let ExecutorSpec::Slurm(spec) = &self.node.executor {
            let result = self.attempt_on_slurm(spec, number, jobs).await;
            self.keep(NodeFile::Log).await;
            self.keep(NodeFile::Metrics).await;
            return result;
        }
        let staging = crate::layout::new_staging(self.store.work_dir());
        let log = self
            .store
            .live_node_file(&self.run_id, &self.node.id, NodeFile::Log);
        let result = self.attempt_in(&staging, &log).await;
        self.keep(NodeFile::Log).await;
        self.keep(NodeFile::Metrics).await;
        if let Err(e) = tokio::fs::remove_dir_all(&staging).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %staging.display(), error = %e, "cannot remove a staging folder; `scorch gc` will");
        }
        result
    }

    /// One attempt as a Slurm job: the job commits the outputs, the manifest comes from the
    /// store.
    async fn attempt_on_slurm(
        &self,
        spec: &crate::spec::SlurmSpec,
        number: u32,
        jobs: &mut Vec<String>,
    ) -> Result<NodeManifest, PluginError> {
        let params = self.comps.params.to_string();
        let env = self
            .secrets
            .values
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| params.contains(&format!("${{env.{name}}}")))
            .collect();
        let workflow_dir = std::path::absolute(&self.workflow_dir)
            .map_err(|e| PluginError::io("the workflow's folder", e))?;
        let job = ClusterJob {
            run_id: self.run_id.clone(),
            node_id: self.node.id.clone(),
            attempt: number,
            components: self.comps.clone(),
            env,
            overwrite: self.overwrite,
            workflow_dir,
        };
        let submission = crate::slurm::Submission {
            spec,
            store: &self.store,
            job: &job,
            resources: &self.node.resources,
            progress: self.progress.as_ref(),
            cancel: &self.cancel,
        };
        let (id, result) = submission.run().await;
        let id = id.inspect(|id| jobs.push(id.clone()));
        result?;
        self.store
            .manifest(&self.comps.key())
            .await?
            .ok_or_else(|| {
                PluginError::failed(format!(
                    "Slurm job {} completed but published no result for the node",
                    id.unwrap_or_default()
                ))
            })
    }

    /// Keep the node's log (or metrics) with the run, secrets redacted; a file that cannot
    /// be kept is worth a warning, not the node. The live log goes once kept; the metrics
    /// file stays until the node ends, so that a retry's metrics add to it.
    async fn keep(&self, file: NodeFile) {
        let live = self.store.live_node_file(&self.run_id, &self.node.id, file);
        let Ok(bytes) = tokio::fs::read(&live).await else {
            return;
        };
        let text = self.secrets.redact_str(&String::from_utf8_lossy(&bytes));
        match self
            .store
            .put_node_file(&self.run_id, &self.node.id, file, text.into_bytes())
            .await
        {
            Ok(()) if file == NodeFile::Log => {
                let _ = tokio::fs::remove_file(&live).await;
            }
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(node = %self.node.id, error = %e, "cannot keep the node's {file:?} file")
            }
        }
    }

    async fn attempt_in(
        &self,
        staging: &std::path::Path,
        log: &std::path::Path,
    ) -> Result<NodeManifest, PluginError> {
        let attempt = Attempt {
            store: &self.store,
            node_id: &self.node.id,
            plugin: self.node.plugin.clone(),
            params: &self.node.params,
            signature: &self.node.signature,
            seed: self.node.seed,
            comps: &self.comps,
            overwrite: self.overwrite,
            workflow_dir: &self.workflow_dir,
            cancel: &self.cancel,
            progress: self.progress.clone(),
            threads: self.node.resources.get("cpu").map_or(0, |n| *n as usize),
        };
        attempt.run(staging, log).await
    }
}

/// The one conversion at the engine/plugin border: a store failure is an I/O error of the
/// node, anything else a failure; the engine error stays as the source.
impl From<EngineError> for PluginError {
    fn from(e: EngineError) -> Self {
        let kind = if e.kind == EngineErrorKind::Store {
            PluginErrorKind::Io
        } else {
            PluginErrorKind::Failed
        };
        PluginError::new(kind, e.message.clone()).with_source(e)
    }
}

/// A node of this run other than `index` that ran with `key` (identical work), if any.
fn ran_with_key(record: &RunRecord, key: &str, index: usize) -> Option<String> {
    record
        .nodes
        .iter()
        .enumerate()
        .find(|(j, n)| *j != index && n.key.as_deref() == Some(key) && n.outcome == Outcome::Ran)
        .map(|(_, n)| n.id.clone())
}

/// The reason of a node that took the result of a node of the same run with the same key.
fn same_key(node: &str) -> String {
    format!("same key as node `{node}` of this run, which computed it")
}
