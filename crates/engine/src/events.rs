//! What a run reports as it goes, to whoever watches it: `scorch run --json` (one JSON object
//! per line), the trackers (MLflow, TensorBoard), and each node's metrics file in the store.
//!
//! The engine calls every [`Observer`] in order on the thread that produced the event (the
//! scheduler, or a node reporting progress), so an observer returns at once and does slow
//! work (HTTP, disk) elsewhere; [`Observer::finish`] waits for that work at the end of a run.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use scorch_api::Metric;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::record::{Outcome, RunRecord};

/// One thing that happened in a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began; its record exists.
    RunStarted {
        /// Run id.
        run: String,
        /// Workflow name.
        workflow: String,
        /// Store URL.
        store: String,
        /// The workflow's nodes, in topological order.
        nodes: Vec<String>,
        /// The workflow's variables after profiles and `--set`s, as written.
        vars: serde_json::Map<String, Value>,
    },
    /// A node started computing.
    NodeStarted {
        /// Node id.
        node: String,
        /// Plugin kind.
        kind: String,
        /// Cache key.
        key: String,
        /// Canonical params (secrets as `${env.NAME}`).
        params: Value,
    },
    /// A node's result was found in the store.
    NodeCached {
        /// Node id.
        node: String,
        /// Cache key.
        key: String,
    },
    /// How far a running node is (at most one a second per node, and its last).
    Progress {
        /// Node id.
        node: String,
        /// Units done.
        done: u64,
        /// Units in all (0 when unknown).
        total: u64,
        /// The node's status line (`loss 0.412`).
        message: String,
        /// Seconds since the node started.
        elapsed_s: f64,
        /// Seconds left, from the pace so far.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eta_s: Option<f64>,
    },
    /// A metric a running node reported.
    Metric(MetricLine),
    /// A node finished: ran, failed or was cancelled (cached nodes: [`Event::NodeCached`]).
    NodeFinished {
        /// Node id.
        node: String,
        /// What happened.
        outcome: Outcome,
        /// Wall time, milliseconds.
        duration_ms: u64,
        /// The node's summary metrics, as in its manifest.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        metrics: Vec<Metric>,
        /// The error, for a failed node (secrets redacted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The run ended; the record as stored.
    RunFinished(RunRecord),
}

/// One metric value of one node at a moment: a line of a node's metrics file and the body of
/// [`Event::Metric`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricLine {
    /// Node id.
    pub node: String,
    /// Metric name (`loss`, `reward`).
    pub name: String,
    /// Training step, when the metric has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// The value.
    pub value: f64,
    /// When, in seconds since the Unix epoch.
    pub time: f64,
}

/// Seconds since the Unix epoch, now.
pub fn unix_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Whoever watches a run.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// Something happened; return at once.
    fn event(&self, event: &Event);
    /// The run is over (after [`Event::RunFinished`]): deliver what is still buffered.
    /// Called on a blocking thread.
    fn finish(&self) {}
}

/// `scorch run --json`: each event as one JSON object on stdout; the last is the run record
/// (`"event": "run_finished"` and the record's fields).
#[derive(Debug, Default)]
pub struct JsonLines;

impl Observer for JsonLines {
    fn event(&self, event: &Event) {
        let Ok(line) = serde_json::to_string(event) else {
            return;
        };
        // Whole lines: stdout's lock is held for the line.
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) must not stop the run.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

/// Appends each running node's metrics to `DIR/<node>.metrics.jsonl` as they come (the
/// engine keeps the file with the run when the node's attempt ends).
#[derive(Debug)]
pub struct MetricsFiles {
    dir: PathBuf,
    open: Mutex<HashMap<String, std::fs::File>>,
}

impl MetricsFiles {
    /// Files in `dir` (the run's live log folder).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn append(&self, m: &MetricLine) -> std::io::Result<()> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        if !open.contains_key(&m.node) {
            std::fs::create_dir_all(&self.dir)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(format!("{}.metrics.jsonl", m.node)))?;
            open.insert(m.node.clone(), f);
        }
        let line = serde_json::to_string(m).map_err(std::io::Error::other)?;
        match open.get_mut(&m.node) {
            Some(f) => writeln!(f, "{line}"),
            None => Ok(()),
        }
    }
}

impl Observer for MetricsFiles {
    fn event(&self, event: &Event) {
        match event {
            Event::Metric(m) => {
                if let Err(e) = self.append(m) {
                    tracing::warn!(node = %m.node, error = %e, "cannot write the node's metrics file");
                }
            }
            Event::NodeFinished { node, .. } => {
                if let Ok(mut open) = self.open.lock() {
                    open.remove(node);
                }
                let _ = std::fs::remove_file(self.dir.join(format!("{node}.metrics.jsonl")));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_json_and_read_back() {
        let e = Event::Metric(MetricLine {
            node: "sft".into(),
            name: "loss".into(),
            step: Some(3),
            value: 0.5,
            time: 1.0,
        });
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(
            s,
            r#"{"event":"metric","node":"sft","name":"loss","step":3,"value":0.5,"time":1.0}"#
        );
        let back: Event = serde_json::from_str(&s).unwrap();
        assert!(matches!(back, Event::Metric(m) if m.step == Some(3)));
    }

    #[test]
    fn metrics_files_append_per_node_and_go_when_the_node_ends() {
        let dir = tempfile::tempdir().unwrap();
        let files = MetricsFiles::new(dir.path().join("run"));
        for step in 0..3 {
            files.event(&Event::Metric(MetricLine {
                node: "a".into(),
                name: "loss".into(),
                step: Some(step),
                value: step as f64,
                time: 0.0,
            }));
        }
        let path = dir.path().join("run/a.metrics.jsonl");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<MetricLine> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.iter().map(|m| m.step).collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2)]
        );
        files.event(&Event::NodeFinished {
            node: "a".into(),
            outcome: Outcome::Ran,
            duration_ms: 1,
            metrics: vec![],
            error: None,
        });
        assert!(!path.exists());
    }
}
