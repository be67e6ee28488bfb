//! Where a long node keeps its state between attempts, so that one that is killed,
//! cancelled or preempted resumes from its last saved step on the next attempt or run.
//!
//! The state of a node is kept in the store under a prefix of its cache key (so it is found
//! again exactly when the node would compute the same thing): each save writes its files under
//! `PREFIX/STEP/`, then `PREFIX/latest.json` naming them, then removes the saves before it. A
//! save cut off half-way leaves `latest.json` pointing at the previous, whole one. The engine
//! removes the prefix once the node's outputs are published.
//!
//! A node made of many independent pieces of work (the episodes of a rollout) keeps a
//! [`Journal`] instead: each piece is written under `PREFIX/journal/` as it ends, so a rerun
//! redoes only the pieces that had not ended.

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::PluginError;

/// What `latest.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Latest {
    step: u64,
    files: Vec<String>,
}

/// A node's resumable state in the store; cheap to clone, usable from a blocking thread.
#[derive(Clone)]
pub struct StateStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn io(what: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::new(crate::PluginErrorKind::Io, format!("{what}: {e}"))
}

impl StateStore {
    /// The state under `prefix` of `store`; blocking calls run on `runtime`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: String,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            store,
            prefix,
            runtime,
        }
    }

    fn path(&self, rest: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{rest}", self.prefix))
    }

    /// Save the files of folder `dir` (not its subfolders) as the state at `step`.
    pub async fn save(&self, step: u64, dir: &Path) -> Result<(), PluginError> {
        let mut files = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(|e| io("reading the state folder", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io("reading the state folder", e))?;
            if !entry.path().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = tokio::fs::read(entry.path())
                .await
                .map_err(|e| io(&format!("reading {name}"), e))?;
            self.store
                .put(
                    &self.path(&format!("{step}/{name}")),
                    PutPayload::from(bytes),
                )
                .await
                .map_err(|e| io("saving the node's state", e))?;
            files.push(name);
        }
        files.sort();
        let latest = serde_json::to_vec(&Latest { step, files }).unwrap_or_default();
        self.store
            .put(&self.path("latest.json"), PutPayload::from(latest))
            .await
            .map_err(|e| io("saving the node's state", e))?;
        // Older saves go; a failure to remove one is left to the engine's clean-up.
        let older = self.saved().await.unwrap_or_default();
        let keep = format!("{}/{step}/", self.prefix);
        let journal = format!("{}/{JOURNAL}/", self.prefix);
        for p in older {
            let s = p.to_string();
            if !s.starts_with(&keep) && !s.starts_with(&journal) && !s.ends_with("/latest.json") {
                let _ = self.store.delete(&p).await;
            }
        }
        Ok(())
    }

    /// Fetch the last saved state into folder `dir`; its step, or `None` when there is none.
    pub async fn load(&self, dir: &Path) -> Result<Option<u64>, PluginError> {
        let latest = match self.store.get(&self.path("latest.json")).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| io("reading the node's state", e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(io("reading the node's state", e)),
        };
        let latest: Latest = serde_json::from_slice(&latest)
            .map_err(|e| io("the node's saved state does not parse", e))?;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io("creating the state folder", e))?;
        for name in &latest.files {
            let bytes = self
                .store
                .get(&self.path(&format!("{}/{name}", latest.step)))
                .await
                .map_err(|e| io(&format!("reading the saved {name}"), e))?
                .bytes()
                .await
                .map_err(|e| io(&format!("reading the saved {name}"), e))?;
            tokio::fs::write(dir.join(name), bytes)
                .await
                .map_err(|e| io(&format!("writing {name}"), e))?;
        }
        Ok(Some(latest.step))
    }

    /// [`save`](Self::save) from a blocking thread (inside [`crate::NodeContext::blocking`]).
    pub fn save_blocking(&self, step: u64, dir: &Path) -> Result<(), PluginError> {
        self.runtime.block_on(self.save(step, dir))
    }

    /// [`load`](Self::load) from a blocking thread.
    pub fn load_blocking(&self, dir: &Path) -> Result<Option<u64>, PluginError> {
        self.runtime.block_on(self.load(dir))
    }

    /// The node's journal of finished pieces of work.
    pub fn journal(&self) -> Journal {
        Journal {
            state: self.clone(),
        }
    }

    /// Every object under the node's prefix.
    async fn saved(&self) -> Result<Vec<ObjectPath>, object_store::Error> {
        self.store
            .list(Some(&ObjectPath::from(self.prefix.clone())))
            .map_ok(|m| m.location)
            .try_collect()
            .await
    }

    /// Remove every saved state (the node finished).
    pub async fn clear(&self) -> Result<(), PluginError> {
        let all = self
            .saved()
            .await
            .map_err(|e| io("listing the node's state", e))?;
        for p in all {
            let _ = self.store.delete(&p).await;
        }
        Ok(())
    }
}

/// The folder of a node's state that holds its journal.
const JOURNAL: &str = "journal";

/// Pieces of a node's work that ended, each an object of its own written as it ends; a
/// rerun of the node reads them back and redoes only the rest. Entries are named by the
/// node (an episode's place in its table); writing one again replaces it.
#[derive(Debug, Clone)]
pub struct Journal {
    state: StateStore,
}

impl Journal {
    /// Record piece `name` with `bytes`.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), PluginError> {
        self.state
            .store
            .put(
                &self.state.path(&format!("{JOURNAL}/{name}")),
                PutPayload::from(bytes),
            )
            .await
            .map_err(|e| io("writing to the node's journal", e))?;
        Ok(())
    }

    /// Every recorded piece, by name, in name order.
    pub async fn entries(&self) -> Result<Vec<(String, Vec<u8>)>, PluginError> {
        let dir = format!("{}/{JOURNAL}/", self.state.prefix);
        let mut names: Vec<ObjectPath> = self
            .state
            .store
            .list(Some(&ObjectPath::from(format!(
                "{}/{JOURNAL}",
                self.state.prefix
            ))))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| io("listing the node's journal", e))?;
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for p in names {
            let bytes = match self.state.store.get(&p).await {
                Ok(r) => r
                    .bytes()
                    .await
                    .map_err(|e| io("reading the node's journal", e))?,
                // Removed since it was listed (the node finished in another run).
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(io("reading the node's journal", e)),
            };
            let s = p.to_string();
            let name = s.strip_prefix(&dir).unwrap_or(&s).to_owned();
            out.push((name, bytes.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_save_replaces_the_one_before_and_loads_back() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let s = StateStore::new(
            store.clone(),
            "resume/k1".into(),
            tokio::runtime::Handle::current(),
        );
        let dir = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        assert_eq!(s.load(out.path()).await.unwrap(), None);
        std::fs::write(dir.path().join("weights"), b"w10").unwrap();
        s.save(10, dir.path()).await.unwrap();
        std::fs::write(dir.path().join("weights"), b"w20").unwrap();
        std::fs::write(dir.path().join("meta.json"), b"{}").unwrap();
        s.save(20, dir.path()).await.unwrap();
        assert_eq!(s.load(out.path()).await.unwrap(), Some(20));
        assert_eq!(std::fs::read(out.path().join("weights")).unwrap(), b"w20");
        let names: Vec<String> = store
            .list(None)
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .unwrap();
        assert!(!names.iter().any(|n| n.contains("/10/")), "{names:?}");
        s.clear().await.unwrap();
        assert_eq!(s.load(out.path()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_journal_outlives_saves_and_goes_with_clear() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let s = StateStore::new(store, "resume/k2".into(), tokio::runtime::Handle::current());
        let j = s.journal();
        assert!(j.entries().await.unwrap().is_empty());
        j.put("00000002", b"two".to_vec()).await.unwrap();
        j.put("00000001", b"one".to_vec()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w"), b"w").unwrap();
        s.save(5, dir.path()).await.unwrap();
        s.save(6, dir.path()).await.unwrap();
        j.put("00000002", b"TWO".to_vec()).await.unwrap();
        assert_eq!(
            j.entries().await.unwrap(),
            vec![
                ("00000001".to_owned(), b"one".to_vec()),
                ("00000002".to_owned(), b"TWO".to_vec())
            ]
        );
        s.clear().await.unwrap();
        assert!(j.entries().await.unwrap().is_empty());
    }
}
