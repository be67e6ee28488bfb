//! The same workflow runs, and reruns cached, against a real S3-compatible server: moto's
//! server on 127.0.0.1 (started here; `.ci/run` installs it), or the server named by
//! `SCORCH_TEST_S3_ENDPOINT`.

#![allow(clippy::unwrap_used)]

mod common;

use common::s3::{create_bucket, start_server};
use common::{DIAMOND, Project, text, with_outcome};

#[test]
fn a_workflow_runs_and_reruns_cached_against_a_real_s3_server() {
    let server = start_server();
    let bucket = format!("scorch-test-{}", std::process::id());
    create_bucket(&server.endpoint, &bucket);
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    let store = format!("s3://{bucket}/experiments/diamond");
    let env = common::s3::aws_env(&server.endpoint);
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["run", "wf.yaml", "--store", &store, "--json"];
        args.extend_from_slice(extra);
        let out = p.cmd(&args).envs(env.clone()).output().expect("scorch");
        assert!(
            matches!(out.status.code(), Some(0)),
            "{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let first = run(&[]);
    assert_eq!(with_outcome(&first, "ran").len(), 5, "{first}");
    let uri = first["nodes"][0]["outputs"]["table"]["uri"]
        .as_str()
        .unwrap();
    assert!(uri.starts_with(&format!("{store}/artifacts/")), "{uri}");
    let second = run(&[]);
    assert_eq!(with_outcome(&second, "cached").len(), 5, "{second}");
    let third = run(&["--set", "nodes.doubled.params.max=1000000"]);
    assert_eq!(
        with_outcome(&third, "ran"),
        vec!["doubled"],
        "early cutoff on S3 too"
    );
    // Nothing went to the local disk but staging: the records are in the bucket.
    assert!(!p.path().join(".scorch/nodes").exists());
    let runs = p
        .cmd(&["runs", "--store", &store])
        .envs(env.clone())
        .output()
        .unwrap();
    assert_eq!(
        text(&runs.stdout).matches("succeeded").count(),
        3,
        "{}",
        text(&runs.stdout)
    );
    let gc = p
        .cmd(&["gc", "--dry-run", "--store", &store])
        .envs(env.clone())
        .output()
        .unwrap();
    assert!(
        text(&gc.stdout).contains("would remove 0 staging folder(s), 0 artifact(s), 0 object(s)"),
        "{}{}",
        text(&gc.stdout),
        text(&gc.stderr)
    );
}
