//! Helpers shared by the end-to-end tests: run the real `scorch` binary in a temp folder.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use scorch_testkit::s3;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temp project folder.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_scorch"));
        c.args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env_remove("SCORCH_STORE")
            .env("SCORCH_RETRY_BACKOFF_MS", "10");
        c
    }
    pub fn scorch(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run scorch")
    }
    /// Run with `--json` and parse the run record; panics with the output on a bad exit.
    pub fn run_json(&self, args: &[&str], expect_code: i32) -> serde_json::Value {
        let mut a = vec!["run"];
        a.extend_from_slice(args);
        a.push("--json");
        let out = self.scorch(&a);
        assert_eq!(
            out.status.code(),
            Some(expect_code),
            "scorch {a:?}\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        );
        run_record(&out.stdout)
    }
}

/// The run record that `scorch run --json` prints last, after its events (one per line);
/// panics unless every line is a JSON event and the last is `run_finished`.
pub fn run_record(stdout: &[u8]) -> serde_json::Value {
    let out = text(stdout);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{out}"))
        })
        .collect();
    let last = events.last().cloned().unwrap_or_default();
    assert_eq!(last["event"], "run_finished", "{out}");
    last
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `{node id: outcome}` of a run record.
pub fn outcomes(record: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    record["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_owned(),
                n["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Nodes of a record with the given outcome, sorted.
pub fn with_outcome(record: &serde_json::Value, outcome: &str) -> Vec<String> {
    outcomes(record)
        .into_iter()
        .filter(|(_, o)| o == outcome)
        .map(|(k, _)| k)
        .collect()
}

pub const DIAMOND: &str = r#"
name: diamond
vars:
  n: 20
nodes:
  nums:
    kind: numbers
    params: {n: "${vars.n}"}
  doubled:
    kind: affine
    params: {scale: 2}
    inputs: {table: {from: nums.table}}
  shifted:
    kind: affine
    params: {offset: 5}
    inputs: {table: {from: nums.table}}
  sum_doubled:
    kind: total
    inputs: {table: {from: doubled.table}}
  sum_shifted:
    kind: total
    inputs: {table: {from: shifted.table}}
"#;

/// The record of node `id` in a run record (`run --json`).
pub fn node<'a>(rec: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    rec["nodes"]
        .as_array()
        .expect("a run record has nodes")
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id}"))
}

/// A tree workflow of `n` cheap nodes: one `numbers` root, `affine` nodes each reading node
/// (i-1)/2, every tenth a `total`.
pub fn tree_workflow(n: usize) -> String {
    use std::fmt::Write;
    let mut y = String::from("name: tree\nnodes:\n  n0: {kind: numbers, params: {n: 64}}\n");
    for i in 1..n {
        let parent = (i - 1) / 2;
        let parent = if parent % 10 == 0 && parent != 0 {
            parent - 1
        } else {
            parent
        };
        if i % 10 == 0 {
            let _ = writeln!(
                y,
                "  n{i}: {{kind: total, params: {{label: n{i}}}, inputs: {{table: {{from: n{parent}.table}}}}}}"
            );
        } else {
            let _ = writeln!(
                y,
                "  n{i}: {{kind: affine, params: {{scale: {}, offset: {i}}}, inputs: {{table: {{from: n{parent}.table}}}}}}",
                i % 7 + 1
            );
        }
    }
    y
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A `scorch serve` process, killed when dropped.
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `scorch serve ARGS --addr 127.0.0.1:0` in `dir`; returns the server, its base URL
/// (from the line it prints first) and its stderr (a line per request).
pub fn serve(dir: &Path, args: &[&str]) -> (Server, String, std::process::ChildStderr) {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_scorch"))
        .arg("serve")
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("SCORCH_STORE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start scorch serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the first line");
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line}"))
        .to_owned();
    (Server(child), url, stderr)
}

/// A scripted OpenAI-compatible server's side of one connection: the chat request it reads
/// (its JSON body), or `None` when the request does not parse.
pub fn read_chat_request(stream: &std::net::TcpStream) -> Option<serde_json::Value> {
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(stream.try_clone().ok()?);
    let mut len = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// Answer a chat request on `stream` with `content` (5 prompt and 3 completion tokens).
pub fn write_chat_reply(stream: &mut std::net::TcpStream, content: &str) -> Option<()> {
    use std::io::Write;
    let body = serde_json::json!({
        "id": "x", "object": "chat.completion", "created": 0, "model": "scripted",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    })
    .to_string();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()
}

/// The first file of output `output` of node `node` in run record `rec`, in the file store
/// at folder `store` (e.g. `.scorch`).
pub fn output_file(store: &Path, rec: &serde_json::Value, node: &str, output: &str) -> PathBuf {
    let n = self::node(rec, node);
    let hash = n["outputs"][output]["artifact"]
        .as_str()
        .unwrap_or_else(|| panic!("{node}.{output}: {n}"));
    let a: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join(format!("artifacts/{hash}.json"))).expect("the artifact"),
    )
    .expect("an artifact parses");
    store
        .join("objects")
        .join(a["files"][0]["object"].as_str().expect("a file"))
}
