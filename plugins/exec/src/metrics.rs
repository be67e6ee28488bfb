//! Metrics from the command: it may append JSON lines `{"name": "loss", "value": 0.4,
//! "step": 12}` (`step` optional) to the file named by `SCORCH_METRICS`; each complete line is
//! reported as it appears (shown live, kept with the run, sent to trackers). A line that is
//! not such an object is noted in the node's log and skipped.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use scorch_api::ProgressSink;
use serde::Deserialize;

/// How often the file is read while the command runs.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    name: String,
    value: f64,
    #[serde(default)]
    step: Option<u64>,
}

/// Follows the metrics file of one command.
#[derive(Debug)]
pub(crate) struct MetricsFile {
    path: PathBuf,
    offset: u64,
    log: PathBuf,
}

impl MetricsFile {
    pub(crate) fn new(path: PathBuf, log: &Path) -> Self {
        Self {
            path,
            offset: 0,
            log: log.to_path_buf(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Report the complete lines written since the last read.
    pub(crate) fn read_new(&mut self, progress: &dyn ProgressSink) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            return;
        }
        let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        self.offset += end as u64 + 1;
        for line in String::from_utf8_lossy(&buf[..end]).lines() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Line>(line) {
                Ok(m) => progress.metric(&m.name, m.step, m.value),
                Err(e) => self.note(&format!(
                    "scorch: skipped a line of $SCORCH_METRICS ({e}): {}",
                    line.chars().take(200).collect::<String>()
                )),
            }
        }
    }

    fn note(&self, text: &str) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(f, "{text}");
        }
    }

    /// Read every [`POLL`] until dropped (run beside the command).
    pub(crate) async fn follow(&mut self, progress: &dyn ProgressSink) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(POLL).await;
            self.read_new(progress);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(String, Option<u64>, f64)>>);
    impl ProgressSink for Seen {
        fn set_total(&self, _: u64) {}
        fn advance(&self, _: u64) {}
        fn message(&self, _: &str) {}
        fn metric(&self, name: &str, step: Option<u64>, value: f64) {
            self.0.lock().unwrap().push((name.into(), step, value));
        }
    }

    #[test]
    fn complete_lines_are_reported_once_and_bad_ones_noted() {
        let dir = tempfile::tempdir().unwrap();
        let (path, log) = (dir.path().join("m.jsonl"), dir.path().join("log"));
        std::fs::write(&log, "").unwrap();
        let mut f = MetricsFile::new(path.clone(), &log);
        let seen = Seen::default();
        f.read_new(&seen);
        std::fs::write(
            &path,
            "{\"name\":\"loss\",\"value\":1.5,\"step\":0}\nnot json\n{\"name\":\"loss\",\"va",
        )
        .unwrap();
        f.read_new(&seen);
        assert_eq!(*seen.0.lock().unwrap(), [("loss".into(), Some(0), 1.5)]);
        // The rest of the half-written line arrives.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("lue\":2}\n");
        std::fs::write(&path, text).unwrap();
        f.read_new(&seen);
        assert_eq!(
            *seen.0.lock().unwrap(),
            [("loss".into(), Some(0), 1.5), ("loss".into(), None, 2.0)]
        );
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("skipped a line")
        );
    }
}
