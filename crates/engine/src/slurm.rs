//! The Slurm executor: each attempt at a node is one job, submitted with `sbatch` when the
//! node's inputs are ready, followed with `scontrol` (or `sacct` once Slurm has forgotten
//! it), cancelled with `scancel`.
//!
//! Why submit when ready rather than chain the whole DAG with `--dependency=afterok`: the
//! engine decides at that moment whether the node is cached (a chained job would run
//! anyway), computes its cache key from its inputs' *contents* (early cutoff: an upstream
//! rerun that wrote the same bytes leaves the node cached), and retries a failed attempt
//! with the node's `retries`. A chain would have to resubmit on any of these; the cost of
//! not chaining is one scheduling round per layer of the DAG.
//!
//! The job runs `scorch node-job --store URL RUN NODE` ([`crate::cluster`]): it reads its
//! inputs from the store and commits its outputs there, so the store must be one every
//! compute node sees (S3, or a shared filesystem that the workflow vouches for with
//! `shared_store: true`). Its stdout (progress events and the node's stderr) goes to an
//! output file that the run follows when it can read it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use scorch_api::{PluginError, ProgressSink};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::sync::CancellationToken;

use crate::cluster::ClusterJob;
use crate::error::EngineError;
use crate::spec::SlurmSpec;
use crate::store::Store;
use crate::worker::Event;

/// Resource slots that describe a machine: a Slurm job asks for them with `sbatch` instead of
/// holding them in the run (`gpu_mem_gb`, the memory of the GPU it gets, has no `sbatch`
/// option: it bounds the node's memory plan, and the partition must give such GPUs).
/// `nodes` (a job over several machines) comes from a node that launches processes on each.
pub const MACHINE_SLOTS: [&str; 5] = ["cpu", "gpu", "mem_gb", "gpu_mem_gb", "nodes"];

/// How often a job's state is read while it runs (`SCORCH_SLURM_POLL_MS` overrides).
fn poll_every() -> Duration {
    std::env::var("SCORCH_SLURM_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(1000), Duration::from_millis)
}

/// Refuse a store that jobs on other machines could not see: `memory://` always, `file://`
/// unless the workflow says the folder is on a shared filesystem.
pub fn check_store(spec: &SlurmSpec, store: &Store) -> Result<(), EngineError> {
    let url = store.url();
    if url.starts_with("memory:") {
        return Err(EngineError::usage(
            "the Slurm executor needs a store that its jobs can reach; `memory://` lives in this process only",
        ));
    }
    if url.starts_with("file:") && !spec.shared_store {
        return Err(EngineError::usage(format!(
            "the Slurm executor's jobs run on other machines, which cannot see the file store \
             {url} unless it is on a shared filesystem; use an s3:// store, or say \
             `shared_store: true` under `executor:` if every compute node sees this folder"
        )));
    }
    Ok(())
}

/// A job's state as Slurm reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `TIMEOUT`, `OUT_OF_MEMORY`, ...
    pub state: String,
    /// Slurm's reason (`None`, `TimeLimit`, `NonZeroExitCode`, ...).
    pub reason: String,
    /// `exit:signal`.
    pub exit_code: String,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_over(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "REQUEUED"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESIZING"
                | "SUSPENDED"
                | "SIGNALING"
                | "STAGE_OUT"
        )
    }
}

/// The state in one line of `scontrol show job -o ID`.
pub fn parse_scontrol(line: &str) -> Option<JobState> {
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    Some(JobState {
        state: field("JobState")?,
        reason: field("Reason").unwrap_or_default(),
        exit_code: field("ExitCode").unwrap_or_default(),
    })
}

/// The state in `sacct -n -X -P -o State,ExitCode,Reason -j ID` (a state may read
/// `CANCELLED by 0`).
fn parse_sacct(text: &str) -> Option<JobState> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let mut parts = line.split('|');
    let state = parts.next()?.split_whitespace().next()?.to_owned();
    Some(JobState {
        state,
        exit_code: parts.next().unwrap_or_default().to_owned(),
        reason: parts.next().unwrap_or_default().to_owned(),
    })
}

/// The `sbatch` options of a node's job (the batch script's `#SBATCH` lines).
pub fn sbatch_flags(
    spec: &SlurmSpec,
    resources: &BTreeMap<String, u32>,
    name: &str,
    output: &Path,
) -> Vec<String> {
    let mut f = vec![
        format!("--job-name={name}"),
        // `%` starts one of sbatch's file name patterns.
        format!(
            "--output={}",
            output.display().to_string().replace('%', "%%")
        ),
    ];
    // Several machines: one task on each (which launches that machine's processes).
    if let Some(&n) = resources.get("nodes").filter(|n| **n > 0) {
        f.push(format!("--nodes={n}"));
        f.push("--ntasks-per-node=1".to_owned());
    }
    if let Some(&n) = resources.get("cpu") {
        f.push(format!("--cpus-per-task={}", n.max(1)));
    }
    if let Some(&n) = resources.get("gpu").filter(|n| **n > 0) {
        f.push(format!("--gres=gpu:{n}"));
    }
    if let Some(&n) = resources.get("mem_gb").filter(|n| **n > 0) {
        f.push(format!("--mem={n}G"));
    }
    for (flag, value) in [
        ("partition", &spec.partition),
        ("account", &spec.account),
        ("qos", &spec.qos),
        ("time", &spec.time),
    ] {
        if let Some(v) = value {
            f.push(format!("--{flag}={v}"));
        }
    }
    f.extend(spec.sbatch_args.iter().cloned());
    f
}

/// An option on an `#SBATCH` line: in double quotes when it holds a space (sbatch splits
/// the line at spaces outside quotes).
fn sbatch_word(option: &str) -> String {
    if option.contains(char::is_whitespace) {
        format!("\"{}\"", option.replace('"', "\\\""))
    } else {
        option.to_owned()
    }
}

/// `s` quoted for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A Slurm command that did not give what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// The program could not be started.
    #[error("cannot run `{program}` ({source}); is Slurm installed here?")]
    NotRunnable {
        /// `sbatch`, `scontrol`, ...
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// Its answer could not be read.
    #[error("{program} said: {output}")]
    Unreadable {
        /// The program.
        program: String,
        /// What it said.
        output: String,
    },
}

/// Run a Slurm command; its stdout, or what went wrong in its words.
async fn slurm(program: &str, args: &[String]) -> Result<String, SlurmError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| SlurmError::NotRunnable {
            program: program.to_owned(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(SlurmError::Failed {
            command: format!("{program} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The job's state: from `scontrol`, or from `sacct` once `scontrol` no longer knows it.
async fn state(id: &str) -> Result<JobState, SlurmError> {
    let args = ["show".to_owned(), "job".into(), "-o".into(), id.to_owned()];
    match slurm("scontrol", &args).await {
        Ok(text) => parse_scontrol(&text).ok_or(SlurmError::Unreadable {
            program: "scontrol".into(),
            output: text,
        }),
        Err(scontrol) => {
            let args: Vec<String> = ["-n", "-X", "-P", "-o", "State,ExitCode,Reason", "-j", id]
                .map(str::to_owned)
                .to_vec();
            match slurm("sacct", &args).await {
                Ok(text) => parse_sacct(&text).ok_or(scontrol),
                Err(_) => Err(scontrol),
            }
        }
    }
}

/// What a job said of its node, on its output.
enum Reported {
    /// It published the node.
    Done,
    /// The node failed with this message.
    Failed(String),
}

/// Follows a job's output file: complete lines as they are written.
struct Tail {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Tail {
    async fn lines(&mut self) -> Vec<String> {
        let Ok(mut f) = tokio::fs::File::open(&self.path).await else {
            return Vec::new();
        };
        if f.seek(std::io::SeekFrom::Start(self.offset)).await.is_err() {
            return Vec::new();
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).await.is_err() {
            return Vec::new();
        }
        self.offset += buf.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&buf));
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            out.push(self.partial[..i].to_owned());
            self.partial.drain(..=i);
        }
        out
    }
}

/// One attempt of a node as a Slurm job.
pub struct Submission<'a> {
    /// The executor's options.
    pub spec: &'a SlurmSpec,
    /// The run's store.
    pub store: &'a Store,
    /// What the job runs.
    pub job: &'a ClusterJob,
    /// The node's resources.
    pub resources: &'a BTreeMap<String, u32>,
    /// Where progress goes.
    pub progress: &'a dyn ProgressSink,
    /// Fires when the run no longer wants the node.
    pub cancel: &'a CancellationToken,
}

impl std::fmt::Debug for Submission<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Submission")
            .field("node", &self.job.node_id)
            .field("attempt", &self.job.attempt)
            .finish_non_exhaustive()
    }
}

impl Submission<'_> {
    /// Put the job in the store, submit it and follow it to its end. The job id comes back
    /// whatever the outcome (once there is one); `Ok` means Slurm says COMPLETED and the job
    /// reported success: its manifest is in the store.
    pub async fn run(&self) -> (Option<String>, Result<(), PluginError>) {
        let dir = self.store.work_dir().join("slurm").join(&self.job.run_id);
        let stem = format!("{}-{}", self.job.node_id, self.job.attempt);
        let script = dir.join(format!("{stem}.sh"));
        let output = dir.join(format!("{stem}.out"));
        let id = match self.submit(&dir, &script, &output).await {
            Ok(id) => id,
            Err(e) => return (None, Err(e)),
        };
        let result = self.follow(&id, &output).await;
        (Some(id), result)
    }

    async fn submit(
        &self,
        dir: &Path,
        script: &Path,
        output: &Path,
    ) -> Result<String, PluginError> {
        self.job.put(self.store).await?;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| PluginError::io(format!("creating {}", dir.display()), e))?;
        let program = match &self.spec.program {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .map_err(|e| PluginError::io("finding this program", e))?
                .display()
                .to_string(),
        };
        let name = format!("scorch:{}:{}", self.job.run_id, self.job.node_id);
        // The request in the script itself, so that it says what it asked for (and a
        // user can resubmit it with `sbatch` alone).
        let request: String = sbatch_flags(self.spec, self.resources, &name, output)
            .iter()
            .map(|f| format!("#SBATCH {}\n", sbatch_word(f)))
            .collect();
        let text = format!(
            "#!/bin/sh\n{request}# scorch run {run}, node {node}, attempt {attempt}\nexec {program} node-job --store {store} {run_q} {node_q}\n",
            run = self.job.run_id,
            node = self.job.node_id,
            attempt = self.job.attempt,
            program = quote(&program),
            store = quote(&self.store.absolute_url()),
            run_q = quote(&self.job.run_id),
            node_q = quote(&self.job.node_id),
        );
        tokio::fs::write(script, text)
            .await
            .map_err(|e| PluginError::io(format!("writing {}", script.display()), e))?;
        let args = vec!["--parsable".to_owned(), script.display().to_string()];
        let out = slurm("sbatch", &args)
            .await
            .map_err(|e| PluginError::failed(e.to_string()).with_source(e))?;
        let id = out.trim().split(';').next().unwrap_or_default().to_owned();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(PluginError::failed(format!(
                "sbatch answered {out:?}, not a job id"
            )));
        }
        tracing::info!(node = %self.job.node_id, job = %id, "submitted to Slurm");
        Ok(id)
    }

    /// Pass on what the job wrote since the last call: progress to the run, its result
    /// into `reported`, anything else (its stderr) to ours.
    async fn relay(&self, tail: &mut Tail, reported: &mut Option<Reported>) {
        for line in tail.lines().await {
            match serde_json::from_str::<Event>(&line) {
                Ok(e) if e.relay(self.progress) => {}
                Ok(Event::Failed { message, .. }) => *reported = Some(Reported::Failed(message)),
                Ok(_) => *reported = Some(Reported::Done),
                Err(_) => eprintln!("{line}"),
            }
        }
    }

    async fn follow(&self, id: &str, output: &Path) -> Result<(), PluginError> {
        let mut tail = Tail {
            path: output.to_path_buf(),
            offset: 0,
            partial: String::new(),
        };
        let mut reported: Option<Reported> = None;
        let mut cancelled = false;
        let every = poll_every();
        let mut unknown_since: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                () = self.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    let _ = slurm("scancel", &[id.to_owned()]).await;
                }
                () = tokio::time::sleep(every) => {}
            }
            self.relay(&mut tail, &mut reported).await;
            let st = match state(id).await {
                Ok(st) => st,
                Err(e) => {
                    // Slurm may briefly not know a job it just accepted, or forget one that
                    // ended long ago; a minute of not knowing is an error.
                    let since = *unknown_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() > Duration::from_secs(60) {
                        return Err(PluginError::failed(format!(
                            "cannot read the state of Slurm job {id}: {e}"
                        )));
                    }
                    continue;
                }
            };
            unknown_since = None;
            if !st.is_over() {
                continue;
            }
            // The last lines the job wrote.
            self.relay(&mut tail, &mut reported).await;
            if cancelled {
                return Err(PluginError::cancelled());
            }
            return match (st.state.as_str(), reported) {
                ("COMPLETED", Some(Reported::Done)) => Ok(()),
                // The run may not see the job's output file (no shared filesystem): Slurm's
                // word is enough, the manifest is checked next.
                ("COMPLETED", None) => Ok(()),
                (_, Some(Reported::Failed(message))) => Err(PluginError::failed(format!(
                    "{message} (Slurm job {id}: {})",
                    describe(&st)
                ))),
                _ => Err(PluginError::failed(format!(
                    "Slurm job {id} ended {}",
                    describe(&st)
                ))),
            };
        }
    }
}

/// `TIMEOUT (reason TimeLimit, exit code 0:15)`.
fn describe(st: &JobState) -> String {
    let mut s = st.state.clone();
    let mut extra = Vec::new();
    if !st.reason.is_empty() && st.reason != "None" {
        extra.push(format!("reason {}", st.reason));
    }
    if !st.exit_code.is_empty() && st.exit_code != "0:0" {
        extra.push(format!("exit code {}", st.exit_code));
    }
    if !extra.is_empty() {
        s.push_str(&format!(" ({})", extra.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_are_read_from_scontrol_and_sacct() {
        let line = "JobId=42 JobName=scorch:r:n UserId=root(0) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) ExitCode=0:15 RunTime=00:00:31";
        let st = parse_scontrol(line).unwrap();
        assert_eq!(st.state, "TIMEOUT");
        assert!(st.is_over());
        assert_eq!(describe(&st), "TIMEOUT (reason TimeLimit, exit code 0:15)");
        let st = parse_sacct("CANCELLED by 0|0:0|None\n").unwrap();
        assert_eq!(st.state, "CANCELLED");
        let running = parse_scontrol("JobId=1 JobState=RUNNING Reason=None ExitCode=0:0").unwrap();
        assert!(!running.is_over());
    }

    #[test]
    fn resources_become_sbatch_requests() {
        let spec = SlurmSpec {
            partition: Some("gpu".into()),
            time: Some("2:00:00".into()),
            sbatch_args: vec!["--exclusive".into()],
            ..Default::default()
        };
        let resources: BTreeMap<String, u32> = [
            ("cpu".into(), 8),
            ("gpu".into(), 2),
            ("mem_gb".into(), 64),
            ("teacher".into(), 1),
            ("nodes".into(), 2),
        ]
        .into();
        let f = sbatch_flags(
            &spec,
            &resources,
            "scorch:r:sft",
            Path::new("/w/sft[lr=1%]-1.out"),
        );
        assert_eq!(
            f,
            [
                "--job-name=scorch:r:sft",
                "--output=/w/sft[lr=1%%]-1.out",
                "--nodes=2",
                "--ntasks-per-node=1",
                "--cpus-per-task=8",
                "--gres=gpu:2",
                "--mem=64G",
                "--partition=gpu",
                "--time=2:00:00",
                "--exclusive"
            ]
        );
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
