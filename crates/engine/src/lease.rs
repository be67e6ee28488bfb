//! Leases and locks: how runs and `gc` share one store (a local folder or S3) without racing.
//!
//! # Contract
//! - **A run** creates `leases/<run id>.json` before it reads or writes anything else, renews
//!   it every [`RENEW`] with an expiry [`TTL`] ahead, and deletes it when it ends. It then
//!   waits while a live `gc.lock` exists.
//! - **gc** creates `gc.lock` (put-if-absent), then lists `leases/`. With any live lease it
//!   removes nothing a run could use (only staging leftovers of dead local runs); otherwise it
//!   sweeps while it holds the lock, and deletes the lock at the end.
//! - Each side writes its own marker before it reads the other's, on a store that is
//!   linearizable per key (a local folder; S3), so at least one side sees the other: either
//!   gc sees the run's lease and keeps everything, or the run sees gc's lock and waits.
//! - **Node locks**: before computing a node, a run creates `locks/<key>.json` naming itself.
//!   A second run that finds the lock waits while the holder is live; then it takes the
//!   holder's published manifest as a cache hit, or takes the lock over if the holder ended
//!   without publishing. So a node is computed once, not once per concurrent run.
//! - A holder is live while its expiry is ahead of the reader's clock and, when it is on the
//!   reader's host, its process exists: a killed run blocks gc or other runs for at most one
//!   TTL from another machine, and not at all on its own machine. Clocks of machines sharing
//!   a store must agree to well within [`TTL`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::PutMode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::{EngineError, EngineErrorKind};
use crate::store::{NodeManifest, Store};

/// How long a lease or lock lasts without renewal.
pub const TTL: Duration = Duration::from_secs(120);
/// How often a run renews its lease.
pub const RENEW: Duration = Duration::from_secs(30);
/// How often a waiting run looks again.
const POLL: Duration = Duration::from_millis(200);

/// Who holds a lease or a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The run id (`gc` for gc's lock).
    pub run: String,
    /// The host name.
    pub host: String,
    /// The process id on that host.
    pub pid: u32,
    /// Milliseconds since the Unix epoch after which the holder counts as gone.
    pub expires_ms: u64,
    /// The node that holds a node's lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This machine's name (Linux: the kernel's hostname).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether process `pid` exists on this machine.
pub fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Holder {
    fn me(run: &str) -> Self {
        Self {
            run: run.to_owned(),
            host: host(),
            pid: std::process::id(),
            expires_ms: now_ms() + TTL.as_millis() as u64,
            node: None,
        }
    }

    /// Whether the holder still counts (see the module's contract).
    pub fn live(&self) -> bool {
        self.expires_ms > now_ms() && (self.host != host() || pid_alive(self.pid))
    }
}

/// A run's lease, renewed in the background until [`Lease::release`] (or drop).
#[derive(Debug)]
pub struct Lease {
    store: Store,
    run: String,
    stop: CancellationToken,
}

impl Lease {
    /// Take the lease of run `run`, then wait while gc holds the store. `waiting` is called
    /// once if the run has to wait.
    pub async fn acquire(
        store: &Store,
        run: &str,
        cancel: &CancellationToken,
        waiting: impl FnOnce(&Holder),
    ) -> Result<Self, EngineError> {
        store
            .put_json(
                &crate::layout::lease(run),
                &Holder::me(run),
                PutMode::Overwrite,
            )
            .await?;
        let stop = CancellationToken::new();
        let lease = Self {
            store: store.clone(),
            run: run.to_owned(),
            stop: stop.clone(),
        };
        {
            let (store, run) = (store.clone(), run.to_owned());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(RENEW) => {}
                    }
                    if let Err(e) = store
                        .put_json(
                            &crate::layout::lease(&run),
                            &Holder::me(&run),
                            PutMode::Overwrite,
                        )
                        .await
                    {
                        tracing::warn!(error = %e, "cannot renew the run's lease");
                    }
                }
            });
        }
        let mut waiting = Some(waiting);
        loop {
            match store.get_json::<Holder>(&crate::layout::gc_lock()).await? {
                Some(h) if h.live() => {
                    if let Some(f) = waiting.take() {
                        f(&h);
                    }
                }
                _ => return Ok(lease),
            }
            tokio::select! {
                () = cancel.cancelled() => {
                    return Err(EngineError::new(
                        EngineErrorKind::Store,
                        "cancelled while waiting for gc to release the store",
                    ));
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// End the lease.
    pub async fn release(self) -> Result<(), EngineError> {
        self.stop.cancel();
        self.store.delete(&crate::layout::lease(&self.run)).await
    }

    /// The run id.
    pub fn run(&self) -> &str {
        &self.run
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The runs whose leases are live.
pub async fn live_runs(store: &Store) -> Result<Vec<Holder>, EngineError> {
    let mut out = Vec::new();
    for (name, _) in store.list(crate::layout::LEASES).await? {
        if let Some(h) = store
            .get_json::<Holder>(&crate::layout::lease(&name))
            .await?
            && h.live()
        {
            out.push(h);
        }
    }
    Ok(out)
}

/// Whether run `run` holds a live lease (see the module's contract).
pub async fn run_live(store: &Store, run: &str) -> Result<bool, EngineError> {
    Ok(store
        .get_json::<Holder>(&crate::layout::lease(run))
        .await?
        .is_some_and(|h| h.live()))
}

/// gc's hold on the store.
#[derive(Debug)]
pub struct GcLock {
    store: Store,
}

impl GcLock {
    /// Take the store for gc; an error names the live gc that holds it.
    pub async fn acquire(store: &Store) -> Result<Self, EngineError> {
        for _ in 0..2 {
            if store
                .put_json(
                    &crate::layout::gc_lock(),
                    &Holder::me("gc"),
                    PutMode::Create,
                )
                .await?
            {
                return Ok(Self {
                    store: store.clone(),
                });
            }
            match store.get_json::<Holder>(&crate::layout::gc_lock()).await? {
                Some(h) if h.live() => {
                    return Err(EngineError::usage(format!(
                        "another gc is running on this store (pid {} on {}); try again when it ends",
                        h.pid, h.host
                    )));
                }
                // A stale lock of a gc that died: replace it.
                _ => store.delete(&crate::layout::gc_lock()).await?,
            }
        }
        Err(EngineError::usage(
            "another gc took the store at the same moment; try again",
        ))
    }

    /// Give the store back.
    pub async fn release(self) -> Result<(), EngineError> {
        self.store.delete(&crate::layout::gc_lock()).await
    }
}

/// The outcome of [`lock_node`].
#[derive(Debug)]
pub enum NodeLock {
    /// This run computes the node; call [`unlock_node`] afterwards.
    Acquired,
    /// Another run computed it while this one waited: its manifest, and the run that
    /// published it (empty when it had already unlocked).
    Published(Box<NodeManifest>, Computer),
    /// The run was cancelled while it waited.
    Cancelled,
}

/// Who computed a node that was published while a run waited for it: a run, and the node of
/// that run, where known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Computer {
    /// The run (empty: not known).
    pub run: String,
    /// The node.
    pub node: Option<String>,
}

/// Take node `key` for node `node` of run `run`, waiting while another live run (or another
/// node of this run with the same key) computes it. With `reuse`
/// a manifest published meanwhile ends the wait ([`NodeLock::Published`]); without it (a
/// forced node) the run waits for the lock only. `waiting` is called once with the holder
/// if the run has to wait.
pub async fn lock_node(
    store: &Store,
    key: &str,
    run: &str,
    node: &str,
    reuse: bool,
    cancel: &CancellationToken,
    waiting: impl FnOnce(&Holder),
) -> Result<NodeLock, EngineError> {
    let mut waiting = Some(waiting);
    // The last holder seen: it published, even if it unlocked before we looked again.
    let mut seen: Option<Computer> = None;
    let me = Holder {
        node: Some(node.to_owned()),
        ..Holder::me(run)
    };
    loop {
        let acquired = store
            .put_json(&crate::layout::lock(key), &me, PutMode::Create)
            .await?;
        let holder = if acquired {
            None
        } else {
            store.get_json::<Holder>(&crate::layout::lock(key)).await?
        };
        // Published meanwhile, perhaps by a holder that unlocked just before we locked.
        if reuse && let Some(m) = store.manifest(key).await? {
            if acquired {
                unlock_node(store, key).await?;
            }
            let by = holder
                .map(|h| Computer {
                    run: h.run,
                    node: h.node,
                })
                .or(seen)
                .unwrap_or_default();
            return Ok(NodeLock::Published(Box::new(m), by));
        }
        if acquired {
            return Ok(NodeLock::Acquired);
        }
        match holder {
            // The holder's own lease says whether it is still at work.
            Some(h) if holder_live(store, &h).await? => {
                if let Some(f) = waiting.take() {
                    f(&h);
                }
                seen = Some(Computer {
                    run: h.run.clone(),
                    node: h.node.clone(),
                });
                tokio::select! {
                    () = cancel.cancelled() => return Ok(NodeLock::Cancelled),
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            Some(_) => store.delete(&crate::layout::lock(key)).await?,
            None => {}
        }
    }
}

async fn holder_live(store: &Store, h: &Holder) -> Result<bool, EngineError> {
    Ok(store
        .get_json::<Holder>(&crate::layout::lease(&h.run))
        .await?
        .is_some_and(|l| l.live()))
}

/// Release node `key` after computing it (published or failed).
pub async fn unlock_node(store: &Store, key: &str) -> Result<(), EngineError> {
    store.delete(&crate::layout::lock(key)).await
}
