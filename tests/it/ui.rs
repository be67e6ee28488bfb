//! `scorch ui` in a real headless Chromium (Debian's `chromium`, driven by Playwright in
//! `tests/py/ui_check.py`): a run in progress shows its node turn from running to done
//! without a reload, with its metric curve, its log and the artifact browser.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, text};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `scorch ui` on a free port of 127.0.0.1, once it listens.
fn start_ui(p: &Project) -> (Killed, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let ui = Killed(
        p.cmd(&["ui", "--addr", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "scorch ui never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    (ui, addr)
}

const SLOW: &str = r#"
import json, os, sys, time
release = sys.argv[1]
with open(os.environ["SCORCH_METRICS"], "a") as m:
    for s in range(10):
        m.write(json.dumps({"name": "loss", "step": s, "value": 2.0 / (s + 1)}) + "\n")
print("waiting for", release, flush=True)
deadline = time.time() + 120
while not os.path.exists(release) and time.time() < deadline:
    time.sleep(0.1)
with open(os.environ["SCORCH_METRICS"], "a") as m:
    for s in range(10, 15):
        m.write(json.dumps({"name": "loss", "step": s, "value": 2.0 / (s + 1)}) + "\n")
print("released", flush=True)
"#;

#[test]
fn a_running_node_turns_done_in_the_browser_without_a_reload() {
    let p = Project::new();
    p.write("slow.py", SLOW);
    p.write(
        "wf.yaml",
        "name: live\nnodes:\n  nums: {kind: numbers, params: {n: 5}}\n  slow:\n    kind: exec\n    \
         params: {command: [python3, slow.py, release]}\n    inputs: {rows: {from: nums.table}}\n",
    );
    let run = Killed(
        p.cmd(&["run", "wf.yaml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let (_ui, addr) = start_ui(&p);
    // The run's id, once its record exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let runs = p.path().join(".scorch/runs");
        if let Some(e) = std::fs::read_dir(&runs).ok().and_then(|mut d| d.next()) {
            break e
                .unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
        }
        assert!(Instant::now() < deadline, "the run never started");
        std::thread::sleep(Duration::from_millis(100));
    };
    let shot = p.path().join("ui.png");
    let out = Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/ui_check.py"))
        .args([&format!("http://{addr}"), &id, "slow"])
        .arg(p.path().join("release"))
        .arg(&shot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["running"], true);
    assert_eq!(seen["chart_while_running"], "loss (10 points)");
    assert!(
        seen["log_while_running"]
            .as_str()
            .unwrap()
            .contains("waiting for")
    );
    assert_eq!(seen["marker_after"], 42, "the page reloaded");
    assert_eq!(seen["run_status"], "succeeded");
    assert_eq!(seen["columns"], serde_json::json!(["i", "x"]));
    assert_eq!(seen["rows"], 5);
    assert_eq!(seen["chart_after"], "loss (15 points)");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    drop(run);
}

#[test]
fn the_api_says_what_is_missing() {
    let p = Project::new();
    let (_ui, addr) = start_ui(&p);
    let get = |path: &str| {
        let code = format!(
            "import urllib.request as u, urllib.error as e\ntry:\n  r = u.urlopen('http://{addr}{path}'); print(r.status, r.read().decode())\nexcept e.HTTPError as x:\n  print(x.code, x.read().decode())"
        );
        let out = Command::new("python3")
            .args(["-c", &code])
            .output()
            .unwrap();
        text(&out.stdout)
    };
    assert!(get("/").contains("scorch runs"));
    assert_eq!(get("/api/runs").trim(), "200 []");
    assert!(get("/api/runs/nope").starts_with("404 {\"error\":\"no run `nope`\"}"));
    assert!(get("/api/artifacts/..%2Fruns").starts_with("400"));
}
