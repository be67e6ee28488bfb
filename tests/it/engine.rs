//! End-to-end behaviour of the engine through the CLI: caching, early cutoff, failures,
//! crashes, secrets and the inspection commands.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{DIAMOND, Project, outcomes, text, with_outcome};

#[test]
fn a_second_run_executes_no_node() {
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    let first = p.run_json(&["wf.yaml"], 0);
    assert_eq!(with_outcome(&first, "ran").len(), 5, "{first}");
    let second = p.run_json(&["wf.yaml"], 0);
    assert_eq!(with_outcome(&second, "cached").len(), 5, "{second}");
    assert!(with_outcome(&second, "ran").is_empty());
    assert_eq!(second["status"], "succeeded");
}

#[test]
fn editing_one_param_reruns_exactly_that_node_and_its_dependents() {
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    p.run_json(&["wf.yaml"], 0);
    p.write(
        "wf.yaml",
        &DIAMOND.replace("params: {scale: 2}", "params: {scale: 3}"),
    );
    let plan = p.scorch(&["plan", "wf.yaml"]);
    let plan_text = text(&plan.stdout);
    assert!(
        plan_text.contains("doubled      runs: params changed: scale: 2 → 3"),
        "{plan_text}"
    );
    assert!(plan_text.contains("shifted      cached"), "{plan_text}");
    let rec = p.run_json(&["wf.yaml"], 0);
    assert_eq!(with_outcome(&rec, "ran"), vec!["doubled", "sum_doubled"]);
    assert_eq!(
        with_outcome(&rec, "cached"),
        vec!["nums", "shifted", "sum_shifted"]
    );
    let sum = &rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "sum_doubled")
        .unwrap()["metrics"][0];
    assert_eq!(sum["value"], 3.0 * (0..20).sum::<i64>() as f64, "{sum}");
}

#[test]
fn an_upstream_rerun_with_identical_output_leaves_downstream_cached() {
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    p.run_json(&["wf.yaml"], 0);
    // A clamp far above every value changes the params but not the table.
    let rec = p.run_json(&["wf.yaml", "--set", "nodes.doubled.params.max=1000000"], 0);
    assert_eq!(with_outcome(&rec, "ran"), vec!["doubled"]);
    assert_eq!(outcomes(&rec)["sum_doubled"], "cached");
    // A clamp that bites changes the table, so the sum reruns.
    let rec = p.run_json(&["wf.yaml", "--set", "nodes.doubled.params.max=10"], 0);
    assert_eq!(with_outcome(&rec, "ran"), vec!["doubled", "sum_doubled"]);
}

#[test]
fn vars_from_set_change_keys_and_plan_explains_why() {
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    p.run_json(&["wf.yaml"], 0);
    let rec = p.run_json(&["wf.yaml", "--set", "vars.n=7"], 0);
    assert_eq!(with_outcome(&rec, "ran").len(), 5);
    let out = p.scorch(&["explain", "wf.yaml", "nums"]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(t.contains("params changed: n: 7 → 20"), "{t}");
    assert!(t.contains("CHANGED"), "{t}");
    assert!(t.contains("version  1"), "{t}");
    let out = p.scorch(&["explain", "wf.yaml", "doubled"]);
    assert!(
        text(&out.stdout).contains("input table"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn an_unknown_variable_in_set_is_an_error_with_a_hint() {
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    let out = p.scorch(&["run", "wf.yaml", "--set", "vars.nn=7"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("the workflow has no variable `nn`"), "{err}");
    assert!(err.contains("did you mean `vars.n`?"), "{err}");
    assert!(!p.path().join(".scorch").exists(), "nothing is written");
}

#[test]
fn a_bad_value_from_set_is_reported_at_the_flag() {
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    // Through a variable: the flag first, the file's use of the variable as context.
    let out = p.scorch(&["validate", "wf.yaml", "--set", "vars.n=abc"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("wf.yaml: `--set vars.n=abc`: invalid params for `numbers`"),
        "{err}"
    );
    assert!(err.contains("the variable is used here"), "{err}");
    assert!(
        !err.contains("× wf.yaml:8:"),
        "the message is not placed in the file: {err}"
    );
    // Straight into a node's params: nothing in the file to show.
    let out = p.scorch(&[
        "validate",
        "wf.yaml",
        "--set",
        "nodes.doubled.params.scael=3",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("wf.yaml: `--set nodes.doubled.params.scael=3`: invalid params for `affine`"),
        "{err}"
    );
    assert!(err.contains("at `nodes.doubled.params.scael`"), "{err}");
    assert!(!err.contains("╭─["), "no file snippet: {err}");
    // The same mistake written in the file is still placed in the file.
    p.write("wf.yaml", &DIAMOND.replace("{scale: 2}", "{scael: 2}"));
    let err = text(&p.scorch(&["validate", "wf.yaml"]).stderr);
    assert!(err.contains("wf.yaml:11:"), "{err}");
    assert!(!err.contains("--set"), "{err}");
}

#[test]
fn validate_warns_about_local_files_that_do_not_exist() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        r#"
name: local
vars: {base: ./base-model}
nodes:
  base: {kind: folder, params: {path: "${vars.base}"}}
  bench: {kind: tasks, params: {source: data/bench.jsonl}}
  suite: {kind: tasks, params: {source: builtin, count: 3}}
"#,
    );
    let out = p.scorch(&["validate", "wf.yaml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "a warning, not an error: {err}");
    assert!(text(&out.stdout).contains("3 node(s), 2 warning(s)"));
    assert!(
        err.contains("wf.yaml:5:39: `./base-model` does not exist (looked for base-model)"),
        "{err}"
    );
    assert!(err.contains("`base` will fail when it runs"), "{err}");
    assert!(err.contains("`data/bench.jsonl` does not exist"), "{err}");
    assert_eq!(
        err.matches("does not exist").count(),
        2,
        "the built-in suite is no file: {err}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&p.scorch(&["validate", "wf.yaml", "--json"]).stdout).unwrap();
    let paths: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["nodes.base.params.path", "nodes.bench.params.source"]
    );
    assert_eq!(json["warnings"][0]["code"], "missing-file");
    // Once the files exist there is nothing to say.
    std::fs::create_dir_all(p.path().join("base-model")).unwrap();
    std::fs::create_dir_all(p.path().join("data")).unwrap();
    p.write("data/bench.jsonl", "");
    let out = p.scorch(&["validate", "wf.yaml"]);
    assert_eq!(text(&out.stderr), "");
    assert!(
        text(&out.stdout).ends_with("3 node(s)\n"),
        "{}",
        text(&out.stdout)
    );
}

const FAILING: &str = r#"
name: failing
nodes:
  nums: {kind: numbers, params: {n: 4}}
  broken:
    kind: exec
    retries: 2
    params:
      command: [python3, -c, "import sys; print('bad things'); sys.exit(3)"]
      outputs: {table: {type: table}}
    inputs: {rows: {from: nums.table}}
  after_broken:
    kind: total
    inputs: {table: {from: broken.table}}
  fine:
    kind: affine
    params: {delay_ms: 300}
    inputs: {table: {from: nums.table}}
"#;

#[test]
fn a_failed_node_stops_its_dependents_while_independent_branches_finish() {
    let p = Project::new();
    p.write("wf.yaml", FAILING);
    let rec = p.run_json(&["wf.yaml", "-j", "2"], 1);
    let o = outcomes(&rec);
    assert_eq!(o["broken"], "failed");
    assert_eq!(o["after_broken"], "skipped");
    assert_eq!(o["fine"], "ran");
    assert_eq!(rec["status"], "failed");
    let broken = rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "broken")
        .unwrap();
    assert_eq!(broken["attempts"], 3, "two retries: {broken}");
    let err = broken["error"].as_str().unwrap();
    assert!(
        err.contains("exited with exit status: 3") && err.contains("bad things"),
        "{err}"
    );
    // The failure published nothing: the next plan still wants to run it.
    let plan = text(&p.scorch(&["plan", "wf.yaml"]).stdout);
    assert!(plan.contains("broken        runs:"), "{plan}");
    assert!(plan.contains("fine          cached"), "{plan}");
}

#[test]
fn a_panicking_or_missing_output_plugin_is_a_node_failure_not_a_crash() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        r#"
name: lazy
nodes:
  lazy:
    kind: exec
    params:
      command: [python3, -c, "pass"]
      outputs: {table: {type: table}}
"#,
    );
    let rec = p.run_json(&["wf.yaml"], 1);
    let err = rec["nodes"][0]["error"].as_str().unwrap();
    assert!(err.contains("output `table` was not written"), "{err}");
}

#[test]
fn exec_runs_a_real_interpreter_on_parquet_paths_and_blob_folders() {
    let p = Project::new();
    p.write(
        "tool.py",
        r#"
import os, shutil, sys
src, dst, notes = sys.argv[1], sys.argv[2], os.environ["SCORCH_OUTPUT_NOTES"]
assert open(src, "rb").read(4) == b"PAR1", "input is not parquet"
shutil.copyfile(src, dst)
os.makedirs(os.path.join(notes, "sub"), exist_ok=True)
open(os.path.join(notes, "sub", "seed.txt"), "w").write(os.environ["SCORCH_SEED"])
"#,
    );
    p.write(
        "wf.yaml",
        r#"
name: exec-demo
seed: 11
nodes:
  nums: {kind: numbers, params: {n: 6}}
  tool:
    kind: exec
    params:
      command: [python3, tool.py, "{inputs.rows}", "{outputs.table}"]
      outputs:
        table: {type: table, columns: {x: int64}}
        notes: {type: blobs}
    inputs: {rows: {from: nums.table}}
  sum:
    kind: total
    inputs: {table: {from: tool.table}}
  reader:
    kind: exec
    params:
      command: [python3, -c, "import os,sys; d=os.environ['SCORCH_INPUT_NOTES']; s=open(os.path.join(d,'sub','seed.txt')).read(); open(sys.argv[1],'w').write('seed was '+s)", "{outputs.copy}/out.txt"]
      blob_inputs: [notes]
      outputs: {copy: {type: blobs}}
    inputs: {notes: {from: tool.notes}}
"#,
    );
    let rec = p.run_json(&["wf.yaml"], 0);
    assert_eq!(with_outcome(&rec, "ran").len(), 4, "{rec}");
    let sum = rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "sum")
        .unwrap();
    assert_eq!(sum["metrics"][0]["value"], 15.0);
    let tool = rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "tool")
        .unwrap();
    assert_eq!(tool["outputs"]["table"]["rows"], 6);
    assert_eq!(tool["outputs"]["notes"]["kind"], "blobs");
    let reader = rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "reader")
        .unwrap();
    assert_eq!(reader["outputs"]["copy"]["bytes"], "seed was 11".len());
}

#[test]
fn an_exec_output_that_breaks_its_declaration_fails_the_node() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        r#"
name: liar
nodes:
  nums: {kind: numbers, params: {n: 3}}
  liar:
    kind: exec
    params:
      command: [cp, "{inputs.rows}", "{outputs.table}"]
      outputs: {table: {type: table, columns: {name: utf8}}}
    inputs: {rows: {from: nums.table}}
"#,
    );
    let rec = p.run_json(&["wf.yaml"], 1);
    let err = rec["nodes"][1]["error"].as_str().unwrap();
    assert!(
        err.contains("does not match its declaration: column `name` (Utf8) is missing"),
        "{err}"
    );
}

#[test]
fn secrets_from_the_environment_never_reach_the_store() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        r#"
name: secret
nodes:
  call:
    kind: exec
    params:
      command: [python3, -c, "import os; assert len(os.environ['TOKEN']) >= 7"]
      env: {TOKEN: "${env.SCORCH_TEST_TOKEN}"}
"#,
    );
    let out = p
        .cmd(&["run", "wf.yaml", "--json"])
        .env("SCORCH_TEST_TOKEN", "hunter2-very-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("hunter2"));
    let mut stack = vec![p.path().join(".scorch")];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                let bytes = std::fs::read(e.path()).unwrap();
                assert!(
                    !text(&bytes).contains("hunter2"),
                    "secret in {}",
                    e.path().display()
                );
            }
        }
    }
    assert!(files > 2);
    // A new token value is the same configuration: the node stays cached.
    let out = p
        .cmd(&["run", "wf.yaml", "--json"])
        .env("SCORCH_TEST_TOKEN", "another")
        .output()
        .unwrap();
    let rec = common::run_record(&out.stdout);
    assert_eq!(with_outcome(&rec, "cached"), vec!["call"]);
}

#[test]
fn matrix_nodes_get_readable_names_and_pair_with_matching_instances() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        r#"
name: grid
nodes:
  nums:
    kind: numbers
    matrix: {n: [3, 5]}
    params: {n: "${matrix.n}"}
  sum:
    kind: total
    matrix: {n: [3, 5]}
    params: {label: "n=${matrix.n}"}
    inputs: {table: {from: nums.table}}
  only_five:
    kind: total
    inputs: {table: {from: "nums[n=5].table"}}
"#,
    );
    let rec = p.run_json(&["wf.yaml"], 0);
    let o = outcomes(&rec);
    let ids: Vec<&String> = o.keys().collect();
    assert_eq!(
        ids,
        vec![
            "nums[n=3]",
            "nums[n=5]",
            "only_five",
            "sum[n=3]",
            "sum[n=5]"
        ]
    );
    let value = |id: &str| {
        rec["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap()["metrics"][0]["value"]
            .clone()
    };
    assert_eq!(value("sum[n=3]"), 3.0);
    assert_eq!(value("sum[n=5]"), 10.0);
    assert_eq!(value("only_five"), 10.0);
    let dag = text(&p.scorch(&["dag", "wf.yaml", "--format", "dot"]).stdout);
    assert!(
        dag.contains("digraph \"grid\"") && dag.contains("sum[n=5]"),
        "{dag}"
    );
    let only = p.run_json(&["wf.yaml", "--only", "sum[n=3]", "--force", "sum[n=3]"], 0);
    assert_eq!(with_outcome(&only, "ran"), vec!["sum[n=3]"]);
}

#[test]
fn runs_show_and_gc_report_on_the_store() {
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    let rec = p.run_json(&["wf.yaml"], 0);
    let id = rec["id"].as_str().unwrap();
    let runs = text(&p.scorch(&["runs"]).stdout);
    assert!(
        runs.contains(id) && runs.contains("succeeded") && runs.contains("5 ran"),
        "{runs}"
    );
    let show = p.scorch(&["show", &id[..18], "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["id"], id);
    // Without --json, each output with the place of each of its files, which exist.
    let show = text(&p.scorch(&["show", id]).stdout);
    assert!(show.contains("outputs:"), "{show}");
    let files: Vec<&str> = show
        .lines()
        .filter_map(|l| l.trim().strip_prefix("part-00000.parquet  "))
        .collect();
    assert_eq!(files.len(), 5, "one table per node: {show}");
    for f in files {
        let f = std::path::Path::new(f);
        assert!(f.is_absolute() && f.is_file(), "{}", f.display());
    }
    // Changing n replaces every artifact; the old ones are unreferenced once their manifests... stay.
    let gc = text(&p.scorch(&["gc", "--dry-run"]).stdout);
    assert!(
        gc.contains("would remove 0 staging folder(s), 0 artifact(s), 0 object(s)"),
        "{gc}"
    );
    // An object nobody refers to is garbage.
    std::fs::write(p.path().join(".scorch/objects/deadbeef"), b"orphan").unwrap();
    let gc = text(&p.scorch(&["gc"]).stdout);
    assert!(
        gc.contains("removed 0 staging folder(s), 0 artifact(s), 1 object(s) (6 bytes)"),
        "{gc}"
    );
    assert!(!p.path().join(".scorch/objects/deadbeef").exists());
    let again = p.run_json(&["wf.yaml"], 0);
    assert_eq!(
        with_outcome(&again, "cached").len(),
        5,
        "gc kept what manifests use"
    );
}

#[test]
fn gc_removes_saved_states_of_finished_nodes_and_keeps_interrupted_ones_unless_asked() {
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    p.run_json(&["wf.yaml"], 0);
    let store = p.path().join(".scorch");
    let published = std::fs::read_dir(store.join("nodes"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let finished = published
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // A state as a node saves it (`resume/<key>/<step>/...` and `latest.json`): one left by a
    // node that has a manifest, one by a node that never finished.
    let save = |key: &str| {
        let dir = store.join("resume").join(key);
        std::fs::create_dir_all(dir.join("7")).unwrap();
        std::fs::write(dir.join("7/state.bin"), b"0123456789").unwrap();
        std::fs::write(
            dir.join("latest.json"),
            br#"{"step":7,"files":["state.bin"]}"#,
        )
        .unwrap();
        dir
    };
    let leftover = save(&finished);
    let interrupted = save("0123abcd");
    let gc = text(&p.scorch(&["gc"]).stdout);
    assert!(gc.contains("1 saved state(s) ("), "{gc}");
    assert!(
        gc.contains("kept the saved state of 1 interrupted node(s)"),
        "{gc}"
    );
    // Nothing of the state is left, not even its empty folders.
    assert!(!leftover.exists(), "{}", leftover.display());
    assert!(
        interrupted.join("7/state.bin").is_file(),
        "kept for a rerun"
    );
    let dry = text(&p.scorch(&["gc", "--interrupted", "--dry-run"]).stdout);
    assert!(
        dry.contains("would remove") && dry.contains("1 saved state(s)"),
        "{dry}"
    );
    assert!(
        interrupted.join("7/state.bin").is_file(),
        "a dry run removes nothing"
    );
    let json = p.scorch(&["gc", "--interrupted", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        report["states"],
        serde_json::json!(["0123abcd"]),
        "{report}"
    );
    assert!(!interrupted.exists() && !store.join("resume").exists());
    let again = p.run_json(&["wf.yaml"], 0);
    assert_eq!(
        with_outcome(&again, "cached").len(),
        5,
        "gc kept what manifests use"
    );
}

#[test]
fn unknown_node_names_on_the_command_line_are_usage_errors() {
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    let out = p.scorch(&["run", "wf.yaml", "--only", "dubled"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("no node `dubled` in workflow `diamond`; did you mean `doubled`?"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !p.path().join(".scorch").exists(),
        "nothing written for a bad command line, not even the store folder"
    );
}

/// `filter` in `count` mode keeps as many correct demonstrations as its `like` table has
/// rows, and says when it runs short.
#[test]
fn the_count_filter_matches_the_size_of_its_like_table() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        "name: count\nnodes:\n  tasks: {kind: tasks, params: {split: train, count: 40}}\n  \
         demos:\n    kind: rollout\n    params: {policy: {kind: oracle}}\n    inputs: {tasks: {from: tasks.tasks}}\n  \
         some:\n    kind: filter\n    params: {mode: warm_start, warm_share: 0.3}\n    inputs: {trajectories: {from: demos.trajectories}}\n  \
         same:\n    kind: filter\n    params: {mode: count}\n    inputs: {trajectories: {from: demos.trajectories}, like: {from: some.sft}}\n  \
         short:\n    kind: filter\n    params: {mode: count}\n    inputs: {trajectories: {from: some.sft}, like: {from: demos.trajectories}}\n",
    );
    let rec = p.run_json(&["wf.yaml"], 0);
    let metric = |node: &str, name: &str| {
        common::node(&rec, node)["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["value"]
            .as_f64()
            .unwrap()
    };
    let some = metric("some", "kept");
    assert!(some > 0.0 && some < 40.0, "{some}");
    assert_eq!(metric("same", "kept"), some);
    assert_eq!(metric("short", "wanted"), 40.0);
    assert_eq!(
        metric("short", "kept"),
        some,
        "short of demonstrations: all it has"
    );
}

#[test]
fn only_skips_what_the_selection_does_not_need_and_fails_on_a_missing_ancestor() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        "name: two\nnodes:\n  a: {kind: numbers}\n  b: {kind: numbers, params: {n: 3}}\n  \
         c:\n    kind: total\n    inputs: {table: {from: a.table}}\n",
    );
    // `b` is not needed by `a`: skipped, and the run succeeds.
    let rec = p.run_json(&["wf.yaml", "--only", "a"], 0);
    assert_eq!(with_outcome(&rec, "ran"), vec!["a"]);
    assert_eq!(with_outcome(&rec, "skipped"), vec!["b", "c"]);
    assert_eq!(common::node(&rec, "b")["reason"], "not selected");
    assert_eq!(rec["status"], "succeeded");
    // `c` needs `a`: cached now, so `c` runs; on a fresh store `a` is missing and fails.
    let rec = p.run_json(&["wf.yaml", "--only", "c"], 0);
    assert_eq!(with_outcome(&rec, "ran"), vec!["c"]);
    let q = Project::new();
    q.write(
        "wf.yaml",
        &std::fs::read_to_string(p.path().join("wf.yaml")).unwrap(),
    );
    let rec = q.run_json(&["wf.yaml", "--only", "c"], 1);
    assert_eq!(with_outcome(&rec, "failed"), vec!["a"]);
    assert_eq!(with_outcome(&rec, "skipped"), vec!["b", "c"]);
}

/// The cache key of each node whose inputs are known, from `scorch plan --json`, with
/// `device: auto` settled as `auto_device` says.
fn plan_keys(
    p: &Project,
    wf: &str,
    auto_device: &str,
) -> std::collections::BTreeMap<String, String> {
    let out = p
        .cmd(&["plan", wf, "--json"])
        .env("SCORCH_AUTO_DEVICE", auto_device)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?.to_owned(), n["key"].as_str()?.to_owned())))
        .collect()
}

#[test]
fn auto_device_and_precision_enter_the_cache_key_as_what_they_resolve_to() {
    let p = Project::new();
    let wf = |sft_params: &str| {
        format!(
            r#"
name: auto
nodes:
  tasks:
    kind: tasks
    params: {{split: train, count: 4}}
  demos:
    kind: rollout
    params: {{policy: {{kind: oracle}}}}
    inputs: {{tasks: {{from: tasks.tasks}}}}
  warm:
    kind: sft
    params: {{steps: 1, batch_size: 2, {sft_params} init: {{hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}}}}
    inputs: {{trajectories: {{from: demos.trajectories}}}}
"#
        )
    };
    p.write("auto.yaml", &wf(""));
    p.write("pinned.yaml", &wf("device: cpu, precision: f32,"));
    p.write("bf16.yaml", &wf("device: cuda, precision: bf16,"));
    let out = p
        .cmd(&["run", "auto.yaml", "--only", "tasks", "--only", "demos"])
        .env("SCORCH_AUTO_DEVICE", "cpu")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let cpu = plan_keys(&p, "auto.yaml", "cpu");
    let cuda = plan_keys(&p, "auto.yaml", "cuda");
    // The training node's key follows what `auto` means on the machine …
    assert!(cpu.contains_key("warm"), "{cpu:?}");
    assert_ne!(cpu["warm"], cuda["warm"]);
    // … and is the key of the settings it resolved to, written out.
    assert_eq!(cpu["warm"], plan_keys(&p, "pinned.yaml", "cuda")["warm"]);
    assert_eq!(cuda["warm"], plan_keys(&p, "bf16.yaml", "cpu")["warm"]);
    // A node that runs no model on the device keeps one key everywhere.
    assert_eq!(cpu["demos"], cuda["demos"]);
    assert_eq!(cpu["tasks"], cuda["tasks"]);
    // What the key says is what runs: on a machine without CUDA, a node settled for CUDA
    // fails with a message rather than computing in float32 under the bfloat16 key.
    if !std::path::Path::new("/dev/nvidia0").exists() {
        let out = p
            .cmd(&["run", "auto.yaml"])
            .env("SCORCH_AUTO_DEVICE", "cuda")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("CUDA is not available"),
            "{}",
            text(&out.stderr)
        );
    }
    // A bad override is bad input.
    let out = p
        .cmd(&["plan", "auto.yaml"])
        .env("SCORCH_AUTO_DEVICE", "gpu")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("SCORCH_AUTO_DEVICE"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn lora_params_are_checked_before_anything_runs() {
    let p = Project::new();
    for (lora, path, says) in [
        ("{rank: 0}", "lora.rank", "must be positive"),
        (
            "{targets: [q_proj, qkv_proj]}",
            "lora.targets.1",
            "no module `qkv_proj`",
        ),
        ("{dropout: 1.5}", "lora.dropout", "[0, 1)"),
        (
            "{dropout: 0.1}, gradient_checkpointing: true",
            "gradient_checkpointing",
            "dropout",
        ),
    ] {
        p.write(
            "wf.yaml",
            &format!(
                r#"
name: lora
nodes:
  base:
    kind: folder
    params: {{path: base-model}}
  tasks:
    kind: tasks
    params: {{split: train, count: 4}}
  demos:
    kind: rollout
    params: {{policy: {{kind: oracle}}}}
    inputs: {{tasks: {{from: tasks.tasks}}}}
  tune:
    kind: sft
    params: {{steps: 1, lora: {lora}}}
    inputs: {{trajectories: {{from: demos.trajectories}}, model: {{from: base.folder}}}}
"#
            ),
        );
        let out = p.scorch(&["validate", "wf.yaml"]);
        assert_eq!(out.status.code(), Some(2), "{lora}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("nodes.tune.params.{path}")) && err.contains(says),
            "{lora}: {err}"
        );
    }
}

/// Identical work in one run runs once, and the node that took the other's result says whose
/// it was (not "another run", when there is none).
#[test]
fn identical_nodes_of_one_run_compute_once_and_say_so() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        r#"
name: twins
nodes:
  a:
    kind: exec
    params: {command: [python3, -c, "import time, sys; time.sleep(1); open(sys.argv[1] + '/x', 'w').write('1')", "{outputs.out}"], outputs: {out: {type: blobs}}}
  b:
    kind: exec
    params: {command: [python3, -c, "import time, sys; time.sleep(1); open(sys.argv[1] + '/x', 'w').write('1')", "{outputs.out}"], outputs: {out: {type: blobs}}}
"#,
    );
    let rec = p.run_json(&["wf.yaml", "-j", "2"], 0);
    let outcomes = common::outcomes(&rec);
    let mut ran: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| o.as_str() == "ran")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(ran.len(), 1, "{rec}");
    let first = ran.pop().unwrap_or_default();
    let other = if first == "a" { "b" } else { "a" };
    let node = common::node(&rec, other);
    assert_eq!(node["outcome"], "cached", "{rec}");
    assert_eq!(
        node["reason"],
        format!("same key as node `{first}` of this run, which computed it"),
        "{rec}"
    );
}

/// Model nodes share the cores instead of oversubscribing them: by default one takes every
/// cpu slot of the run (two run one after the other, each with every core); one that asks for
/// fewer gets that many threads, and two such run side by side.
#[test]
fn model_nodes_get_the_threads_of_their_cpu_slots() {
    let p = Project::new();
    let wf = |cpu: &str| {
        format!(
            r#"
name: threads
nodes:
  tasks: {{kind: tasks, params: {{split: train, count: 8}}}}
  demos:
    kind: rollout
    params: {{policy: {{kind: oracle}}}}
    inputs: {{tasks: {{from: tasks.tasks}}}}
  one:
    kind: sft
    {cpu}
    params: {{steps: 2, batch_size: 2, init: {{hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 32, vocab_size: 300}}}}
    inputs: {{trajectories: {{from: demos.trajectories}}}}
  two:
    kind: sft
    {cpu}
    params: {{steps: 3, batch_size: 2, init: {{hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 32, vocab_size: 300}}}}
    inputs: {{trajectories: {{from: demos.trajectories}}}}
"#
        )
    };
    for (cpu, threads, overlap) in [("", 2, false), ("resources: {cpu: 1}", 1, true)] {
        p.write("wf.yaml", &wf(cpu));
        let out = p.scorch(&["run", "wf.yaml", "--slots", "cpu=2", "--json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let events: Vec<serde_json::Value> = text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let at = |event: &str, node: &str| {
            events
                .iter()
                .position(|e| e["event"] == event && e["node"] == node)
                .unwrap_or_else(|| panic!("no {event} of {node}"))
        };
        let (s1, f1, s2, f2) = (
            at("node_started", "one"),
            at("node_finished", "one"),
            at("node_started", "two"),
            at("node_finished", "two"),
        );
        let overlapped = s1 < f2 && s2 < f1;
        assert_eq!(overlapped, overlap, "cpu `{cpu}`");
        let id = events.last().unwrap()["id"].as_str().unwrap().to_owned();
        for node in ["one", "two"] {
            let log = text(&p.scorch(&["logs", &id, node]).stdout);
            assert!(
                log.contains(&format!("scorch-worker uses {threads} thread(s)")),
                "{node}: {log}"
            );
        }
        std::fs::remove_dir_all(p.path().join(".scorch")).unwrap();
    }
}
