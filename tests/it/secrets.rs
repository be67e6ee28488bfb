//! A canary token planted through every path a secret can take into a workflow (params,
//! vars, interpolation inside longer strings, a matrix node, an exec command and its env, a
//! succeeding and a failing node, an endpoint's API key) is found nowhere: not in any file
//! of the store, not in the output of `run`, `run --json`, `show`, `runs` or `explain`.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{Project, files_under, text};

const CANARY: &str = "tok-canary-91c4e7d2b5";

const WORKFLOW: &str = r#"
name: canary
vars:
  tok: "${env.SCORCH_CANARY}"
  header: "Bearer ${env.SCORCH_CANARY}"
nodes:
  nums: {kind: numbers, params: {n: 4}}
  copy:
    kind: exec
    params:
      command: [python3, -c, "import shutil, sys; shutil.copyfile(sys.argv[1], sys.argv[2])", "{inputs.rows}", "{outputs.table}", "${vars.tok}"]
      env: {TOKEN: "${env.SCORCH_CANARY}", AUTH: "${vars.header}"}
      outputs: {table: {type: table, columns: {x: int64}}}
    inputs: {rows: {from: nums.table}}
  leak:
    kind: exec
    matrix: {k: [1, 2]}
    params:
      command: [python3, -c, "import os, sys; print('token', sys.argv[1], os.environ['T']); sys.exit(3)", "x-${vars.tok}-y"]
      env: {T: "${env.SCORCH_CANARY}"}
      outputs: {table: {type: table}}
  endpoint:
    kind: tasks
    params: {split: test, count: 2}
  ask:
    kind: rollout
    params:
      policy: {kind: endpoint, base_url: "http://127.0.0.1:9/v1", model: "m-${vars.tok}", api_key_env: SCORCH_CANARY, retries: 0, timeout_s: 2}
    inputs: {tasks: {from: endpoint.tasks}}
"#;

#[test]
fn a_canary_token_reaches_no_record_and_no_output() {
    let p = Project::new();
    p.write("wf.yaml", WORKFLOW);
    let scorch_split = |args: &[&str]| {
        let out = p.cmd(args).env("SCORCH_CANARY", CANARY).output().unwrap();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let scorch = |args: &[&str]| {
        let (code, o, e) = scorch_split(args);
        (code, o + &e)
    };
    let mut outputs = Vec::new();
    let (code, out) = scorch(&["run", "wf.yaml"]);
    assert_eq!(code, Some(1), "the failing nodes fail the run: {out}");
    assert!(
        out.contains("${env.SCORCH_CANARY}"),
        "the error names the secret by reference: {out}"
    );
    outputs.push(out);
    let (code, json, err) = scorch_split(&["run", "wf.yaml", "--json"]);
    assert_eq!(code, Some(1), "{json}{err}");
    let rec = common::run_record(json.as_bytes());
    let id = rec["id"].as_str().unwrap().to_owned();
    outputs.push(json + &err);
    for args in [
        vec!["show", id.as_str()],
        vec!["runs"],
        vec!["explain", "wf.yaml", "copy"],
        vec!["plan", "wf.yaml"],
    ] {
        outputs.push(scorch(&args).1);
    }
    for (i, o) in outputs.iter().enumerate() {
        assert!(!o.contains(CANARY), "output {i} holds the token:\n{o}");
    }
    let files = files_under(&p.path().join(".scorch"));
    assert!(files.len() > 10);
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
            "{} holds the token",
            f.display()
        );
    }
}
