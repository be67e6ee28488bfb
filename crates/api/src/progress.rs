use serde::{Deserialize, Serialize};

/// Where a node reports its progress; the engine draws bars or log lines from it.
pub trait ProgressSink: Send + Sync {
    /// The amount of work, in the plugin's own units (tasks, steps...).
    fn set_total(&self, total: u64);
    /// `delta` more units done.
    fn advance(&self, delta: u64);
    /// A short status line ("epoch 2", "loss 0.41").
    fn message(&self, text: &str);
    /// A metric as the work goes (a training step's loss): shown live, kept in the run's
    /// metrics file and sent to trackers. The node's summary metrics
    /// ([`crate::NodeContext::metric`]) go into its manifest instead.
    fn metric(&self, _name: &str, _step: Option<u64>, _value: f64) {}
}

/// A progress sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn set_total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn message(&self, _: &str) {}
}

/// One reported metric value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Metric name (`loss`, `accuracy`).
    pub name: String,
    /// Optional step (training step, epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// The value.
    pub value: f64,
}
