//! One conformance suite for the artifact store, run against every backend: a local folder,
//! memory, and a real S3-compatible server.

#![allow(clippy::unwrap_used)]

#[path = "../../../tests/common/s3.rs"]
mod s3;

use std::collections::BTreeMap;

use scorch_api::resume::StateStore;
use scorch_engine::cache::{CACHE_FORMAT, KeyComponents};
use scorch_engine::gc::{GcOptions, gc};
use scorch_engine::store::{Artifact, ArtifactFile, ArtifactKind, NodeManifest, Store};

fn manifest(key_seed: u64, outputs: BTreeMap<String, String>) -> NodeManifest {
    let components = KeyComponents {
        format: CACHE_FORMAT,
        kind: "numbers".into(),
        version: "1".into(),
        params: serde_json::json!({"n": 3}),
        seed: key_seed,
        inputs: BTreeMap::new(),
    };
    NodeManifest {
        key: components.key(),
        components,
        outputs,
        metrics: Vec::new(),
        node: "nums".into(),
        created: "2026-01-01T00:00:00Z".into(),
        duration_ms: 1,
    }
}

/// The contract every backend must keep.
async fn conformance(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.bin");
    std::fs::write(&file, b"hello objects").unwrap();

    // Objects are content-addressed and idempotent.
    let (hash, size) = store.put_file(&file).await.unwrap();
    assert_eq!(hash, blake3::hash(b"hello objects").to_hex().to_string());
    assert_eq!(size, 13);
    assert_eq!(store.put_file(&file).await.unwrap(), (hash.clone(), 13));
    let big = dir.path().join("big.bin");
    let bytes: Vec<u8> = (0..12_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&big, &bytes).unwrap();
    let (big_hash, big_size) = store.put_file(&big).await.unwrap();
    assert_eq!(big_size, 12_000_000, "multipart uploads keep every byte");

    // Artifacts round-trip and hash their content.
    let artifact = Artifact {
        kind: ArtifactKind::Blobs,
        files: vec![
            ArtifactFile {
                path: "a.bin".into(),
                object: hash.clone(),
                size,
            },
            ArtifactFile {
                path: "sub/big.bin".into(),
                object: big_hash,
                size: big_size,
            },
        ],
        schema: None,
        rows: None,
    };
    let ah = store.put_artifact(&artifact).await.unwrap();
    assert_eq!(ah, artifact.hash());
    assert_eq!(store.artifact(&ah).await.unwrap().files, artifact.files);
    let out = dir.path().join("out");
    store.materialize(&artifact, &out).await.unwrap();
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), b"hello objects");
    assert_eq!(std::fs::read(out.join("sub/big.bin")).unwrap(), bytes);

    // Manifests: absent until published; the first publication wins; overwrite replaces.
    let first = manifest(1, BTreeMap::from([("blobs".to_owned(), ah.clone())]));
    assert!(store.manifest(&first.key).await.unwrap().is_none());
    store.publish(&first, false).await.unwrap();
    let mut rival = first.clone();
    rival.node = "rival".into();
    store.publish(&rival, false).await.unwrap();
    assert_eq!(
        store.manifest(&first.key).await.unwrap().unwrap().node,
        "nums",
        "put-if-absent"
    );
    store.publish(&rival, true).await.unwrap();
    assert_eq!(
        store.manifest(&first.key).await.unwrap().unwrap().node,
        "rival",
        "forced overwrite"
    );

    // Listing, last-run memory and run records.
    store
        .set_last("wf", "rl[lr=1e-6]", &first.components)
        .await
        .unwrap();
    assert_eq!(
        store.last("wf", "rl[lr=1e-6]").await.unwrap(),
        Some(first.components.clone())
    );
    assert_eq!(store.last("wf", "other").await.unwrap(), None);
    store
        .put_run("r1", &serde_json::json!({"id": "r1"}))
        .await
        .unwrap();
    let runs = store.list("runs").await.unwrap();
    assert_eq!(
        runs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        vec!["r1"]
    );

    // gc keeps what manifests reference and removes the rest.
    std::fs::write(&file, b"orphan").unwrap();
    let (orphan, _) = store.put_file(&file).await.unwrap();
    let dry = GcOptions {
        dry_run: true,
        ..GcOptions::default()
    };
    let report = gc(store, dry).await.unwrap();
    assert_eq!(report.objects, vec![orphan.clone()]);
    let report = gc(store, GcOptions::default()).await.unwrap();
    assert_eq!(report.objects, vec![orphan]);
    assert!(
        gc(store, GcOptions::default())
            .await
            .unwrap()
            .objects
            .is_empty()
    );

    // Saved states: a published node's is left over and goes; an interrupted node's stays
    // unless asked for.
    let saved = dir.path().join("saved");
    std::fs::create_dir_all(&saved).unwrap();
    std::fs::write(saved.join("state.bin"), b"0123456789").unwrap();
    let runtime = tokio::runtime::Handle::current();
    for key in [first.key.as_str(), "interrupted"] {
        StateStore::new(
            store.objects(),
            scorch_engine::layout::states(key),
            runtime.clone(),
        )
        .save(3, &saved)
        .await
        .unwrap();
    }
    let report = gc(store, GcOptions::default()).await.unwrap();
    assert_eq!(report.states, vec![first.key.clone()]);
    assert_eq!(report.kept_states, vec!["interrupted".to_owned()]);
    let sweep = |options| async move { gc(store, options).await.unwrap() };
    let report = sweep(GcOptions {
        dry_run: true,
        interrupted: true,
    })
    .await;
    assert_eq!(report.states, vec!["interrupted".to_owned()]);
    let report = sweep(GcOptions {
        dry_run: false,
        interrupted: true,
    })
    .await;
    assert_eq!(report.states, vec!["interrupted".to_owned()]);
    assert!(store.list("resume").await.unwrap().is_empty());
    store
        .materialize(&artifact, &dir.path().join("again"))
        .await
        .unwrap();
}

#[tokio::test]
async fn local_folder() {
    let dir = tempfile::tempdir().unwrap();
    conformance(&Store::open("file://store", dir.path()).unwrap()).await;
}

#[tokio::test]
async fn memory() {
    conformance(&Store::open("memory://", std::path::Path::new(".")).unwrap()).await;
}

#[tokio::test]
async fn s3_compatible_server() {
    let server = s3::start_server();
    let bucket = format!("conformance-{}", std::process::id());
    s3::create_bucket(&server.endpoint, &bucket);
    let env = s3::aws_env(&server.endpoint);
    let config: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{bucket}/prefix");
    conformance(&Store::open_with(&url, dir.path(), &config).unwrap()).await;
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
