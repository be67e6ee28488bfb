//! Where everything lives in a store, and in the local work folder beside it: the one place
//! that spells these paths.
//!
//! ```text
//! objects/{blake3}                       file contents, by hash
//! artifacts/{hash}.json                  an output: its files and the objects they are
//! nodes/{key}.json                       a node's manifest, the commit point of its cache key
//! runs/{id}.json                         run records
//! last/{workflow}/{node}.json            the key components a node last ran with (`explain`)
//! logs/{run}/{node}.{log,metrics.jsonl}  a finished node's log and live metrics
//! resume/{key}/...                       saved training states a rerun resumes from
//! leases/{run}.json                      a live run's lease
//! locks/{key}.json                       a node being computed (by one run at a time)
//! gc.lock                                held while `gc` deletes
//! ```
//!
//! The work folder (`Store::work_dir`, on the machine that runs): `staging/{pid}-{uuid}/`
//! (outputs being written, before upload) and `logs/{run}/` (live node files).

use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;

/// File contents, by blake3 hash.
pub const OBJECTS: &str = "objects";
/// Artifact descriptors.
pub const ARTIFACTS: &str = "artifacts";
/// Node manifests, by cache key.
pub const NODES: &str = "nodes";
/// Run records.
pub const RUNS: &str = "runs";
/// Live runs' leases.
pub const LEASES: &str = "leases";
/// Saved training states, by cache key.
pub const STATES: &str = "resume";

/// `{prefix}/{name}`.
fn under(prefix: &str, name: &str) -> ObjectPath {
    ObjectPath::from(format!("{prefix}/{name}"))
}

/// The object holding content `hash`.
pub fn object(hash: &str) -> ObjectPath {
    under(OBJECTS, hash)
}

/// The descriptor of artifact `hash`.
pub fn artifact(hash: &str) -> ObjectPath {
    under(ARTIFACTS, &format!("{hash}.json"))
}

/// The manifest published under cache key `key`.
pub fn manifest(key: &str) -> ObjectPath {
    under(NODES, &format!("{key}.json"))
}

/// The record of run `id`.
pub fn run(id: &str) -> ObjectPath {
    under(RUNS, &format!("{id}.json"))
}

/// The key components node `node` of `workflow` last ran with. Names are kept to a safe
/// alphabet (anything else becomes `~`), so a workflow or node name cannot leave `last/`.
pub fn last(workflow: &str, node: &str) -> ObjectPath {
    let enc = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '=') {
                    c
                } else {
                    '~'
                }
            })
            .collect()
    };
    ObjectPath::from(format!("last/{}/{}.json", enc(workflow), enc(node)))
}

/// A finished node's file (`extension`: `log` or `metrics.jsonl`).
pub fn node_file(run_id: &str, node_id: &str, extension: &str) -> ObjectPath {
    ObjectPath::from(format!("logs/{run_id}/{node_id}.{extension}"))
}

/// The prefix of the saved training states of cache key `key`.
pub fn states(key: &str) -> String {
    format!("{STATES}/{key}")
}

/// The lease of run `run`.
pub fn lease(run: &str) -> ObjectPath {
    under(LEASES, &format!("{run}.json"))
}

/// The lock of a node being computed under cache key `key`.
pub fn lock(key: &str) -> ObjectPath {
    ObjectPath::from(format!("locks/{key}.json"))
}

/// Held while `gc` deletes.
pub fn gc_lock() -> ObjectPath {
    ObjectPath::from("gc.lock")
}

/// The work folder's staging areas (one per attempt, named `{pid}-{uuid}` so `gc` can tell
/// a live process's from a leftover).
pub fn staging_root(work_dir: &Path) -> PathBuf {
    work_dir.join("staging")
}

/// A fresh staging area for this process.
pub fn new_staging(work_dir: &Path) -> PathBuf {
    staging_root(work_dir).join(format!(
        "{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

/// Where a running run's node files grow, in the work folder.
pub fn live_dir(work_dir: &Path, run_id: &str) -> PathBuf {
    work_dir.join("logs").join(run_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_the_stores_layout() {
        assert_eq!(object("ab").as_ref(), "objects/ab");
        assert_eq!(artifact("ab").as_ref(), "artifacts/ab.json");
        assert_eq!(manifest("k").as_ref(), "nodes/k.json");
        assert_eq!(run("r").as_ref(), "runs/r.json");
        assert_eq!(node_file("r", "n", "log").as_ref(), "logs/r/n.log");
        assert_eq!(states("k"), "resume/k");
        assert_eq!(lease("r").as_ref(), "leases/r.json");
        assert_eq!(lock("k").as_ref(), "locks/k.json");
        assert_eq!(gc_lock().as_ref(), "gc.lock");
        // A name cannot climb out of `last/` (object_store writes `~` as `%7E`).
        assert_eq!(
            last("../wf", "a/b[seed=1]").as_ref(),
            "last/..%7Ewf/a%7Eb%7Eseed=1%7E.json"
        );
        let staging = new_staging(Path::new("/w"));
        let name = staging.file_name().unwrap().to_string_lossy().into_owned();
        assert!(staging.starts_with("/w/staging"));
        assert!(
            name.starts_with(&format!("{}-", std::process::id())),
            "{name}"
        );
    }
}
