//! The scheduler: one dispatcher task owns the run state, starts ready nodes within the
//! job and resource-slot limits, and turns node results into the run record. Where a node
//! runs is its executor's business ([`crate::executor`]); how one node goes from start to
//! end, retries included, is [`crate::job`]'s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cache::{CACHE_FORMAT, KeyComponents};
use crate::dag;
use crate::error::EngineError;
use crate::events::{Event, MetricsFiles};
use crate::executor::{Executor, NodeJob};
use crate::job::Finished;
use crate::progress::Reporter;
use crate::record::{
    NodeRecord, Outcome, OutputRecord, RunRecord, RunStatus, new_run_id, now_rfc3339,
};
use crate::store::{ArtifactKind, NodeManifest, Store};
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
    let deps = wf.deps();
    // What the selected nodes need; the rest is skipped, not failed.
    let selected: Vec<usize> = (0..wf.nodes.len()).filter(|&i| target[i]).collect();
    let needed = dag::ancestors(&deps, &selected);
    let executors: Vec<Arc<dyn Executor>> =
        wf.nodes.iter().map(|n| n.executor.executor()).collect();
    // An executor that cannot serve this store refuses before anything runs.
    for (executor, _) in executors.iter().zip(&needed).filter(|(_, n)| **n) {
        executor.preflight(store)?;
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
    let record = new_record(wf, store, &id, &deps);
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
    let mut scheduler = Scheduler::new(
        Plan {
            wf,
            store,
            opts,
            cancel: &cancel,
            reporter,
            target,
            forced,
            needed,
            executors,
        },
        record,
    );
    loop {
        scheduler.settle().await?;
        scheduler.start();
        let Some(done) = scheduler.wait().await? else {
            break;
        };
        scheduler.record(done).await?;
    }
    let record = scheduler.finish(started);
    store.put_run(&record.id, &record).await?;
    lease.release().await?;
    reporter.emit(&Event::RunFinished(record.clone()));
    reporter.finish().await;
    Ok(record)
}

/// A new run's record: every node not reached yet.
fn new_record(wf: &Workflow, store: &Store, id: &str, deps: &[Vec<usize>]) -> RunRecord {
    RunRecord {
        id: id.to_owned(),
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
    }
}

/// What a run is asked to do, fixed before it starts.
struct Plan<'a> {
    wf: &'a Workflow,
    store: &'a Store,
    opts: &'a RunOptions,
    cancel: &'a CancellationToken,
    reporter: &'a Reporter,
    /// Nodes that may run (the others must come from the cache).
    target: Vec<bool>,
    /// Nodes recomputed even when cached.
    forced: Vec<bool>,
    /// Nodes the targets need.
    needed: Vec<bool>,
    /// Each node's executor.
    executors: Vec<Arc<dyn Executor>>,
}

/// The run's state, owned by one dispatcher: a state machine whose steps are
/// [`settle`](Self::settle) (decide every node whose inputs are settled: skipped, cached or
/// queued), [`start`](Self::start) (launch queued nodes within the limits),
/// [`wait`](Self::wait) (for a node to finish, saving the record meanwhile) and
/// [`record`](Self::record) (what the node did).
struct Scheduler<'a> {
    plan: Plan<'a>,
    record: RunRecord,
    state: Vec<State>,
    /// Each done node's outputs (name → artifact hash).
    outputs: Vec<Option<BTreeMap<String, String>>>,
    /// Resource slots held by running nodes.
    used: BTreeMap<String, u32>,
    running: usize,
    /// Nodes running on this machine, which `--jobs` limits.
    running_here: usize,
    failed: bool,
    tx: mpsc::UnboundedSender<Finished>,
    rx: mpsc::UnboundedReceiver<Finished>,
    saves: Saves,
}

/// When the record was last saved. The first finished node is recorded at once, later ones
/// within `SAVE_EVERY` of the last save of a finished node; a node that starts is recorded
/// within `SAVE_EVERY` of the last save (so a start never delays the record of a finish).
#[derive(Default)]
struct Saves {
    last: Option<Instant>,
    last_finish: Option<Instant>,
    /// The record changed since it was saved.
    dirty: bool,
    /// A node finished since it was saved.
    finished: bool,
}

impl<'a> Scheduler<'a> {
    fn new(plan: Plan<'a>, record: RunRecord) -> Self {
        let n = plan.wf.nodes.len();
        let (tx, rx) = mpsc::unbounded_channel::<Finished>();
        Self {
            plan,
            record,
            state: (0..n).map(|_| State::Waiting).collect(),
            outputs: vec![None; n],
            used: BTreeMap::new(),
            running: 0,
            running_here: 0,
            failed: false,
            tx,
            rx,
            saves: Saves::default(),
        }
    }

    /// Settle every waiting node whose inputs are settled, until none changes.
    async fn settle(&mut self) -> Result<(), EngineError> {
        let mut progressed = true;
        while progressed {
            progressed = false;
            for i in 0..self.state.len() {
                if matches!(self.state[i], State::Waiting) {
                    progressed |= self.settle_node(i).await?;
                }
            }
        }
        Ok(())
    }

    /// Decide waiting node `i`: skipped (not needed, or an input will not come), cached,
    /// failed, or queued. `false`: its inputs are not all settled yet.
    async fn settle_node(&mut self, i: usize) -> Result<bool, EngineError> {
        let wf = self.plan.wf;
        let node = &wf.nodes[i];
        if !self.plan.needed[i] {
            self.stop(i, Outcome::Skipped, "not selected".into());
            return Ok(true);
        }
        if let Some(e) = node
            .inputs
            .iter()
            .find(|e| matches!(self.state[e.node], State::Stopped))
        {
            let outcome = if self.plan.cancel.is_cancelled() {
                Outcome::Cancelled
            } else {
                Outcome::Skipped
            };
            let up = &wf.nodes[e.node].id;
            self.stop(i, outcome, format!("upstream `{up}` did not complete"));
            return Ok(true);
        }
        if node
            .inputs
            .iter()
            .any(|e| !matches!(self.state[e.node], State::Done))
        {
            return Ok(false);
        }
        let Some(comps) = components(node, &self.outputs) else {
            self.stop(i, Outcome::Failed, "an upstream output is missing".into());
            self.failed = true;
            return Ok(true);
        };
        self.record.nodes[i].key = Some(comps.key());
        if self.plan.cancel.is_cancelled() {
            self.stop(i, Outcome::Cancelled, "cancelled before it started".into());
        } else if !self.take_cached(i, &comps).await? {
            if self.plan.target[i] {
                self.state[i] = State::Queued(comps);
            } else {
                self.stop(
                    i,
                    Outcome::Failed,
                    "not selected and has no cached result; run it first or drop --only/--from"
                        .into(),
                );
                self.failed = true;
            }
        }
        Ok(true)
    }

    /// Node `i` with `comps` taken from the cache, if its result is published (and it is
    /// not forced).
    async fn take_cached(&mut self, i: usize, comps: &KeyComponents) -> Result<bool, EngineError> {
        if self.plan.forced[i] {
            return Ok(false);
        }
        let (store, wf) = (self.plan.store, self.plan.wf);
        let node = &wf.nodes[i];
        let key = comps.key();
        // The manifest and what `last/` holds, in one round trip; `last/` is rewritten only
        // when it changed (a cached node on S3 then costs reads alone).
        let (manifest, last) = futures::join!(store.manifest(&key), store.last(&wf.name, &node.id));
        let Some(m) = manifest? else {
            return Ok(false);
        };
        let twin = ran_with_key(&self.record, &key, i);
        let rec = &mut self.record.nodes[i];
        rec.outcome = Outcome::Cached;
        rec.reason = twin.map(|n| same_key(&n));
        rec.metrics = m.metrics.clone();
        rec.outputs = output_records(store, &m).await?;
        if last.ok().flatten().as_ref() != Some(comps) {
            store.set_last(&wf.name, &node.id, comps).await?;
        }
        self.plan.reporter.line(&format!("  cached  {}", node.id));
        self.plan.reporter.emit(&Event::NodeCached {
            node: node.id.clone(),
            key,
        });
        self.outputs[i] = Some(m.outputs.clone());
        self.state[i] = State::Done;
        Ok(true)
    }

    /// Node `i` will not run: record why.
    fn stop(&mut self, i: usize, outcome: Outcome, reason: String) {
        let rec = &mut self.record.nodes[i];
        rec.outcome = outcome;
        rec.reason = Some(reason);
        self.state[i] = State::Stopped;
    }

    /// Start queued nodes, in topological order, within the job and slot limits.
    fn start(&mut self) {
        let wf = self.plan.wf;
        for i in 0..self.state.len() {
            if self.plan.cancel.is_cancelled() {
                break;
            }
            if !matches!(self.state[i], State::Queued(_)) {
                continue;
            }
            let executor = &self.plan.executors[i];
            if executor.runs_here() && self.running_here >= self.plan.opts.jobs.max(1) {
                continue;
            }
            let fits = held(&wf.nodes[i], executor.as_ref()).all(|(slot, need)| {
                self.used.get(slot).copied().unwrap_or(0) + need
                    <= wf.limits.get(slot).copied().unwrap_or(0)
            });
            if !fits {
                continue;
            }
            let State::Queued(comps) = std::mem::replace(&mut self.state[i], State::Running) else {
                continue;
            };
            self.launch(i, comps);
        }
    }

    /// Take node `i`'s slots and spawn its job.
    fn launch(&mut self, i: usize, comps: KeyComponents) {
        let (wf, reporter) = (self.plan.wf, self.plan.reporter);
        let node = &wf.nodes[i];
        let executor = self.plan.executors[i].clone();
        for (slot, need) in held(node, executor.as_ref()) {
            *self.used.entry(slot.clone()).or_default() += need;
        }
        self.running += 1;
        self.running_here += usize::from(executor.runs_here());
        let forced = self.plan.forced[i];
        reporter.line(&format!(
            "  run     {}{}",
            node.id,
            if forced { " (forced)" } else { "" }
        ));
        reporter.emit(&Event::NodeStarted {
            node: node.id.clone(),
            kind: node.plugin.kind().to_owned(),
            key: comps.key(),
            params: comps.params.clone(),
        });
        self.record.nodes[i].outcome = Outcome::Running;
        self.record.nodes[i].reason = None;
        self.saves.dirty = true;
        let job = NodeJob {
            index: i,
            node: node.clone(),
            executor,
            comps,
            store: self.plan.store.clone(),
            cancel: self.plan.cancel.child_token(),
            progress: reporter.node(&node.id),
            overwrite: forced,
            backoff: self.plan.opts.retry_backoff,
            workflow_dir: wf.dir.clone(),
            run_id: self.record.id.clone(),
            secrets: wf.secrets.clone(),
        };
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(job.execute().await);
        });
    }

    /// The next node to finish (`None`: nothing runs). A run killed while it waits still
    /// leaves a record of what it published: the record is rewritten within `SAVE_EVERY` of a
    /// node finishing.
    async fn wait(&mut self) -> Result<Option<Finished>, EngineError> {
        if self.running == 0 {
            return Ok(None);
        }
        let done = loop {
            let saves = &mut self.saves;
            let clock = if saves.finished {
                saves.last_finish
            } else {
                saves.last
            };
            let since = clock.map_or(SAVE_EVERY, |t| t.elapsed());
            if saves.dirty && since >= SAVE_EVERY {
                self.plan
                    .store
                    .put_run(&self.record.id, &self.record)
                    .await?;
                saves.last = Some(Instant::now());
                if saves.finished {
                    saves.last_finish = saves.last;
                }
                (saves.dirty, saves.finished) = (false, false);
            }
            let dirty = saves.dirty;
            tokio::select! {
                d = self.rx.recv() => break d,
                () = tokio::time::sleep(SAVE_EVERY.saturating_sub(since)), if dirty => {}
            }
        };
        if done.is_some() {
            (self.saves.dirty, self.saves.finished) = (true, true);
        }
        Ok(done)
    }

    /// Record what a finished node did, and free its slots.
    async fn record(&mut self, done: Finished) -> Result<(), EngineError> {
        let node = &self.plan.wf.nodes[done.index];
        let executor = &self.plan.executors[done.index];
        self.running -= 1;
        self.running_here -= usize::from(executor.runs_here());
        for (slot, need) in held(node, executor.as_ref()) {
            if let Some(u) = self.used.get_mut(slot) {
                *u = u.saturating_sub(*need);
            }
        }
        let rec = &mut self.record.nodes[done.index];
        rec.attempts = done.attempts;
        rec.jobs = done.jobs.clone();
        rec.duration_ms = done.elapsed.as_millis() as u64;
        match done.result {
            Ok(ref m) => {
                let reason = done
                    .computed_by
                    .as_ref()
                    .map(|by| self.taken_from(by, &m.key, done.index));
                self.record_published(done.index, m, reason, done.elapsed)
                    .await
            }
            Err(ref err) => {
                self.record_failure(done.index, &err.to_string(), done.cancelled);
                Ok(())
            }
        }
    }

    /// Why a node's result came from elsewhere: the node of this run with the same key, or
    /// the other run that computed it while this one waited.
    fn taken_from(&self, by: &crate::lease::Computer, key: &str, index: usize) -> String {
        // Identical work in one run runs once: say which node did it.
        let twin = match &by.node {
            Some(n) if by.run == self.record.id => Some(n.clone()),
            _ if by.run == self.record.id || by.run.is_empty() => {
                ran_with_key(&self.record, key, index)
            }
            _ => None,
        };
        match twin {
            Some(n) => same_key(&n),
            None if by.run.is_empty() => "computed by another run while this run waited".into(),
            None => format!("computed by run {} while this run waited", by.run),
        }
    }

    /// Node `i` published `m`: computed here (`taken` is `None`), or taken from another run
    /// or node (the reason).
    async fn record_published(
        &mut self,
        i: usize,
        m: &NodeManifest,
        taken: Option<String>,
        elapsed: Duration,
    ) -> Result<(), EngineError> {
        let (store, wf, reporter) = (self.plan.store, self.plan.wf, self.plan.reporter);
        let node = &wf.nodes[i];
        let rec = &mut self.record.nodes[i];
        rec.metrics = m.metrics.clone();
        rec.outputs = output_records(store, m).await?;
        store.set_last(&wf.name, &node.id, &m.components).await?;
        match taken {
            Some(reason) => {
                rec.outcome = Outcome::Cached;
                rec.reason = Some(reason.clone());
                reporter.line(&format!("  cached  {} ({reason})", node.id));
                reporter.emit(&Event::NodeCached {
                    node: node.id.clone(),
                    key: m.key.clone(),
                });
            }
            None => {
                rec.outcome = Outcome::Ran;
                rec.reason = None;
                reporter.line(&format!(
                    "  done    {} in {:.2}s",
                    node.id,
                    elapsed.as_secs_f64()
                ));
                reporter.emit(&Event::NodeFinished {
                    node: node.id.clone(),
                    outcome: Outcome::Ran,
                    duration_ms: rec.duration_ms,
                    metrics: m.metrics.clone(),
                    error: None,
                });
            }
        }
        self.outputs[i] = Some(m.outputs.clone());
        self.state[i] = State::Done;
        Ok(())
    }

    /// Node `i` failed (or was cancelled) with `err`.
    fn record_failure(&mut self, i: usize, err: &str, cancelled: bool) {
        let (wf, reporter) = (self.plan.wf, self.plan.reporter);
        let node = &wf.nodes[i];
        let err = wf.secrets.redact_str(err);
        let rec = &mut self.record.nodes[i];
        rec.outcome = if cancelled {
            Outcome::Cancelled
        } else {
            Outcome::Failed
        };
        rec.error = Some(err.clone());
        self.failed |= !cancelled;
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
            error: Some(err),
        });
        self.state[i] = State::Stopped;
    }

    /// The finished record: the run's status and duration.
    fn finish(mut self, started: Instant) -> RunRecord {
        let record = &mut self.record;
        record.status = if self.plan.cancel.is_cancelled() {
            RunStatus::Cancelled
        } else if self.failed || record.nodes.iter().any(|r| r.outcome == Outcome::Failed) {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        for (i, r) in record.nodes.iter_mut().enumerate() {
            if matches!(self.state[i], State::Waiting | State::Queued(_)) && !self.plan.target[i] {
                r.reason = Some("not selected".into());
            }
        }
        record.finished = Some(now_rfc3339());
        record.duration_ms = started.elapsed().as_millis() as u64;
        self.record
    }
}

/// The resource slots a running node holds in this run: all of them, but a cluster job's
/// machine (its cores, GPUs and memory are the cluster's).
fn held<'n>(
    node: &'n Node,
    executor: &dyn Executor,
) -> impl Iterator<Item = (&'n String, &'n u32)> {
    let cluster = !executor.runs_here();
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
