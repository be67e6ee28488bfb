//! Kinds that need libtorch run in `scorch-worker`: `scorch` itself never loads libtorch, and
//! a worker does not outlive its node, whether the run is interrupted or the engine is killed.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Project, text};

/// The shared libraries a command loads, as glibc's loader reports them.
fn loaded_libraries(program: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("LD_DEBUG", "libs")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stderr)
}

#[test]
fn scorch_checks_and_plans_score_yaml_without_loading_libtorch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let wf = root.join("workflows/score.yaml");
    let wf = wf.to_str().unwrap();
    let store = tempfile::tempdir().unwrap();
    let store_url = format!("file://{}", store.path().display());
    let scorch = env!("CARGO_BIN_EXE_scorch");
    for args in [
        vec!["--version"],
        vec!["validate", wf],
        vec!["plan", wf, "--store", &store_url],
        vec!["plugins"],
    ] {
        let libs = loaded_libraries(scorch, &args, root);
        assert!(
            libs.contains("libc.so"),
            "LD_DEBUG reported nothing: {libs}"
        );
        assert!(
            !libs.contains("libtorch"),
            "scorch {args:?} loaded libtorch"
        );
    }
    // The check can fail: the worker does load it.
    let libs = loaded_libraries(env!("CARGO_BIN_EXE_scorch-worker"), &["--version"], root);
    assert!(libs.contains("libtorch_cpu"), "{libs}");
}

const LONG_TRAINING: &str = r#"
name: long
nodes:
  tasks: {kind: tasks, params: {split: train, count: 16}}
  demos:
    kind: rollout
    params: {policy: {kind: oracle}}
    inputs: {tasks: {from: tasks.tasks}}
  train:
    kind: sft
    params:
      steps: 1000000
      batch_size: 4
      init: {vocab_size: 300, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, intermediate_size: 64}
    inputs: {trajectories: {from: demos.trajectories}}
"#;

/// Pids of the `scorch-worker` processes whose job lives under `dir`.
fn workers_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("scorch-worker") && cmdline.contains(&needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Kills what it holds when dropped, so that a failing test leaves no worker behind.
struct Reap(Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_long_training(p: &Project) -> (std::process::Child, Vec<u32>) {
    p.write("wf.yaml", LONG_TRAINING);
    let mut child = p.cmd(&["run", "wf.yaml", "-q"]).spawn().unwrap();
    let mut workers = Vec::new();
    wait_for("the training node's worker", 120, || {
        assert!(child.try_wait().unwrap().is_none(), "scorch ended early");
        workers = workers_under(p.path());
        // The rollout's worker comes and goes first; wait for the one that stays.
        !workers.is_empty() && p.path().join(".scorch").exists() && {
            std::thread::sleep(Duration::from_millis(1500));
            workers_under(p.path()) == workers
        }
    });
    (child, workers)
}

#[test]
fn a_worker_stops_when_its_engine_is_killed() {
    let p = Project::new();
    let (mut child, workers) = start_long_training(&p);
    let _reap = Reap(workers.clone());
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for("the orphaned worker to stop", 60, || {
        workers
            .iter()
            .all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
            || workers_under(p.path()).is_empty()
    });
}

#[test]
fn interrupting_a_run_stops_its_worker() {
    let p = Project::new();
    let (child, workers) = start_long_training(&p);
    let _reap = Reap(workers);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    // The engine waits for nothing: its worker is gone when it exits.
    assert!(workers_under(p.path()).is_empty());
}
