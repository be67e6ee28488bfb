//! Progress: one indicatif bar per running node on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use scorch_api::ProgressSink;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars when stderr is a terminal, lines otherwise.
    Auto,
    /// Log lines on stderr.
    Lines,
    /// Nothing (for `--json` and tests).
    Quiet,
}

/// Draws the progress of a run.
#[derive(Debug, Clone)]
pub struct Reporter {
    bars: Option<MultiProgress>,
    quiet: bool,
}

impl Reporter {
    /// A reporter for `mode`.
    pub fn new(mode: Mode) -> Self {
        let bars = (mode == Mode::Auto && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            bars,
            quiet: mode == Mode::Quiet,
        }
    }

    /// Print a line above the bars.
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// A sink for node `id`, shown until dropped.
    pub fn node(&self, id: &str) -> Arc<NodeProgress> {
        let bar = self.bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            let style = ProgressStyle::with_template(
                "{spinner} {prefix:.bold} {wide_msg} {pos}/{len} [{elapsed}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(id.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Arc::new(NodeProgress {
            id: id.to_owned(),
            bar,
            multi: self.bars.clone(),
            quiet: self.quiet,
        })
    }
}

/// The progress of one node.
#[derive(Debug)]
pub struct NodeProgress {
    id: String,
    bar: Option<ProgressBar>,
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl ProgressSink for NodeProgress {
    fn set_total(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }
    fn advance(&self, delta: u64) {
        if let Some(b) = &self.bar {
            b.inc(delta);
        }
    }
    fn message(&self, text: &str) {
        match &self.bar {
            Some(b) => b.set_message(text.to_owned()),
            None if !self.quiet => eprintln!("  {}: {text}", self.id),
            None => {}
        }
    }
}

impl Drop for NodeProgress {
    fn drop(&mut self) {
        if let (Some(b), Some(m)) = (&self.bar, &self.multi) {
            b.finish_and_clear();
            m.remove(b);
        }
    }
}
