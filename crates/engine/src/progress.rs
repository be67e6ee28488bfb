//! Progress: one indicatif bar per running node on a terminal (done of total, the node's
//! status such as its loss, and an ETA); otherwise a log line per node at most every
//! [`LINE_EVERY`], with the same figures.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use scorch_api::ProgressSink;

use crate::events::{Event, MetricLine, Observer, unix_time};

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

/// Least time between two log lines of one node (not on a terminal).
pub const LINE_EVERY: Duration = Duration::from_secs(15);

/// Least time between two progress events of one node (for `--json` and the observers).
pub const EVENT_EVERY: Duration = Duration::from_secs(1);

/// Draws the progress of a run and tells its observers what happens.
#[derive(Debug, Clone)]
pub struct Reporter {
    bars: Option<MultiProgress>,
    quiet: bool,
    observers: Vec<Arc<dyn Observer>>,
}

impl Reporter {
    /// A reporter for `mode`.
    pub fn new(mode: Mode) -> Self {
        let bars = (mode == Mode::Auto && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            bars,
            quiet: mode == Mode::Quiet,
            observers: Vec::new(),
        }
    }

    /// The same reporter, telling `observer` too.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Tell every observer.
    pub fn emit(&self, event: &Event) {
        for o in &self.observers {
            o.event(event);
        }
    }

    /// The run is over: wait for every observer to deliver what it buffered.
    pub async fn finish(&self) {
        let observers = self.observers.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for o in observers {
                o.finish();
            }
        })
        .await;
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
            // The ETA from the same function as log lines and events: none before the
            // first step is done (indicatif's own `{eta}` reads 0s then).
            let style = ProgressStyle::with_template(
                "{spinner} {prefix:.bold} {wide_msg} {pos}/{len} [{elapsed}{left}]",
            )
            .map(|s| {
                s.with_key(
                    "left",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let left = state
                            .len()
                            .and_then(|len| eta(state.pos(), len, state.elapsed()));
                        if let Some(left) = left {
                            let _ = write!(w, ", ETA {}", clock(left));
                        }
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(id.to_owned());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Arc::new(NodeProgress {
            id: id.to_owned(),
            bar,
            reporter: self.clone(),
            lines: Mutex::new(Lines {
                start: Instant::now(),
                last: None,
                last_event: None,
                message: String::new(),
            }),
            pos: AtomicU64::new(0),
            len: AtomicU64::new(0),
        })
    }
}

/// The progress of one node.
#[derive(Debug)]
pub struct NodeProgress {
    id: String,
    bar: Option<ProgressBar>,
    /// The run's reporter: its bars, its quiet mode, its observers.
    reporter: Reporter,
    lines: Mutex<Lines>,
    pos: AtomicU64,
    len: AtomicU64,
}

/// What the log lines of a node need to remember.
#[derive(Debug)]
struct Lines {
    start: Instant,
    last: Option<Instant>,
    last_event: Option<Instant>,
    message: String,
}

impl NodeProgress {
    /// Without a bar: a line if the last one (or the start) is [`LINE_EVERY`] old, or if
    /// `force`.
    fn log(&self, force: bool) {
        if self.bar.is_some() || self.reporter.quiet {
            return;
        }
        let Ok(mut lines) = self.lines.lock() else {
            return;
        };
        let now = Instant::now();
        if !force && now - lines.last.unwrap_or(lines.start) < LINE_EVERY {
            return;
        }
        lines.last = Some(now);
        let line = line_text(
            &self.id,
            self.pos.load(Ordering::Relaxed),
            self.len.load(Ordering::Relaxed),
            &lines.message,
            now - lines.start,
        );
        eprintln!("{line}");
    }

    /// A progress event if the last one is [`EVENT_EVERY`] old, or the work is done.
    fn event(&self) {
        if self.reporter.observers.is_empty() {
            return;
        }
        let (pos, len) = (
            self.pos.load(Ordering::Relaxed),
            self.len.load(Ordering::Relaxed),
        );
        let Ok(mut lines) = self.lines.lock() else {
            return;
        };
        let now = Instant::now();
        let due = lines.last_event.is_none_or(|t| now - t >= EVENT_EVERY);
        let last = len > 0 && pos >= len;
        if !(due || last) {
            return;
        }
        lines.last_event = Some(now);
        let elapsed = now - lines.start;
        let event = Event::Progress {
            node: self.id.clone(),
            done: pos,
            total: len,
            message: lines.message.clone(),
            elapsed_s: elapsed.as_secs_f64(),
            eta_s: eta(pos, len, elapsed).map(|d| d.as_secs_f64()),
        };
        drop(lines);
        self.reporter.emit(&event);
    }
}

/// One log line: `  sft: 120/360 (33%), loss 0.412, 1m 30s, ETA 3m 0s`.
fn line_text(id: &str, pos: u64, len: u64, message: &str, elapsed: Duration) -> String {
    let mut out = format!("  {id}:");
    if let Some(percent) = (pos * 100).checked_div(len) {
        out.push_str(&format!(" {pos}/{len} ({percent}%)"));
    }
    if !message.is_empty() {
        out.push_str(&format!("{} {message}", if len > 0 { "," } else { "" }));
    }
    out.push_str(&format!(", {}", clock(elapsed)));
    if let Some(left) = eta(pos, len, elapsed) {
        out.push_str(&format!(", ETA {}", clock(left)));
    }
    out
}

/// The time left at the pace so far, while some but not all of the work is done.
fn eta(pos: u64, len: u64, elapsed: Duration) -> Option<Duration> {
    (len > 0 && pos > 0 && pos < len).then(|| elapsed.mul_f64((len - pos) as f64 / pos as f64))
}

/// `1h 2m`, `3m 4s`, `5s`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

impl ProgressSink for NodeProgress {
    fn set_total(&self, total: u64) {
        self.len.store(total, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_length(total);
        }
    }
    fn advance(&self, delta: u64) {
        self.pos.fetch_add(delta, Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.inc(delta);
        }
        self.log(false);
        self.event();
    }
    fn message(&self, text: &str) {
        if let Some(b) = &self.bar {
            b.set_message(text.to_owned());
        }
        // Kept for the next line, which an advance writes.
        if let Ok(mut lines) = self.lines.lock() {
            text.clone_into(&mut lines.message);
        }
    }
    fn metric(&self, name: &str, step: Option<u64>, value: f64) {
        let event = Event::Metric(MetricLine {
            node: self.id.clone(),
            name: name.to_owned(),
            step,
            value,
            time: unix_time(),
        });
        self.reporter.emit(&event);
    }
}

impl Drop for NodeProgress {
    fn drop(&mut self) {
        if let (Some(b), Some(m)) = (&self.bar, &self.reporter.bars) {
            b.finish_and_clear();
            m.remove(b);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_says_done_of_total_the_status_and_the_time_left() {
        let l = line_text("warm_sft", 120, 360, "loss 0.412", Duration::from_secs(90));
        assert_eq!(
            l,
            "  warm_sft: 120/360 (33%), loss 0.412, 1m 30s, ETA 3m 0s"
        );
        let l = line_text("eval", 0, 0, "turn 3", Duration::from_secs(5));
        assert_eq!(l, "  eval: turn 3, 5s");
        let l = line_text("sft", 360, 360, "", Duration::from_secs(3725));
        assert_eq!(l, "  sft: 360/360 (100%), 1h 2m");
    }

    #[test]
    fn lines_come_at_most_every_interval_unless_forced() {
        let p = Reporter::new(Mode::Lines).node("n");
        p.set_total(10);
        p.message("loss 1.0");
        p.advance(1);
        assert_eq!(
            p.lines.lock().unwrap().last,
            None,
            "no line in the first interval"
        );
        p.log(true);
        let first = p.lines.lock().unwrap().last;
        assert!(first.is_some());
        p.advance(1);
        assert_eq!(p.lines.lock().unwrap().last, first, "none again at once");
        // An interval later, an advance writes one.
        p.lines.lock().unwrap().last = Some(Instant::now() - LINE_EVERY);
        p.advance(1);
        assert_ne!(p.lines.lock().unwrap().last, first);
        assert_eq!(p.pos.load(Ordering::Relaxed), 3);
        assert_eq!(p.lines.lock().unwrap().message, "loss 1.0");
    }
}
