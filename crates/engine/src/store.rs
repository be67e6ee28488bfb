//! The artifact store: content-addressed objects, artifacts and node manifests in an
//! `object_store` (a local folder, S3, or memory), plus run records.
//!
//! Where each of them lives is [`crate::layout`]'s: objects by content hash, artifacts by
//! theirs (which downstream cache keys use), node manifests by cache key (published with
//! put-if-absent once every object and artifact is written: the commit point), run records,
//! the key components a node last ran with, finished nodes' logs and metrics (secrets
//! redacted), saved training states.
//!
//! Nodes write their outputs into a local staging folder first (the store's `work/`
//! folder for a local store); a crash leaves staging folders and perhaps unreferenced
//! objects, never a manifest, and `gc` ([`crate::gc`]) removes both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_schema::Schema;
use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::cache::{KeyComponents, canonical_json};
use crate::error::{EngineError, EngineErrorKind};

/// A file the engine keeps per node and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFile {
    /// The node's log (its output, the worker's stderr, progress lines).
    Log,
    /// The metrics it reported as it ran, as JSON lines ([`crate::events::MetricLine`]).
    Metrics,
    /// What a cluster job of the node runs ([`crate::cluster::ClusterJob`]).
    Job,
}

impl NodeFile {
    fn extension(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Metrics => "metrics.jsonl",
            Self::Job => "job.json",
        }
    }
}

/// The default store URL.
pub const DEFAULT_STORE: &str = "file://.scorch";

/// Table or blob set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// Parquet table.
    Table,
    /// Files.
    Blobs,
}

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFile {
    /// Path inside the artifact.
    pub path: String,
    /// blake3 of the contents: the object's name.
    pub object: String,
    /// Size in bytes.
    pub size: u64,
}

/// An immutable output of a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Artifact {
    /// Table or blobs.
    pub kind: ArtifactKind,
    /// Its files, sorted by path.
    pub files: Vec<ArtifactFile>,
    /// For tables: the Arrow schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Schema>,
    /// For tables: rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

impl Artifact {
    /// The content hash: blake3 over the kind and the files.
    pub fn hash(&self) -> String {
        let v = serde_json::json!({"kind": self.kind, "files": self.files});
        blake3::hash(canonical_json(&v).as_bytes())
            .to_hex()
            .to_string()
    }
    /// Total bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// The published result of one node execution.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeManifest {
    /// The cache key.
    pub key: String,
    /// What the key is made of.
    pub components: KeyComponents,
    /// Output name → artifact hash.
    pub outputs: BTreeMap<String, String>,
    /// Metrics reported by the run.
    #[serde(default)]
    pub metrics: Vec<scorch_api::Metric>,
    /// The node id that produced it.
    pub node: String,
    /// When it was published (RFC 3339).
    pub created: String,
    /// How long the run took.
    pub duration_ms: u64,
}

/// A handle to an artifact store.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    url: String,
    work_dir: PathBuf,
}

/// What is wrong with a store URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadStoreUrl {
    /// `file://` with no folder.
    #[error("no folder given (use file://DIR)")]
    NoFolder,
    /// `s3://` with no bucket.
    #[error("no bucket given (use s3://BUCKET/PREFIX)")]
    NoBucket,
    /// Another scheme.
    #[error("unsupported scheme; use file://DIR, s3://BUCKET/PREFIX or memory://")]
    Scheme,
}

/// Check a store URL without opening anything: `file://DIR`, `s3://BUCKET[/PREFIX]` or
/// `memory://`. The error says what is wrong in words (no URL prefix).
pub fn check_url(url: &str) -> Result<(), BadStoreUrl> {
    if let Some(dir) = url.strip_prefix("file://") {
        if dir.is_empty() {
            return Err(BadStoreUrl::NoFolder);
        }
    } else if let Some(rest) = url.strip_prefix("s3://") {
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(BadStoreUrl::NoBucket);
        }
    } else if url != "memory://" && url != "memory:" {
        return Err(BadStoreUrl::Scheme);
    }
    Ok(())
}

impl Store {
    /// Open `url` (`file://DIR`, `s3://BUCKET[/PREFIX]`, `memory://`); relative folders are
    /// relative to `base`. S3 takes its credentials, region and endpoint from the usual
    /// `AWS_*` variables (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP=true` for a local server).
    pub fn open(url: &str, base: &Path) -> Result<Self, EngineError> {
        Self::open_with(url, base, &[])
    }

    /// [`open`](Store::open), with S3 settings (`aws_endpoint`, `aws_allow_http`, ...) that
    /// override the environment's.
    pub fn open_with(
        url: &str,
        base: &Path,
        s3_config: &[(&str, &str)],
    ) -> Result<Self, EngineError> {
        let bad = |why: String| EngineError::usage(format!("store `{url}`: {why}"));
        check_url(url).map_err(|why| bad(why.to_string()))?;
        let (inner, work_dir): (Arc<dyn ObjectStore>, PathBuf) =
            if let Some(dir) = url.strip_prefix("file://") {
                let root = std::path::absolute(base.join(dir))
                    .map_err(|e| EngineError::io(format!("the store folder {dir}"), e))?;
                std::fs::create_dir_all(&root).map_err(|e| {
                    EngineError::io(format!("creating store folder {}", root.display()), e)
                })?;
                // A folder emptied by a delete goes with it (a published node's saved
                // state, gc's leftovers), up to the store's root; a write recreates it.
                let fs = LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| bad(e.to_string()))?
                    .with_automatic_cleanup(true);
                (Arc::new(fs), root.join("work"))
            } else if url == "memory://" || url == "memory:" {
                (
                    Arc::new(InMemory::new()),
                    std::env::temp_dir().join(format!("scorch-memory-{}", std::process::id())),
                )
            } else if let Some(rest) = url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let mut builder = AmazonS3Builder::from_env();
                // Fail a dead or frozen server within about a minute: 30 s per request
                // (AWS_TIMEOUT, AWS_CONNECT_TIMEOUT override), retries of one request for at
                // most 30 s more (SCORCH_S3_RETRY_TIMEOUT_S).
                if std::env::var_os("AWS_TIMEOUT").is_none() {
                    builder = builder
                        .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "30s");
                }
                let retry_s = match std::env::var("SCORCH_S3_RETRY_TIMEOUT_S") {
                    Ok(v) => v.parse::<f64>().ok().filter(|s| *s >= 0.0).ok_or_else(|| {
                        bad(format!(
                            "SCORCH_S3_RETRY_TIMEOUT_S={v} is not a number of seconds"
                        ))
                    })?,
                    Err(_) => 30.0,
                };
                builder = builder.with_retry(RetryConfig {
                    max_retries: 3,
                    retry_timeout: std::time::Duration::from_secs_f64(retry_s),
                    backoff: Default::default(),
                });
                for (k, v) in s3_config {
                    let key = k
                        .to_ascii_lowercase()
                        .parse()
                        .map_err(|e: object_store::Error| bad(e.to_string()))?;
                    builder = builder.with_config(key, *v);
                }
                let endpoint = builder
                    .get_config_value(&AmazonS3ConfigKey::Endpoint)
                    .unwrap_or_default();
                let allow_http = builder
                    .get_config_value(&AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp))
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"));
                if endpoint.starts_with("http://") && !allow_http {
                    return Err(bad(format!(
                        "the endpoint {endpoint} is plain HTTP, which the S3 client refuses unless \
                         AWS_ALLOW_HTTP=true is set"
                    )));
                }
                let s3 = builder
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| bad(e.to_string()))?;
                let prefix = prefix.trim_matches('/');
                let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix))
                };
                let tag = blake3::hash(url.as_bytes()).to_hex();
                (inner, base.join(".scorch").join("work").join(&tag[..12]))
            } else {
                return Err(bad("unsupported scheme".into()));
            };
        Ok(Self {
            inner,
            url: url.to_owned(),
            work_dir,
        })
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The URL with a local folder made absolute: what another process opens to reach the
    /// same store, wherever it runs from.
    pub fn absolute_url(&self) -> String {
        // A local store's work folder is `<absolute root>/work`.
        match (self.url.starts_with("file://"), self.work_dir.parent()) {
            (true, Some(root)) => format!("file://{}", root.display()),
            _ => self.url.clone(),
        }
    }
    /// The underlying object store.
    pub fn objects(&self) -> Arc<dyn ObjectStore> {
        self.inner.clone()
    }
    /// The local folder for staging areas and scratch directories.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }
    /// Where `path` is, for a person: a local file's absolute path, else the store's URL
    /// with the path appended.
    pub fn location(&self, path: &ObjectPath) -> String {
        match (self.url.starts_with("file://"), self.work_dir.parent()) {
            (true, Some(root)) => root.join(path.as_ref()).display().to_string(),
            _ => format!("{}/{path}", self.url.trim_end_matches('/')),
        }
    }

    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &ObjectPath,
    ) -> Result<Option<T>, EngineError> {
        match self.inner.get(path).await {
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| EngineError::store(format!("reading {path}"), e))?;
                serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                    EngineError::new(
                        EngineErrorKind::Corrupt,
                        format!("{path} in {} is corrupt: {e}", self.url),
                    )
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(EngineError::store(
                format!("reading {path} from {}", self.url),
                e,
            )),
        }
    }

    pub(crate) async fn put_json<T: Serialize>(
        &self,
        path: &ObjectPath,
        value: &T,
        mode: PutMode,
    ) -> Result<bool, EngineError> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| EngineError::new(EngineErrorKind::Internal, e.to_string()))?;
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(path, PutPayload::from(bytes), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(EngineError::store(
                format!("writing {path} to {}", self.url),
                e,
            )),
        }
    }

    /// Where a running node's log or metrics grow, on the machine that runs it.
    pub fn live_node_file(&self, run_id: &str, node_id: &str, file: NodeFile) -> PathBuf {
        self.live_dir(run_id)
            .join(format!("{node_id}.{}", file.extension()))
    }
    /// The folder of a running run's live node files, on the machine that runs it.
    pub fn live_dir(&self, run_id: &str) -> PathBuf {
        crate::layout::live_dir(&self.work_dir, run_id)
    }
    /// Keep a node's log or metrics.
    pub async fn put_node_file(
        &self,
        run_id: &str,
        node_id: &str,
        file: NodeFile,
        bytes: Vec<u8>,
    ) -> Result<(), EngineError> {
        let path = crate::layout::node_file(run_id, node_id, file.extension());
        self.inner
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|e| EngineError::store(format!("writing {path} to {}", self.url), e))
    }
    /// A finished node's log or metrics, if they were kept.
    pub async fn node_file(
        &self,
        run_id: &str,
        node_id: &str,
        file: NodeFile,
    ) -> Result<Option<String>, EngineError> {
        let path = crate::layout::node_file(run_id, node_id, file.extension());
        match self.inner.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map(|b| Some(String::from_utf8_lossy(&b).into_owned()))
                .map_err(|e| EngineError::store(format!("reading {path}"), e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(EngineError::store(
                format!("reading {path} from {}", self.url),
                e,
            )),
        }
    }

    /// Upload a local file as a content-addressed object; returns (hash, size).
    pub async fn put_file(&self, file: &Path) -> Result<(String, u64), EngineError> {
        let path = file.to_path_buf();
        let (hash, size) =
            tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
                let mut hasher = blake3::Hasher::new();
                let f = std::fs::File::open(&path)?;
                hasher.update_reader(f)?;
                let size = std::fs::metadata(&path)?.len();
                Ok((hasher.finalize().to_hex().to_string(), size))
            })
            .await
            .map_err(|e| EngineError::new(EngineErrorKind::Internal, e.to_string()))?
            .map_err(|e| EngineError::io(format!("hashing {}", file.display()), e))?;
        let target = crate::layout::object(&hash);
        match self.inner.head(&target).await {
            Ok(meta) if meta.size == size => return Ok((hash, size)),
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(EngineError::store(format!("checking {target}"), e)),
        }
        let mut src = tokio::fs::File::open(file)
            .await
            .map_err(|e| EngineError::io(format!("opening {}", file.display()), e))?;
        let mut writer = BufWriter::new(self.inner.clone(), target.clone());
        tokio::io::copy(&mut src, &mut writer)
            .await
            .map_err(|e| EngineError::io(format!("uploading {}", file.display()), e))?;
        writer
            .shutdown()
            .await
            .map_err(|e| EngineError::io(format!("uploading {}", file.display()), e))?;
        Ok((hash, size))
    }

    /// Write an artifact descriptor (idempotent); returns its hash.
    pub async fn put_artifact(&self, artifact: &Artifact) -> Result<String, EngineError> {
        let hash = artifact.hash();
        self.put_json(
            &crate::layout::artifact(&hash),
            artifact,
            PutMode::Overwrite,
        )
        .await?;
        Ok(hash)
    }

    /// Read artifact `hash`.
    pub async fn artifact(&self, hash: &str) -> Result<Artifact, EngineError> {
        self.get_json(&crate::layout::artifact(hash))
            .await?
            .ok_or_else(|| {
                EngineError::new(
                    EngineErrorKind::Corrupt,
                    format!(
                        "artifact {hash} is missing from {} (removed by gc?)",
                        self.url
                    ),
                )
            })
    }

    /// The manifest published under `key`, if any.
    pub async fn manifest(&self, key: &str) -> Result<Option<NodeManifest>, EngineError> {
        self.get_json(&crate::layout::manifest(key)).await
    }

    /// Publish a manifest: the commit point of a node. With `overwrite` false an existing
    /// manifest for the key wins (another run got there first with the same inputs).
    pub async fn publish(
        &self,
        manifest: &NodeManifest,
        overwrite: bool,
    ) -> Result<(), EngineError> {
        let mode = if overwrite {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        self.put_json(&crate::layout::manifest(&manifest.key), manifest, mode)
            .await?;
        Ok(())
    }

    /// The key components node `node` of `workflow` last ran or hit the cache with.
    pub async fn last(
        &self,
        workflow: &str,
        node: &str,
    ) -> Result<Option<KeyComponents>, EngineError> {
        self.get_json(&crate::layout::last(workflow, node)).await
    }

    /// Remember the key components of the node's latest run.
    pub async fn set_last(
        &self,
        workflow: &str,
        node: &str,
        c: &KeyComponents,
    ) -> Result<(), EngineError> {
        self.put_json(&crate::layout::last(workflow, node), c, PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    /// Write a run record.
    pub async fn put_run<T: Serialize>(&self, id: &str, record: &T) -> Result<(), EngineError> {
        self.put_json(&crate::layout::run(id), record, PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    /// Read a run record.
    pub async fn run<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
    ) -> Result<Option<T>, EngineError> {
        self.get_json(&crate::layout::run(id)).await
    }

    /// Names under `prefix/` (without the prefix and the `.json` suffix).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, EngineError> {
        let p = ObjectPath::from(prefix);
        let metas: Vec<_> = self
            .inner
            .list(Some(&p))
            .try_collect()
            .await
            .map_err(|e| EngineError::store(format!("listing {prefix}/ in {}", self.url), e))?;
        let mut out: Vec<(String, u64)> = metas
            .into_iter()
            .filter_map(|m| {
                let name = m
                    .location
                    .as_ref()
                    .strip_prefix(&format!("{prefix}/"))?
                    .to_owned();
                Some((
                    name.strip_suffix(".json")
                        .map(str::to_owned)
                        .unwrap_or(name),
                    m.size,
                ))
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Copy a blob-set artifact's files into `dir`.
    pub async fn materialize(&self, artifact: &Artifact, dir: &Path) -> Result<(), EngineError> {
        for f in &artifact.files {
            let dest = dir.join(&f.path);
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| EngineError::io(format!("creating {}", parent.display()), e))?;
            }
            let bytes = self
                .inner
                .get(&crate::layout::object(&f.object))
                .await
                .map_err(|e| EngineError::store(format!("fetching {}", f.path), e))?
                .bytes()
                .await
                .map_err(|e| EngineError::store(format!("fetching {}", f.path), e))?;
            tokio::fs::write(&dest, &bytes)
                .await
                .map_err(|e| EngineError::io(format!("writing {}", dest.display()), e))?;
        }
        Ok(())
    }

    /// Delete one object path.
    pub async fn delete(&self, path: &ObjectPath) -> Result<(), EngineError> {
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(EngineError::store(format!("deleting {path}"), e)),
        }
    }
}

/// What `verify` found: every manifest's artifacts and every artifact's objects, present or
/// not.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Manifests read.
    pub manifests: usize,
    /// Artifacts checked.
    pub artifacts: usize,
    /// Objects checked.
    pub objects: usize,
    /// What is missing, one line each (`node <key>: artifact <hash>` or `artifact <hash>:
    /// object <hash>`).
    pub missing: Vec<String>,
}

/// Check that everything a manifest refers to is in the store.
pub async fn verify(store: &Store) -> Result<VerifyReport, EngineError> {
    let mut report = VerifyReport::default();
    let mut artifacts = BTreeSet::new();
    for (key, _) in store.list(crate::layout::NODES).await? {
        if let Some(m) = store.manifest(&key).await? {
            report.manifests += 1;
            for a in m.outputs.into_values() {
                artifacts.insert((key.clone(), a));
            }
        }
    }
    let mut objects = BTreeSet::new();
    for (key, hash) in artifacts {
        report.artifacts += 1;
        match store
            .get_json::<Artifact>(&crate::layout::artifact(&hash))
            .await?
        {
            Some(a) => objects.extend(a.files.into_iter().map(|f| (hash.clone(), f.object))),
            None => report.missing.push(format!("node {key}: artifact {hash}")),
        }
    }
    for (artifact, object) in objects {
        report.objects += 1;
        match store.inner.head(&crate::layout::object(&object)).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => report
                .missing
                .push(format!("artifact {artifact}: object {object}")),
            Err(e) => return Err(EngineError::store(format!("checking object {object}"), e)),
        }
    }
    Ok(report)
}
