//! Each node's log is kept with the run, secrets redacted, and `scorch logs` prints it, also
//! while the node runs (`--follow`).

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Project, text};

const WF: &str = r#"
name: logged
nodes:
  nums: {kind: numbers, params: {n: 5}}
  talk:
    kind: exec
    params:
      command: [python3, talk.py, "{inputs.rows}", "{outputs.table}"]
      env: {TOKEN: "${env.SCORCH_TEST_TOKEN}"}
      outputs: {table: {type: table, columns: {x: int64}}}
    inputs: {rows: {from: nums.table}}
"#;

const SCRIPT: &str = r#"
import os, shutil, sys, time
print("first line", flush=True)
print("the token is", os.environ["TOKEN"], file=sys.stderr, flush=True)
while os.path.exists("hold.flag"):
    time.sleep(0.1)
print("last line", flush=True)
shutil.copyfile(sys.argv[1], sys.argv[2])
"#;

const TOKEN: &str = "s3cr3t-t0ken-value";

fn run_id(p: &Project) -> String {
    let out = p.scorch(&["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    runs[0]["id"].as_str().unwrap().to_owned()
}

#[test]
fn a_nodes_log_is_kept_with_secrets_redacted() {
    let p = Project::new();
    p.write("wf.yaml", WF);
    p.write("talk.py", SCRIPT);
    let out = p
        .cmd(&["run", "wf.yaml", "-q"])
        .env("SCORCH_TEST_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = run_id(&p);
    let out = p.scorch(&["logs", &id, "talk"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(
        log.contains("first line") && log.contains("last line"),
        "{log}"
    );
    assert!(
        log.contains("the token is ${env.SCORCH_TEST_TOKEN}"),
        "{log}"
    );
    // Nowhere in the store either.
    let kept = std::fs::read_dir(p.path().join(".scorch/logs").join(&id)).unwrap();
    for f in kept.flatten() {
        assert!(!std::fs::read_to_string(f.path()).unwrap().contains(TOKEN));
    }
    // A node that did not run says why; a wrong name gets a suggestion.
    let out = p.scorch(&["logs", &id, "talc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean `talk`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn follow_prints_a_running_nodes_log_until_it_is_done() {
    let p = Project::new();
    p.write("wf.yaml", WF);
    p.write("talk.py", SCRIPT);
    p.write("hold.flag", "");
    let mut run = p
        .cmd(&["run", "wf.yaml", "-q"])
        .env("SCORCH_TEST_TOKEN", TOKEN)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let live = || {
        std::fs::read_dir(p.path().join(".scorch/work/logs"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| d.path().join("talk.log").exists())
    };
    while !live() {
        assert!(Instant::now() < deadline, "the node never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = run_id(&p);
    let mut follower = p
        .cmd(&["logs", &id, "talk", "--follow"])
        .env("SCORCH_TEST_TOKEN", TOKEN)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    // While the node is held, its first line is already printed.
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(first.contains("first line"), "{first}");
    assert!(run.try_wait().unwrap().is_none(), "the node was not held");
    std::fs::remove_file(p.path().join("hold.flag")).unwrap();
    assert!(run.wait().unwrap().success());
    assert!(follower.wait().unwrap().success());
    reader.join().unwrap();
    let log: String = std::iter::once(first)
        .chain(rx.try_iter())
        .map(|l| l + "\n")
        .collect();
    assert_eq!(log.matches("first line").count(), 1, "{log}");
    assert!(log.contains("last line"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
}
