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

/// Run `tests/py/SCRIPT` (Playwright in Debian's headless Chromium) with `args`; what it
/// saw, as the JSON it prints.
fn browse(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(format!("{}/tests/py/{script}", env!("CARGO_MANIFEST_DIR")))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
    let release = p.path().join("release").display().to_string();
    let seen = browse(
        "ui_check.py",
        &[
            &format!("http://{addr}"),
            &id,
            "slow",
            &release,
            &shot.display().to_string(),
        ],
    );
    assert_eq!(seen["running"], true);
    assert_eq!(seen["chart_while_running"], "loss (10 points)");
    assert!(
        seen["log_while_running"]
            .as_str()
            .unwrap()
            .contains("waiting for")
    );
    assert_eq!(seen["marker_after"], 42, "the page reloaded");
    assert_eq!(seen["zoom_kept_live"], true, "{seen}");
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

/// The main job's smoke run, the same with another warm-start learning rate, and a workflow
/// of 40 nodes, in one store; `tests/py/ui_views.py` opens them as a new user would.
#[test]
fn the_run_page_shows_results_first_the_whole_dag_curves_and_runs_side_by_side() {
    let p = Project::new();
    let score = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/score.yaml");
    let smoke = p.run_json(&[score, "--set", "profile=smoke"], 0);
    let other = p.run_json(
        &[
            score,
            "--set",
            "profile=smoke",
            "--set",
            "vars.warm_lr=0.002",
        ],
        0,
    );
    p.write("tree.yaml", &common::tree_workflow(40));
    let big = p.run_json(&["tree.yaml"], 0);
    let id = |r: &serde_json::Value| r["id"].as_str().unwrap().to_owned();
    let (_ui, addr) = start_ui(&p);
    let shots =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/ui");
    let seen = browse(
        "ui_views.py",
        &[
            &format!("http://{addr}"),
            &id(&smoke),
            &id(&other),
            &id(&big),
            &shots.display().to_string(),
        ],
    );

    // The results table, above the fold, with the run's numbers: each eval node's rows with
    // their Wilson intervals, as `scorch run` prints them.
    assert_eq!(seen["results_in_view"], true, "{seen}");
    let mut expected = Vec::new();
    for n in smoke["nodes"].as_array().unwrap() {
        if n["outputs"].get("results").is_none() {
            continue;
        }
        let node = n["id"].as_str().unwrap();
        let rows: Vec<scorch_tables::EvalResult> = scorch_api::parquet_io::read_rows(
            &common::output_file(&p.path().join(".scorch"), &smoke, node, "results"),
        )
        .unwrap();
        for r in rows {
            let w = scorch_report::stats::wilson(u64::from(r.correct), u64::from(r.n), 0.95);
            expected.push(serde_json::json!([
                r.label,
                r.suite,
                r.split,
                r.n.to_string(),
                format!(
                    "{:.1}% [{:.1}, {:.1}]",
                    100.0 * w.estimate,
                    100.0 * w.lo,
                    100.0 * w.hi
                )
            ]));
        }
    }
    let shown: Vec<serde_json::Value> = seen["results_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| serde_json::Value::Array(r.as_array().unwrap()[..5].to_vec()))
        .collect();
    assert!(expected.len() >= 8, "{expected:?}");
    assert_eq!(shown, expected);
    // The whole DAG in view at 1280x800, matrix instances grouped.
    assert_eq!(seen["dag"]["outside"], 0, "{seen}");
    assert!(seen["dag"]["boxes"].as_u64().unwrap() >= 10, "{seen}");
    assert!(
        seen["groups"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("eval_warm[split=*]")),
        "{seen}"
    );
    for k in [
        "overflow",
        "overflow_after_node",
        "big_overflow",
        "compare_overflow",
    ] {
        assert!(
            seen[k]["page"].as_i64().unwrap() <= 0 && seen[k]["main"].as_i64().unwrap() <= 0,
            "horizontal overflow in {k}: {seen}"
        );
    }
    // A node's charts: a value on hover, a log scale, summary metrics as a table, and the
    // run's `sft` losses on one chart.
    let hover = seen["hover"].as_str().unwrap();
    assert!(
        hover.contains("warm_sft") && hover.contains(" @ "),
        "{hover}"
    );
    assert_eq!(seen["log_changes_ticks"], true);
    assert!(
        seen["summary_metrics"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("final_loss")),
        "{seen}"
    );
    assert!(
        seen["curves_across_nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c[0] == "loss" && c[1].as_u64().unwrap() >= 2),
        "{seen}"
    );
    assert_eq!(seen["zoom_kept"], true, "{seen}");
    // Edges run between boxes, never through one.
    for k in ["edges", "big_edges"] {
        assert!(seen[k]["paths"].as_u64().unwrap() >= 15, "{seen}");
        assert_eq!(seen[k]["through_boxes"], 0, "{k}: {seen}");
    }
    // 40 nodes, every box in view.
    assert_eq!(seen["big_dag"]["boxes"], 40, "{seen}");
    assert_eq!(seen["big_dag"]["outside"], 0, "{seen}");
    // Two runs side by side: what differs, results per arm, the curves overlaid; the link
    // reopens the same view.
    let cmp = &seen["compare"];
    assert!(
        cmp["vars"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == "warm_lr" && r[1] == "0.001" && r[2] == "0.002"),
        "{cmp}"
    );
    assert!(
        cmp["params"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("warm_sft.lr")),
        "{cmp}"
    );
    assert_eq!(
        cmp["results"].as_array().unwrap().len(),
        expected.len(),
        "{cmp}"
    );
    assert!(
        cmp["charts"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["warm_sft · loss", 2])),
        "{cmp}"
    );
    assert_eq!(seen["link_reopens"], true);
    for shot in [
        "run-page.png",
        "node-charts.png",
        "big-dag.png",
        "compare.png",
    ] {
        assert!(
            std::fs::metadata(shots.join(shot)).unwrap().len() > 10_000,
            "{shot}"
        );
    }
}
