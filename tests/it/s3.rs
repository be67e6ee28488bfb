//! The same workflow runs, and reruns cached, against a real S3-compatible server: moto's
//! server on 127.0.0.1 (started here; `.ci/run` installs it), or the server named by
//! `SCORCH_TEST_S3_ENDPOINT`.

#![allow(clippy::unwrap_used)]

use crate::common;

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
        common::run_record(&out.stdout)
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

/// A server that accepts connections and never answers: a run against it fails within the
/// timeouts it was given, with exit 1 and a message that says so.
#[test]
fn a_frozen_s3_server_fails_the_run_within_its_timeouts() {
    let frozen = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", frozen.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        // Keep every connection open, silent, until the test ends.
        let mut open = Vec::new();
        for s in frozen.incoming().take(16) {
            open.push(s);
        }
    });
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    let start = std::time::Instant::now();
    let out = p
        .cmd(&["run", "wf.yaml", "--store", "s3://frozen/x"])
        .envs(common::s3::aws_env(&endpoint))
        .env("AWS_TIMEOUT", "2s")
        .env("SCORCH_S3_RETRY_TIMEOUT_S", "1")
        .output()
        .unwrap();
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(took < std::time::Duration::from_secs(30), "took {took:?}");
    // The error names the store and the operation that got no answer.
    assert!(
        text(&out.stderr).contains("to s3://frozen/x"),
        "{}",
        text(&out.stderr)
    );
    drop(held);
}

/// The usual mistakes get a sentence, not an XML body or "builder error".
#[test]
fn usual_s3_mistakes_get_plain_messages() {
    let server = start_server();
    let p = Project::new();
    p.write("wf.yaml", DIAMOND);
    let env = common::s3::aws_env(&server.endpoint);
    let no_http: Vec<_> = env
        .iter()
        .filter(|(k, _)| *k != "AWS_ALLOW_HTTP")
        .cloned()
        .collect();
    let out = p
        .cmd(&["run", "wf.yaml", "--store", "s3://b/x"])
        .env_remove("AWS_ALLOW_HTTP")
        .envs(no_http)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("plain HTTP")
            && text(&out.stderr).contains("AWS_ALLOW_HTTP=true"),
        "{}",
        text(&out.stderr)
    );
    let out = p
        .cmd(&["run", "wf.yaml", "--store", "s3://no-such-bucket-here/x"])
        .envs(env)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("the bucket does not exist"), "{err}");
    assert!(!err.contains("<?xml"), "{err}");
}
