//! Trackers against the real thing: a run's metrics, params and logs reach a real `mlflow
//! server` (read back with the mlflow client) and TensorBoard event files (read back with
//! TensorBoard's own `EventAccumulator`), through `tests/py/trackers_check.py`.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Project, text};

/// `mlflow server` on a free port of 127.0.0.1, with its process group killed on drop.
struct Mlflow {
    uri: String,
    child: Child,
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        // The whole group (uvicorn and the job consumers), and at once: on TERM uvicorn may
        // wait for its connections to close.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn start_mlflow(dir: &std::path::Path) -> Mlflow {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("mlflow.log")).unwrap();
    let child = Command::new("mlflow")
        .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--workers", "1"])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(dir.join("artifacts"))
        .current_dir(dir)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .process_group(0)
        .spawn()
        .expect("`mlflow server`: install it with `pip install mlflow` (scripts/setup does)");
    let server = Mlflow {
        uri: format!("http://127.0.0.1:{port}"),
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let up = Command::new("python3")
            .args([
                "-c",
                &format!(
                    "import urllib.request as u; u.urlopen('{}/health').read()",
                    server.uri
                ),
            ])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if up {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "mlflow server did not start: {}",
            std::fs::read_to_string(dir.join("mlflow.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

const TRAIN: &str = r#"
import json, os, sys, time
steps = int(sys.argv[1])
with open(os.environ["SCORCH_METRICS"], "a") as m:
    for s in range(steps):
        m.write(json.dumps({"name": "loss", "step": s, "value": 1.0 / (s + 1)}) + "\n")
        m.flush()
        time.sleep(0.02)
print("trained", steps)
"#;

const WORKFLOW: &str = r#"
name: tracked
vars: {steps: "20"}
trackers:
  tensorboard: {dir: tb}
nodes:
  nums: {kind: numbers, params: {n: 5}}
  train:
    kind: exec
    params: {command: [python3, train.py, "${vars.steps}"]}
    inputs: {rows: {from: nums.table}}
"#;

fn check(p: &Project, uri: &str, run: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/py/trackers_check.py"
        ))
        .args([p.path().join("tb").to_str().unwrap(), uri, "tracked", run])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_run_reports_to_mlflow_and_tensorboard_as_their_own_readers_see_it() {
    let p = Project::new();
    p.write("train.py", TRAIN);
    p.write("wf.yaml", WORKFLOW);
    let server = start_mlflow(p.path());
    let tracker = format!("mlflow={}", server.uri);
    let rec = p.run_json(&["wf.yaml", "--tracker", &tracker], 0);
    let run = rec["id"].as_str().unwrap();
    let key = common::node(&rec, "train")["key"].as_str().unwrap();
    let got = check(&p, &server.uri, run);

    // TensorBoard: every step of the live loss, and the numbers node's summary metric.
    let tb = &got["tensorboard"];
    let loss = tb["train"]["loss"].as_array().unwrap();
    assert_eq!(loss.len(), 20, "{tb}");
    for (s, point) in loss.iter().enumerate() {
        assert_eq!(point[0], s as u64);
        assert!((point[1].as_f64().unwrap() - 1.0 / (s as f64 + 1.0)).abs() < 1e-6);
    }
    assert_eq!(tb["nums"]["rows"], serde_json::json!([[0, 5.0]]));

    // MLflow: the scorch run with its vars, and a child run per node that ran.
    let ml = &got["mlflow"];
    assert_eq!(ml["parent"]["status"], "FINISHED");
    assert_eq!(ml["parent"]["record_id"], run);
    assert_eq!(ml["parent"]["params"]["vars.steps"], "20");
    assert_eq!(ml["parent"]["metrics"]["nums/rows"], 5.0);
    let train = &ml["children"]["train"];
    assert_eq!(train["status"], "FINISHED");
    assert_eq!(train["params"]["command"], r#"["python3","train.py","20"]"#);
    assert_eq!(train["tags"]["scorch.key"], key);
    let history = train["metrics"]["loss"].as_array().unwrap();
    assert_eq!(history.len(), 20, "{train}");
    assert_eq!(history[19][0], 19);
    assert!(
        train["log"].as_str().unwrap().contains("trained 20"),
        "{train}"
    );
    assert_eq!(ml["children"]["nums"]["params"]["n"], "5");

    // The live metrics are kept with the run, one JSON line each.
    let kept = std::fs::read_to_string(
        p.path()
            .join(format!(".scorch/logs/{run}/train.metrics.jsonl")),
    )
    .unwrap();
    assert_eq!(kept.lines().count(), 20);
    let first: serde_json::Value = serde_json::from_str(kept.lines().next().unwrap()).unwrap();
    assert_eq!(
        (first["name"].as_str(), first["step"].as_u64()),
        (Some("loss"), Some(0))
    );

    // A cached rerun is a new MLflow run with the summary metrics and no child runs.
    let again = p.run_json(&["wf.yaml", "--tracker", &tracker], 0);
    let got = check(&p, &server.uri, again["id"].as_str().unwrap());
    assert_eq!(got["mlflow"]["parent"]["metrics"]["nums/rows"], 5.0);
    assert_eq!(got["mlflow"]["children"], serde_json::json!({}));
}

#[test]
fn a_tracker_that_cannot_start_stops_the_run_before_anything_is_computed() {
    let p = Project::new();
    p.write("train.py", TRAIN);
    p.write("wf.yaml", WORKFLOW);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("http://127.0.0.1:{port}");
    let out = p.scorch(&["run", "wf.yaml", "--tracker", &format!("mlflow={uri}")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("MLflow at {uri}")),
        "{}",
        text(&out.stderr)
    );
    assert!(!p.path().join(".scorch/runs").exists());
    let out = p.scorch(&["run", "wf.yaml", "--tracker", "wandb=x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected `tensorboard=DIR` or `mlflow=URI`"));
}
