//! The artifact store's contract, as named checks. Each takes an empty store of the backend
//! under test and panics where the backend breaks the contract; a backend's test calls every
//! one on a fresh store ([`CHECKS`] lists them), so a failure names the property.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use scorch_api::resume::StateStore;
use scorch_engine::cache::{CACHE_FORMAT, KeyComponents};
use scorch_engine::gc::{GcOptions, gc};
use scorch_engine::store::{Artifact, ArtifactFile, ArtifactKind, NodeManifest, Store};

/// A check: a name and the function that runs it on a store.
pub type Check = (
    &'static str,
    for<'a> fn(&'a Store) -> Pin<Box<dyn Future<Output = ()> + 'a>>,
);

/// Every check, by name.
pub const CHECKS: &[Check] = &[
    ("objects_are_content_addressed", |s| {
        Box::pin(objects_are_content_addressed(s))
    }),
    ("artifacts_round_trip", |s| {
        Box::pin(artifacts_round_trip(s))
    }),
    ("manifests_are_put_if_absent", |s| {
        Box::pin(manifests_are_put_if_absent(s))
    }),
    ("runs_and_last_are_kept", |s| {
        Box::pin(runs_and_last_are_kept(s))
    }),
    ("gc_removes_only_what_nothing_references", |s| {
        Box::pin(gc_removes_only_what_nothing_references(s))
    }),
    ("saved_states_go_with_their_nodes", |s| {
        Box::pin(saved_states_go_with_their_nodes(s))
    }),
];

/// A manifest of a node `nums` whose key depends on `key_seed`.
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

/// 12 MB that are not all the same byte (past a multipart upload's first part).
fn big_bytes() -> Vec<u8> {
    (0..12_000_000u32).map(|i| (i % 251) as u8).collect()
}

/// A blob artifact of two files (one of them 12 MB, in a subfolder) put in `store`.
async fn two_file_artifact(store: &Store, dir: &Path) -> Artifact {
    let small = dir.join("a.bin");
    std::fs::write(&small, b"hello objects").unwrap();
    let big = dir.join("big.bin");
    std::fs::write(&big, big_bytes()).unwrap();
    let (hash, size) = store.put_file(&small).await.unwrap();
    let (big_hash, big_size) = store.put_file(&big).await.unwrap();
    Artifact {
        kind: ArtifactKind::Blobs,
        files: vec![
            ArtifactFile {
                path: "a.bin".into(),
                object: hash,
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
    }
}

/// Objects are named by their content's blake3 hash, and putting one twice is the same.
pub async fn objects_are_content_addressed(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.bin");
    std::fs::write(&file, b"hello objects").unwrap();
    let (hash, size) = store.put_file(&file).await.unwrap();
    assert_eq!(hash, blake3::hash(b"hello objects").to_hex().to_string());
    assert_eq!(size, 13);
    assert_eq!(store.put_file(&file).await.unwrap(), (hash, 13));
    let big = dir.path().join("big.bin");
    std::fs::write(&big, big_bytes()).unwrap();
    let (_, big_size) = store.put_file(&big).await.unwrap();
    assert_eq!(big_size, 12_000_000, "multipart uploads keep every byte");
}

/// An artifact comes back as it was put, hashed by its content, and materialises its files.
pub async fn artifacts_round_trip(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let artifact = two_file_artifact(store, dir.path()).await;
    let ah = store.put_artifact(&artifact).await.unwrap();
    assert_eq!(ah, artifact.hash());
    assert_eq!(store.artifact(&ah).await.unwrap().files, artifact.files);
    let out = dir.path().join("out");
    store.materialize(&artifact, &out).await.unwrap();
    assert_eq!(std::fs::read(out.join("a.bin")).unwrap(), b"hello objects");
    assert_eq!(std::fs::read(out.join("sub/big.bin")).unwrap(), big_bytes());
}

/// A manifest is absent until published; the first publication wins; overwrite replaces.
pub async fn manifests_are_put_if_absent(store: &Store) {
    let first = manifest(1, BTreeMap::new());
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
}

/// What a node last ran with (by workflow and node id, matrix brackets included) and run
/// records are kept and listed.
pub async fn runs_and_last_are_kept(store: &Store) {
    let first = manifest(1, BTreeMap::new());
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
}

/// gc keeps what published manifests reference and removes the objects nothing references
/// (a dry run lists them and removes nothing).
pub async fn gc_removes_only_what_nothing_references(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let artifact = two_file_artifact(store, dir.path()).await;
    let ah = store.put_artifact(&artifact).await.unwrap();
    store
        .publish(
            &manifest(1, BTreeMap::from([("blobs".to_owned(), ah)])),
            false,
        )
        .await
        .unwrap();
    let file = dir.path().join("orphan.bin");
    std::fs::write(&file, b"orphan").unwrap();
    let (orphan, _) = store.put_file(&file).await.unwrap();
    let dry = GcOptions {
        dry_run: true,
        ..GcOptions::default()
    };
    assert_eq!(gc(store, dry).await.unwrap().objects, vec![orphan.clone()]);
    assert_eq!(
        gc(store, GcOptions::default()).await.unwrap().objects,
        vec![orphan]
    );
    assert!(
        gc(store, GcOptions::default())
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    store
        .materialize(&artifact, &dir.path().join("again"))
        .await
        .unwrap();
}

/// A published node's saved training state is left over and goes; an interrupted node's
/// stays unless asked for (`interrupted`), and a dry run only lists it.
pub async fn saved_states_go_with_their_nodes(store: &Store) {
    let dir = tempfile::tempdir().unwrap();
    let published = manifest(1, BTreeMap::new());
    store.publish(&published, false).await.unwrap();
    let saved = dir.path().join("saved");
    std::fs::create_dir_all(&saved).unwrap();
    std::fs::write(saved.join("state.bin"), b"0123456789").unwrap();
    let runtime = tokio::runtime::Handle::current();
    for key in [published.key.as_str(), "interrupted"] {
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
    assert_eq!(report.states, vec![published.key.clone()]);
    assert_eq!(report.kept_states, vec!["interrupted".to_owned()]);
    let report = gc(
        store,
        GcOptions {
            dry_run: true,
            interrupted: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.states, vec!["interrupted".to_owned()]);
    let report = gc(
        store,
        GcOptions {
            dry_run: false,
            interrupted: true,
        },
    )
    .await
    .unwrap();
    assert_eq!(report.states, vec!["interrupted".to_owned()]);
    assert!(store.list("resume").await.unwrap().is_empty());
}
