//! A run killed with SIGKILL mid-node leaves no readable partial artifact, and the next run
//! completes.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::{Project, text, with_outcome};

const SLOW: &str = r#"
name: crashy
nodes:
  nums: {kind: numbers, params: {n: 50}}
  slow:
    kind: exec
    params:
      command: [python3, slow.py, "{inputs.rows}", "{outputs.table}"]
      outputs: {table: {type: table, columns: {x: int64}}}
    inputs: {rows: {from: nums.table}}
  sum:
    kind: total
    inputs: {table: {from: slow.table}}
"#;

const SCRIPT: &str = r#"
import os, shutil, sys, time
src, dst = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
with open(dst, "wb") as f:
    f.write(data[: len(data) // 2])   # a partial table on disk
    f.flush()
    open("started", "w").close()
    if os.path.exists("slow.flag"):
        time.sleep(120)
shutil.copyfile(src, dst)
"#;

fn is_complete_parquet(bytes: &[u8]) -> bool {
    bytes.len() > 8 && &bytes[..4] == b"PAR1" && &bytes[bytes.len() - 4..] == b"PAR1"
}

#[test]
fn sigkill_mid_run_leaves_nothing_partial_and_the_next_run_completes() {
    let p = Project::new();
    p.write("wf.yaml", SLOW);
    p.write("slow.py", SCRIPT);
    p.write("slow.flag", "");
    let mut child = p
        .cmd(&["run", "wf.yaml", "-q"])
        .process_group(0)
        .spawn()
        .expect("spawn scorch");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.path().join("started").exists() {
        assert!(Instant::now() < deadline, "the slow node never started");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "scorch exited early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pgid = format!("-{}", child.id());
    let status = std::process::Command::new("kill")
        .args(["-KILL", "--", &pgid])
        .status()
        .expect("kill");
    assert!(status.success());
    let _ = child.wait();

    // The partial output sits in a staging folder; nothing in the store refers to it.
    let staging = p.path().join(".scorch/work/staging");
    assert_eq!(
        std::fs::read_dir(&staging).expect("staging").count(),
        1,
        "one staging folder left behind"
    );
    let manifests = std::fs::read_dir(p.path().join(".scorch/nodes"))
        .expect("nodes")
        .count();
    assert_eq!(manifests, 1, "only `nums` was published");
    for entry in std::fs::read_dir(p.path().join(".scorch/artifacts"))
        .expect("artifacts")
        .flatten()
    {
        let artifact: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        for f in artifact["files"].as_array().unwrap() {
            let obj = std::fs::read(
                p.path()
                    .join(".scorch/objects")
                    .join(f["object"].as_str().unwrap()),
            )
            .expect("object of a published artifact");
            assert!(is_complete_parquet(&obj), "a published table is complete");
        }
    }
    let runs = text(&p.scorch(&["runs"]).stdout);
    assert!(
        runs.contains("died"),
        "the killed run is shown as died:\n{runs}"
    );
    // Its record shows what it published before it died.
    let id = runs
        .lines()
        .find(|l| l.contains("died"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let shown: serde_json::Value =
        serde_json::from_slice(&p.scorch(&["show", &id, "--json"]).stdout).unwrap();
    assert_eq!(common::outcomes(&shown)["nums"], "ran", "{shown}");
    assert_ne!(common::outcomes(&shown)["slow"], "ran", "{shown}");
    let plan = text(&p.scorch(&["plan", "wf.yaml"]).stdout);
    assert!(
        plan.contains("nums  cached") && plan.contains("slow  runs: never ran"),
        "{plan}"
    );

    // The same workflow, unchanged, completes.
    std::fs::remove_file(p.path().join("slow.flag")).unwrap();
    let rec = p.run_json(&["wf.yaml"], 0);
    assert_eq!(with_outcome(&rec, "ran"), vec!["slow", "sum"]);
    assert_eq!(with_outcome(&rec, "cached"), vec!["nums"]);
    let gc = text(&p.scorch(&["gc"]).stdout);
    assert!(gc.contains("removed 1 staging folder(s)"), "{gc}");
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
}
