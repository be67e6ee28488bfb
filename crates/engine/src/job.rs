//! One node of a run from its start to its end: lock it against other runs, make attempts
//! through its [`Executor`](crate::executor::Executor) with retries and backoff (or take what
//! another run computed meanwhile), keep its log and metrics with the run, unlock.

use std::time::{Duration, Instant};

use scorch_api::PluginError;

use crate::error::EngineError;
use crate::executor::NodeJob;
use crate::store::{NodeFile, NodeManifest};

/// Why a node's job published nothing.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The node's lock could not be taken.
    #[error("{0}")]
    Lock(#[from] EngineError),
    /// The run was cancelled while another run computed the node.
    #[error("cancelled while another run computed it")]
    CancelledWhileWaiting,
    /// The last attempt failed (after `attempts` in all).
    #[error("{source}{}", if *.attempts > 1 { format!(" (after {} attempts)", .attempts) } else { String::new() })]
    Attempts {
        /// Attempts made.
        attempts: u32,
        /// The last one's error.
        #[source]
        source: PluginError,
    },
}

/// How a node's job ended.
#[derive(Debug)]
pub struct Finished {
    /// The node's place in the workflow.
    pub index: usize,
    /// Its manifest, or the error (secrets not yet redacted).
    pub result: Result<NodeManifest, JobError>,
    /// The run that computed the node while this one waited for it.
    pub computed_by: Option<crate::lease::Computer>,
    /// It stopped because it was cancelled.
    pub cancelled: bool,
    /// Attempts made.
    pub attempts: u32,
    /// From start to end, waits included.
    pub elapsed: Duration,
    /// Cluster job ids of its attempts.
    pub jobs: Vec<String>,
}

impl NodeJob {
    /// Lock the node against other runs, compute it (or take what another run computed
    /// meanwhile), unlock.
    pub async fn execute(self) -> Finished {
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
                return finished(Err(JobError::CancelledWhileWaiting), true, None);
            }
            Err(e) => return finished(Err(JobError::Lock(e)), false, None),
        }
        let done = self.compute(start).await;
        if let Err(e) = crate::lease::unlock_node(&self.store, &key).await {
            tracing::warn!(node = %id, error = %e, "cannot release the node's lock; it expires with the run's lease");
        }
        done
    }

    /// Attempts until one succeeds, the error is not worth a retry, or the retries run out.
    async fn compute(&self, start: Instant) -> Finished {
        let mut attempts = 0;
        let mut jobs = Vec::new();
        loop {
            attempts += 1;
            let result = self.executor.attempt(self, attempts, &mut jobs).await;
            self.keep(NodeFile::Log).await;
            self.keep(NodeFile::Metrics).await;
            let e = match result {
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
                Err(e) => e,
            };
            let cancelled = !e.is_retryable() || self.cancel.is_cancelled();
            if cancelled || attempts > self.node.retries {
                return Finished {
                    index: self.index,
                    result: Err(JobError::Attempts {
                        attempts,
                        source: e,
                    }),
                    computed_by: None,
                    cancelled,
                    attempts,
                    elapsed: start.elapsed(),
                    jobs,
                };
            }
            let e = self.secrets.redact_str(&e.to_string());
            tracing::warn!(node = %self.node.id, attempt = attempts, error = %e, "node failed; retrying");
            // The first retry waits `backoff`, each next one twice as long, at most 1,024 times.
            let delay = scorch_api::backoff::Backoff {
                first: self.backoff,
                max: self.backoff.saturating_mul(1024),
            }
            .delay(attempts);
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => {}
            }
        }
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
}
