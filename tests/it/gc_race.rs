//! `scorch gc` looping beside a 200-node run, on the local store and on a real S3 server:
//! gc never removes what the run published or is about to publish (`scorch verify` finds
//! nothing missing, the rerun is all cached), and a second run started beside the first
//! waits for the nodes the first is computing instead of computing them again.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Stdio;

use common::s3::{aws_env, create_bucket, start_server};
use common::{Project, text, tree_workflow, with_outcome};

const NODES: usize = 200;
const TRIALS: usize = 10;

/// One trial: a cold run with gc looping beside it, then `verify`; the last trial also
/// reruns (all cached) and sweeps after the run.
fn trial(p: &Project, store: &str, env: &[(&'static str, String)], last: bool) -> usize {
    // More nodes at once on S3, whose round trips (not the CPU) bound a run.
    let jobs = if store.starts_with("s3://") { "8" } else { "2" };
    // Output to files: a pipe nobody reads until the end would fill and stall the run.
    let log = |name: &str| std::fs::File::create(p.path().join(name)).unwrap();
    let mut run = p
        .cmd(&["run", "wf.yaml", "--store", store, "--json", "-j", jobs])
        .envs(env.iter().cloned())
        .stdout(log("run.out"))
        .stderr(log("run.err"))
        .spawn()
        .unwrap();
    let mut sweeps = 0;
    while run.try_wait().unwrap().is_none() {
        let gc = p
            .cmd(&["gc", "--store", store])
            .envs(env.iter().cloned())
            .output()
            .unwrap();
        // Exit 2 only when another gc holds the store (never here: one gc at a time).
        assert!(gc.status.success(), "{}", text(&gc.stderr));
        sweeps += 1;
    }
    let status = run.wait().unwrap();
    let err = std::fs::read_to_string(p.path().join("run.err")).unwrap();
    assert!(status.success(), "{err}");
    let verify = p
        .cmd(&["verify", "--store", store, "--json"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let lost = report["missing"].as_array().unwrap().len();
    assert_eq!(report["manifests"].as_u64().unwrap() as usize, NODES);
    assert!(sweeps > 0);
    if !last {
        return lost;
    }
    let rerun = p
        .cmd(&["run", "wf.yaml", "--store", store, "--json"])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    let rec = common::run_record(&rerun.stdout);
    assert_eq!(with_outcome(&rec, "cached").len(), NODES, "{rec}");
    // gc after the runs end sweeps freely and still keeps everything published.
    let gc = p
        .cmd(&["gc", "--store", store])
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(gc.status.success());
    assert!(
        !text(&gc.stdout).contains("a run is in progress"),
        "a finished run's lease was left behind: {}",
        text(&gc.stdout)
    );
    lost
}

fn trials(store_of: impl Fn(usize) -> String, env: &[(&'static str, String)]) {
    let p = Project::new();
    p.write("wf.yaml", &tree_workflow(NODES));
    let mut lost = 0;
    for t in 0..TRIALS {
        lost += trial(&p, &store_of(t), env, t + 1 == TRIALS);
    }
    assert_eq!(lost, 0, "objects lost over {TRIALS} trials");
}

#[test]
fn gc_beside_a_run_loses_nothing_on_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    trials(
        |t| format!("file://{}", dir.path().join(format!("s{t}")).display()),
        &[],
    );
}

#[test]
fn gc_beside_a_run_loses_nothing_on_s3() {
    let server = start_server();
    let bucket = format!("scorch-gc-{}", std::process::id());
    create_bucket(&server.endpoint, &bucket);
    trials(
        |t| format!("s3://{bucket}/race{t}"),
        &aws_env(&server.endpoint),
    );
}

#[test]
fn a_second_run_waits_for_nodes_the_first_is_computing() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        "name: slow\nnodes:\n  nums: {kind: numbers, params: {n: 8}}\n  slow:\n    kind: exec\n    \
         params:\n      command: [python3, -c, \"import shutil, sys, time; time.sleep(3); shutil.copyfile(sys.argv[1], sys.argv[2])\", \"{inputs.rows}\", \"{outputs.table}\"]\n      \
         outputs: {table: {type: table, columns: {x: int64}}}\n    inputs: {rows: {from: nums.table}}\n",
    );
    let start = || {
        p.cmd(&["run", "wf.yaml", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = start();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let second = start();
    let a = first.wait_with_output().unwrap();
    let b = second.wait_with_output().unwrap();
    assert!(
        a.status.success() && b.status.success(),
        "{}{}",
        text(&a.stderr),
        text(&b.stderr)
    );
    let a = common::run_record(&a.stdout);
    let b = common::run_record(&b.stdout);
    assert_eq!(with_outcome(&a, "ran"), vec!["nums", "slow"], "{a}");
    assert_eq!(with_outcome(&b, "cached"), vec!["nums", "slow"], "{b}");
    let slow = common::node(&b, "slow");
    assert!(
        slow["reason"]
            .as_str()
            .unwrap_or("")
            .starts_with("computed by run "),
        "{slow}"
    );
}
