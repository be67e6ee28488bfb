//! Training that survives being killed: `sft` saves its state into the store every
//! `save_every` steps; a run killed mid-way (SIGKILL to the whole process group, as a node
//! failure or a preemption does) is resumed by the next run from the last saved step, and
//! ends with the same checkpoint, byte for byte, as a run that was never stopped.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{Project, text};

const TRAIN: &str = r#"
name: resume
nodes:
  tasks: {kind: tasks, params: {split: train, count: 60}}
  demos:
    kind: rollout
    params: {policy: {kind: oracle}}
    inputs: {tasks: {from: tasks.tasks}}
  sft:
    kind: sft
    params:
      steps: 160
      save_every: 40
      batch_size: 8
      init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64, vocab_size: 300}
    inputs: {trajectories: {from: demos.trajectories}}
"#;

fn artifacts(rec: &serde_json::Value) -> (String, String) {
    let sft = common::node(rec, "sft");
    (
        sft["outputs"]["checkpoint"]["artifact"]
            .as_str()
            .unwrap()
            .to_owned(),
        sft["outputs"]["loss"]["artifact"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// The highest step of `sft`'s live metrics in store folder `store`, if any.
fn live_step(p: &Project, store: &str) -> Option<u64> {
    let logs = p.path().join(store).join("work/logs");
    let run = std::fs::read_dir(&logs).ok()?.flatten().next()?.path();
    let text = std::fs::read_to_string(run.join("sft.metrics.jsonl")).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_u64())
        .max()
}

#[test]
fn a_training_node_killed_mid_way_resumes_from_its_last_saved_step() {
    let p = Project::new();
    p.write("wf.yaml", TRAIN);
    let whole = p.run_json(&["wf.yaml", "--store", "file://whole"], 0);
    let (checkpoint, loss) = artifacts(&whole);

    // Killed, with all its processes, once it is past step 100 (two saves made).
    let mut child = p
        .cmd(&["run", "wf.yaml", "--store", "file://cut", "--quiet"])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if live_step(&p, "cut").is_some_and(|s| s >= 100) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed; make it longer"
        );
        assert!(Instant::now() < deadline, "sft never got past step 100");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pgid = child.id().to_string();
    std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{pgid}")])
        .status()
        .unwrap();
    let _ = child.wait();
    let killed_at = live_step(&p, "cut").unwrap();
    assert!(killed_at < 159, "killed before the end: {killed_at}");
    let saves: Vec<_> = common::files_under(&p.path().join("cut/resume"))
        .into_iter()
        .filter(|f| f.ends_with("latest.json"))
        .collect();
    assert_eq!(saves.len(), 1, "one node's state is saved");
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saves[0]).unwrap()).unwrap();
    let saved = latest["step"].as_u64().unwrap();
    assert!(saved >= 80 && saved.is_multiple_of(40), "{latest}");

    // The next run takes it up from there.
    let resumed = p.run_json(&["wf.yaml", "--store", "file://cut"], 0);
    assert_eq!(common::node(&resumed, "sft")["outcome"], "ran");
    let run = resumed["id"].as_str().unwrap();
    let log = text(
        &p.scorch(&["logs", run, "sft", "--store", "file://cut"])
            .stdout,
    );
    assert!(
        log.contains(&format!("resumed at step {saved} of 160")),
        "{log}"
    );
    assert_eq!(
        artifacts(&resumed),
        (checkpoint, loss),
        "the same checkpoint and loss log as the run never stopped"
    );
    // Its state is gone once the node's outputs are published.
    assert!(
        !common::files_under(&p.path().join("cut/resume"))
            .iter()
            .any(|f| f.ends_with("latest.json"))
    );
}
