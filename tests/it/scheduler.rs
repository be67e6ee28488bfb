//! Scheduling behaviour: resource slots bound concurrency, and Ctrl-C cancels cleanly.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Project, text, with_outcome};

fn slotted(limit: u32) -> String {
    let mut y = format!("name: slots\nresources: {{teacher: {limit}}}\nnodes:\n");
    for i in 0..3 {
        y.push_str(&format!(
            "  call{i}:\n    kind: exec\n    resources: {{teacher: 1}}\n    params:\n      command: [python3, log.py, call{i}]\n"
        ));
    }
    y
}

const LOG: &str = r#"
import sys, time
def note(what):
    with open("times.log", "a") as f:
        f.write(f"{sys.argv[1]} {what} {time.monotonic_ns()}\n")
note("start"); time.sleep(0.4); note("end")
"#;

/// (start, end) per node, from the log.
fn intervals(p: &Project) -> Vec<(u128, u128)> {
    let log = std::fs::read_to_string(p.path().join("times.log")).unwrap();
    let mut map = std::collections::BTreeMap::<String, (u128, u128)>::new();
    for line in log.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let t: u128 = parts[2].parse().unwrap();
        let e = map.entry(parts[0].to_owned()).or_default();
        if parts[1] == "start" {
            e.0 = t
        } else {
            e.1 = t
        }
    }
    map.into_values().collect()
}

fn overlaps(v: &[(u128, u128)]) -> usize {
    let mut n = 0;
    for i in 0..v.len() {
        for j in i + 1..v.len() {
            if v[i].0 < v[j].1 && v[j].0 < v[i].1 {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn a_resource_slot_limit_of_one_serialises_its_users() {
    let p = Project::new();
    p.write("log.py", LOG);
    p.write("wf.yaml", &slotted(1));
    let rec = p.run_json(&["wf.yaml", "-j", "3"], 0);
    assert_eq!(with_outcome(&rec, "ran").len(), 3);
    let iv = intervals(&p);
    assert_eq!(iv.len(), 3);
    assert_eq!(
        overlaps(&iv),
        0,
        "one `teacher` slot: never two at once: {iv:?}"
    );
}

#[test]
fn jobs_and_slots_allow_concurrency_when_they_are_wide_enough() {
    let p = Project::new();
    p.write("log.py", LOG);
    p.write("wf.yaml", &slotted(3));
    p.run_json(&["wf.yaml", "-j", "3"], 0);
    assert!(
        overlaps(&intervals(&p)) >= 1,
        "three slots and three jobs let nodes overlap"
    );
    // The same workflow with -j 1 runs them one at a time.
    std::fs::remove_file(p.path().join("times.log")).unwrap();
    p.run_json(
        &[
            "wf.yaml", "-j", "1", "--force", "call0", "--force", "call1", "--force", "call2",
        ],
        0,
    );
    assert_eq!(overlaps(&intervals(&p)), 0, "-j 1");
}

#[test]
fn ctrl_c_cancels_running_nodes_kills_their_processes_and_publishes_nothing() {
    let p = Project::new();
    p.write(
        "slow.py",
        "import os, time\nopen('pid', 'w').write(str(os.getpid()))\nif os.path.exists('slow.flag'):\n    time.sleep(120)\n",
    );
    p.write("slow.flag", "");
    p.write(
        "wf.yaml",
        "name: cancel\nnodes:\n  nums: {kind: numbers}\n  slow:\n    kind: exec\n    params: {command: [python3, slow.py]}\n    inputs: {rows: {from: nums.table}}\n  after:\n    kind: exec\n    params: {command: [\"true\"]}\n    inputs: {rows: {from: nums.table}, more: {from: nums.table}}\n",
    );
    let child = p
        .cmd(&["run", "wf.yaml", "-j", "1", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.path().join("pid").exists() {
        assert!(Instant::now() < deadline, "the slow node never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let pid: u32 = std::fs::read_to_string(p.path().join("pid"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "cancellation took {:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    let rec = common::run_record(&out.stdout);
    assert_eq!(rec["status"], "cancelled");
    assert_eq!(common::outcomes(&rec)["slow"], "cancelled");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the node's process was killed"
    );
    let plan = text(&p.scorch(&["plan", "wf.yaml"]).stdout);
    assert!(plan.contains("slow   runs: never ran"), "{plan}");
    std::fs::remove_file(p.path().join("slow.flag")).unwrap();
    let rec = p.run_json(&["wf.yaml"], 0);
    assert!(with_outcome(&rec, "ran").contains(&"slow".to_owned()));
}
