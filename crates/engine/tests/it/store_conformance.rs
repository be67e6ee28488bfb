//! The artifact store's conformance checks (`scorch_testkit::store`), each run against every
//! backend on a store of its own: a local folder, memory, and a real S3-compatible server.

#![allow(clippy::unwrap_used)]

use scorch_engine::store::Store;
use scorch_testkit::{s3, store::CHECKS};

/// Every check on a fresh store from `open` (given the check's name); a failure's output
/// names the check it was in.
async fn run_checks(open: impl Fn(&str) -> Store) {
    for (name, check) in CHECKS {
        eprintln!("check {name}");
        check(&open(name)).await;
    }
}

#[tokio::test]
async fn local_folder() {
    let dir = tempfile::tempdir().unwrap();
    run_checks(|name| Store::open(&format!("file://{name}"), dir.path()).unwrap()).await;
}

#[tokio::test]
async fn memory() {
    run_checks(|_| Store::open("memory://", std::path::Path::new(".")).unwrap()).await;
}

#[tokio::test]
async fn s3_compatible_server() {
    let server = s3::start_server();
    let bucket = format!("conformance-{}", std::process::id());
    s3::create_bucket(&server.endpoint, &bucket);
    let env = s3::aws_env(&server.endpoint);
    let config: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    run_checks(|name| {
        Store::open_with(&format!("s3://{bucket}/{name}"), dir.path(), &config).unwrap()
    })
    .await;
}

#[test]
fn every_check_has_a_distinct_name() {
    let mut names: Vec<&str> = CHECKS.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CHECKS.len());
    assert!(names.len() >= 6);
}

#[test]
fn bad_urls_are_usage_errors() {
    for url in ["ftp://x", "file://", "s3://"] {
        let err = Store::open(url, std::path::Path::new(".")).unwrap_err();
        assert_eq!(
            err.kind,
            scorch_engine::error::EngineErrorKind::Usage,
            "{url}: {err}"
        );
        assert!(err.message.contains(url), "{err}");
    }
}
