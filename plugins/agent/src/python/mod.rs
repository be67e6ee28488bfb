//! `python`: a real CPython process per trajectory, whose state lasts across steps.
//!
//! Layers of protection, each enough for its own class of hostile code:
//! - the process runs in its own network namespace (no network at all) and mount namespace
//!   where everything but the scratch folder is read-only, when `unshare` is permitted;
//! - an audit hook (PEP 578) refuses opening files outside the scratch folder (reads of
//!   the Python installation excepted), processes, signals, sockets, `ctypes`, limit
//!   changes and the frame and garbage-collector introspection that could reach the hook;
//! - an import allow-list for the step's own `import` statements;
//! - resource limits (address space, file size, open files) and a per-step timeout after
//!   which the process is killed; the next step starts a fresh process and replays the
//!   earlier steps' code to restore the state;
//! - output is capped.
//!
//! A refusal or a failure becomes the step's observation; nothing reaches the host.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use serde::Deserialize;

use crate::tool::{Tool, ToolOutput};

const WORKER: &str = include_str!("sandbox.py");
const JAIL: &str = include_str!("jail.sh");

/// Modules a step may import by default.
pub const DEFAULT_IMPORTS: &[&str] = &[
    "bisect",
    "cmath",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "itertools",
    "json",
    "math",
    "numpy",
    "operator",
    "pprint",
    "random",
    "re",
    "statistics",
    "string",
    "sympy",
    "textwrap",
    "time",
    "typing",
    "unicodedata",
];

/// Limits of the Python tool.
#[derive(Debug, Clone)]
pub struct PythonOptions {
    /// The interpreter.
    pub python: PathBuf,
    /// Per-step wall-clock limit.
    pub timeout: Duration,
    /// Address-space limit in bytes.
    pub memory_bytes: u64,
    /// Characters of output kept per step.
    pub output_limit: usize,
    /// Modules a step may import.
    pub imports: Vec<String>,
    /// Use the namespace jail when the system permits it.
    pub jail: bool,
}

impl Default for PythonOptions {
    fn default() -> Self {
        Self {
            python: PathBuf::from("python3"),
            timeout: Duration::from_secs(10),
            memory_bytes: 2 << 30,
            output_limit: 16_000,
            imports: DEFAULT_IMPORTS.iter().map(|s| (*s).to_owned()).collect(),
            jail: true,
        }
    }
}

/// Whether `unshare --net --mount` works here (probed once).
pub fn jail_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("unshare")
            .args(["--net", "--mount", "--fork", "--", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[derive(Debug, Deserialize)]
struct Reply {
    output: String,
    error: Option<String>,
    #[serde(rename = "final")]
    final_answer: Option<String>,
}

struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<String>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One trajectory's Python interpreter.
pub struct PythonTool {
    options: PythonOptions,
    dir: tempfile::TempDir,
    worker: Option<Worker>,
    /// Code of the steps run so far, replayed after a restart.
    history: Vec<String>,
    jailed: bool,
}

impl std::fmt::Debug for PythonTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonTool")
            .field("scratch", &self.scratch())
            .field("steps", &self.history.len())
            .finish()
    }
}

/// Why the tool could not start.
#[derive(Debug, thiserror::Error)]
#[error("python tool: {0}")]
pub struct PythonError(pub String);

impl PythonTool {
    /// A fresh interpreter with a private scratch folder.
    pub fn new(options: PythonOptions) -> Result<Self, PythonError> {
        let dir = tempfile::Builder::new()
            .prefix("scorch-py-")
            .tempdir()
            .map_err(|e| PythonError(e.to_string()))?;
        std::fs::create_dir(dir.path().join("scratch")).map_err(|e| PythonError(e.to_string()))?;
        std::fs::write(dir.path().join("sandbox.py"), WORKER)
            .map_err(|e| PythonError(e.to_string()))?;
        std::fs::write(dir.path().join("jail.sh"), JAIL).map_err(|e| PythonError(e.to_string()))?;
        let jailed = options.jail && jail_available();
        let mut tool = Self {
            options,
            dir,
            worker: None,
            history: Vec::new(),
            jailed,
        };
        tool.worker = Some(tool.spawn()?);
        Ok(tool)
    }

    /// The folder the code may write to.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// Whether the namespace jail is in use.
    pub fn jailed(&self) -> bool {
        self.jailed
    }

    fn spawn(&self) -> Result<Worker, PythonError> {
        let scratch = self.scratch();
        let worker_args = [
            "-I".to_owned(),
            "-u".to_owned(),
            "-X".to_owned(),
            "utf8".to_owned(),
            "-B".to_owned(),
            self.dir.path().join("sandbox.py").display().to_string(),
            scratch.display().to_string(),
            self.options.memory_bytes.to_string(),
            self.options.output_limit.to_string(),
            self.options.imports.join(","),
        ];
        let mut cmd = if self.jailed {
            let mut c = Command::new("unshare");
            c.args(["--net", "--mount", "--fork", "--kill-child", "--", "sh"])
                .arg(self.dir.path().join("jail.sh"))
                .arg(&scratch)
                .arg(&self.options.python);
            c
        } else {
            Command::new(&self.options.python)
        };
        cmd.args(&worker_args)
            .current_dir(&scratch)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &scratch)
            .env("PYTHONHASHSEED", "0")
            .env("OPENBLAS_NUM_THREADS", "1")
            .env("OMP_NUM_THREADS", "1")
            .env("MKL_NUM_THREADS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| {
            PythonError(format!(
                "cannot start {}: {e}",
                self.options.python.display()
            ))
        })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| PythonError("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| PythonError("no stdout".into()))?;
        let (tx, replies) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Worker {
            child,
            stdin,
            replies,
        })
    }

    /// Send `code` to the live worker and wait for its reply.
    fn call(&mut self, code: &str, timeout: Duration) -> Result<Reply, String> {
        let worker = self
            .worker
            .as_mut()
            .ok_or("the interpreter is not running")?;
        let request = serde_json::json!({"code": code}).to_string();
        if writeln!(worker.stdin, "{request}")
            .and_then(|()| worker.stdin.flush())
            .is_err()
        {
            return Err("the interpreter exited".into());
        }
        match worker.replies.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line)
                .map_err(|_| "the interpreter's reply was garbled".into()),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "the code ran longer than {:.0} s and was stopped",
                timeout.as_secs_f64()
            )),
            Err(RecvTimeoutError::Disconnected) => Err("the interpreter exited".into()),
        }
    }

    /// Restart the interpreter and replay the earlier steps (their output discarded).
    fn restart(&mut self) -> Result<(), String> {
        self.worker = None;
        self.worker = Some(self.spawn().map_err(|e| e.0)?);
        let history = self.history.clone();
        for code in history {
            self.call(&code, self.options.timeout)
                .map_err(|e| format!("replaying the earlier steps failed: {e}"))?;
        }
        Ok(())
    }
}

impl Tool for PythonTool {
    fn execute(&mut self, code: &str) -> ToolOutput {
        if self.worker.is_none()
            && let Err(e) = self.restart()
        {
            return ToolOutput {
                observation: format!("Error: {e}"),
                final_answer: None,
                failed: true,
            };
        }
        match self.call(code, self.options.timeout) {
            Ok(reply) => {
                self.history.push(code.to_owned());
                let mut observation = reply.output;
                let failed = reply.error.is_some();
                if let Some(err) = reply.error {
                    if !observation.is_empty() && !observation.ends_with('\n') {
                        observation.push('\n');
                    }
                    observation.push_str(&format!("Error: {}", err.trim_end()));
                }
                ToolOutput {
                    observation,
                    final_answer: reply.final_answer,
                    failed,
                }
            }
            Err(e) => {
                // The process is gone or stuck: drop it; the next step restarts and replays.
                self.worker = None;
                ToolOutput {
                    observation: format!("Error: {e}"),
                    final_answer: None,
                    failed: true,
                }
            }
        }
    }
}
