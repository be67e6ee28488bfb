//! `python`: a real CPython process per trajectory, whose state lasts across steps.
//!
//! Layers of protection:
//! - the boundary ([`boundary`]): bubblewrap namespaces, no capabilities, a seccomp filter, a
//!   read-only system and a private scratch folder, with no secrets in the environment. It
//!   is required: where it cannot be set up the tool refuses to start, unless the workflow
//!   chose `sandbox: none`;
//! - inside it, as defence in depth and for clear refusals: an audit hook (PEP 578) refuses opening files outside the scratch folder (reads of
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
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

use serde::Deserialize;

use crate::tool::{Tool, ToolOutput};

mod boundary;

pub use boundary::Sandbox;

const WORKER: &str = include_str!("sandbox.py");

/// The worker's environment besides `PATH` and `HOME`: one thread per numeric library.
const WORKER_ENV: &[(&str, &str)] = &[
    ("PYTHONHASHSEED", "0"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("OMP_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
];

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
    /// The boundary around the interpreter.
    pub sandbox: Sandbox,
}

impl Default for PythonOptions {
    fn default() -> Self {
        Self {
            python: PathBuf::from("python3"),
            timeout: Duration::from_secs(10),
            memory_bytes: 2 << 30,
            output_limit: 16_000,
            imports: DEFAULT_IMPORTS.iter().map(|s| (*s).to_owned()).collect(),
            sandbox: Sandbox::Bwrap,
        }
    }
}

/// Why the boundary cannot be set up for `python` here, or `None` where it can (probed once
/// per interpreter).
pub fn sandbox_unavailable(python: &std::path::Path) -> Option<String> {
    boundary::check(python).err().map(|e| e.to_string())
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
    /// The interpreter inside the boundary; `None` with `Sandbox::None`.
    confined: Option<boundary::Interpreter>,
}

impl std::fmt::Debug for PythonTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonTool")
            .field("scratch", &self.scratch())
            .field("steps", &self.history.len())
            .finish()
    }
}

/// Why a step's code got no reply from the interpreter.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("the interpreter is not running")]
    NotRunning,
    #[error("the interpreter exited")]
    Exited,
    #[error("the interpreter's reply was garbled")]
    Garbled,
    #[error("the code ran longer than {seconds:.0} s and was stopped")]
    Timeout { seconds: f64 },
    #[error("{0}")]
    Start(String),
    #[error("replaying the earlier steps failed: {0}")]
    Replay(#[source] Box<CallError>),
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
        let confined = match options.sandbox {
            Sandbox::Bwrap => Some(boundary::check(&options.python).map_err(|why| {
                PythonError(format!(
                    "the sandbox cannot be set up here: {why}. Install bubblewrap \
                     (`apt-get install bubblewrap`) on a system that permits user namespaces, \
                     or set `sandbox: none` in the node's params to run model-written code \
                     without a boundary"
                ))
            })?),
            Sandbox::None => None,
        };
        boundary::write_files(dir.path(), WORKER).map_err(|e| PythonError(e.to_string()))?;
        let mut tool = Self {
            options,
            dir,
            worker: None,
            history: Vec::new(),
            confined,
        };
        tool.worker = Some(tool.spawn()?);
        Ok(tool)
    }

    /// The folder the code may write to.
    pub fn scratch(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// Whether the interpreter runs inside the boundary.
    pub fn sandboxed(&self) -> bool {
        self.confined.is_some()
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
        let mut cmd = match &self.confined {
            Some(interp) => boundary::command(
                self.dir.path(),
                &scratch,
                interp,
                &interp.executable,
                &worker_args,
            ),
            None => {
                let mut c = Command::new(&self.options.python);
                c.args(&worker_args)
                    .env_clear()
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .env("HOME", &scratch)
                    .envs(WORKER_ENV.iter().copied());
                c
            }
        };
        cmd.current_dir(&scratch)
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
    fn call(&mut self, code: &str, timeout: Duration) -> Result<Reply, CallError> {
        let worker = self.worker.as_mut().ok_or(CallError::NotRunning)?;
        let request = serde_json::json!({"code": code}).to_string();
        if writeln!(worker.stdin, "{request}")
            .and_then(|()| worker.stdin.flush())
            .is_err()
        {
            return Err(CallError::Exited);
        }
        match worker.replies.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line).map_err(|_| CallError::Garbled),
            Err(RecvTimeoutError::Timeout) => Err(CallError::Timeout {
                seconds: timeout.as_secs_f64(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(CallError::Exited),
        }
    }

    /// Restart the interpreter and replay the earlier steps (their output discarded).
    fn restart(&mut self) -> Result<(), CallError> {
        self.worker = None;
        self.worker = Some(self.spawn().map_err(|e| CallError::Start(e.0))?);
        let history = self.history.clone();
        for code in history {
            self.call(&code, self.options.timeout)
                .map_err(|e| CallError::Replay(Box::new(e)))?;
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
