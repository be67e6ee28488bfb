//! `scorch ui`: a live web view of a store's runs. One page (`page.html`, no build step)
//! over a small JSON API:
//!
//! - `GET /api/runs`: the runs, newest first;
//! - `GET /api/runs/{run}`: a run record (its nodes, their inputs, outcomes, metrics, outputs);
//! - `GET /api/runs/{run}/stream`: server-sent events, a `record` event each time the record
//!   changes (the engine rewrites it within two seconds of a node starting or ending), until
//!   the run is over;
//! - `GET /api/runs/{run}/results`: its evaluation results (accuracy with Wilson intervals,
//!   paired differences against the first arm) with its profile and vars;
//! - `GET /api/runs/{run}/metrics`: every node's metrics as reported while it ran;
//! - `GET /api/runs/{run}/params`: each node's params as its cache key has them;
//! - `GET /api/runs/{run}/nodes/{node}/metrics`: the metrics the node reported as it ran;
//! - `GET /api/runs/{run}/nodes/{node}/log`: its log (a running node's as it grows, redacted
//!   with the workflow's secrets);
//! - `GET /api/artifacts/{hash}`: a table's schema and first rows, a blob set's files and a
//!   checkpoint's config;
//! - `GET /api/runs/{run}/compare`: an experiment's arms (`scorch compare`), as Markdown.
//!
//! It reads the store and the live files of this machine's work folder; it writes nothing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use scorch_engine::events::MetricLine;
use scorch_engine::record::{RunRecord, RunStatus};
use scorch_engine::store::{NodeFile, Store};
use serde_json::{Value, json};

use super::{Failure, StoreArgs, effective_status, open_store};

const PAGE: &str = include_str!("page.html");

/// How often a stream looks at the run record.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug)]
struct App {
    store: Store,
    /// The runs list's entries by run id, with the size of the record they were read from:
    /// a finished run's record does not change, so a list of a thousand runs reads only the
    /// records that are new or still running.
    listed: tokio::sync::Mutex<std::collections::HashMap<String, (u64, Value)>>,
    /// A finished run's results table (its paired intervals take a bootstrap to compute).
    results: tokio::sync::Mutex<std::collections::HashMap<String, Value>>,
}

/// How many run records the runs list reads at once.
const READ_AT_ONCE: usize = 32;

type Shared = State<Arc<App>>;

/// An API error: a status and a message, as JSON.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<scorch_engine::error::EngineError> for ApiError {
    fn from(e: scorch_engine::error::EngineError) -> Self {
        Self(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

pub(crate) async fn ui(store: StoreArgs, addr: SocketAddr) -> Result<(), Failure> {
    let store = open_store(&store, None)?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        scorch_engine::error::EngineError::usage(format!("cannot listen on {addr}: {e}"))
    })?;
    let local = listener.local_addr().unwrap_or(addr);
    eprintln!("scorch ui: http://{local}/ (store {})", store.url());
    let app = Arc::new(App {
        store,
        listed: Default::default(),
        results: Default::default(),
    });
    let router = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/runs", get(runs))
        .route("/api/runs/{run}", get(run))
        .route("/api/runs/{run}/stream", get(stream))
        .route("/api/runs/{run}/compare", get(compare))
        .route("/api/runs/{run}/results", get(results))
        .route("/api/runs/{run}/metrics", get(run_metrics))
        .route("/api/runs/{run}/params", get(params))
        .route("/api/runs/{run}/nodes/{node}/metrics", get(metrics))
        .route("/api/runs/{run}/nodes/{node}/log", get(log))
        .route("/api/artifacts/{hash}", get(artifact))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| scorch_engine::error::EngineError::usage(format!("serving {addr}: {e}")))?;
    Ok(())
}

/// A record with its effective status (`died` for a running record whose process is gone).
fn with_status(r: &RunRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["status"] = Value::String(effective_status(r));
    v
}

async fn record(store: &Store, id: &str) -> Result<RunRecord, ApiError> {
    if id.contains('/') || id.contains("..") {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("bad run id `{id}`"),
        ));
    }
    store
        .run::<RunRecord>(id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no run `{id}`")))
}

async fn runs(State(app): Shared) -> Result<Json<Value>, ApiError> {
    use futures::StreamExt;
    let mut ids = app.store.list(scorch_engine::layout::RUNS).await?;
    ids.reverse();
    let mut listed = app.listed.lock().await;
    let fresh = |id: &str, size: u64| {
        listed
            .get(id)
            .is_some_and(|(s, v)| *s == size && v["status"] != "running")
    };
    let stale: Vec<(String, u64)> = ids
        .iter()
        .filter(|(id, size)| !fresh(id, *size))
        .cloned()
        .collect();
    let read: Vec<(String, u64, Option<RunRecord>)> = futures::stream::iter(stale)
        .map(|(id, size)| {
            let store = &app.store;
            async move {
                let r = store.run::<RunRecord>(&id).await.ok().flatten();
                (id, size, r)
            }
        })
        .buffered(READ_AT_ONCE)
        .collect()
        .await;
    for (id, size, r) in read {
        if let Some(r) = r {
            let mut v = with_status(&r);
            // The list needs no node details.
            if let Some(o) = v.as_object_mut() {
                o.remove("nodes");
                o.remove("vars");
                o.insert("node_count".into(), json!(r.nodes.len()));
            }
            listed.insert(id, (size, v));
        }
    }
    let out: Vec<Value> = ids
        .iter()
        .filter_map(|(id, _)| listed.get(id).map(|(_, v)| v.clone()))
        .collect();
    Ok(Json(Value::Array(out)))
}

async fn run(State(app): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(with_status(&record(&app.store, &id).await?)))
}

async fn stream(
    State(app): Shared,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    record(&app.store, &id).await?;
    let state = (app, id, None::<String>, false);
    let events = futures::stream::unfold(state, |(app, id, last, over)| async move {
        if over {
            return None;
        }
        loop {
            let r = match app.store.run::<RunRecord>(&id).await {
                Ok(Some(r)) => r,
                _ => {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let v = with_status(&r);
            let text = v.to_string();
            let done = r.status != RunStatus::Running || v["status"] == "died";
            if last.as_deref() != Some(text.as_str()) {
                let event = Event::default().event("record").data(text.clone());
                return Some((Ok(event), (app, id, Some(text), done)));
            }
            if done {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// A node id of the record, or 404.
fn node_of<'a>(
    r: &'a RunRecord,
    node: &str,
) -> Result<&'a scorch_engine::record::NodeRecord, ApiError> {
    r.nodes.iter().find(|n| n.id == node).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("run {} has no node `{node}`", r.id),
        )
    })
}

/// The metrics node `node` of run `r` reported as it ran: kept with the run once it is done,
/// read from this machine's work folder while it runs.
async fn live_metrics(store: &Store, r: &RunRecord, node: &str) -> Vec<MetricLine> {
    let text = match store.node_file(&r.id, node, NodeFile::Metrics).await {
        Ok(Some(t)) => t,
        _ => std::fs::read_to_string(store.live_node_file(&r.id, node, NodeFile::Metrics))
            .unwrap_or_default(),
    };
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn metrics(
    State(app): Shared,
    Path((id, node)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let r = record(&app.store, &id).await?;
    let n = node_of(&r, &node)?;
    let live = live_metrics(&app.store, &r, &n.id).await;
    Ok(Json(json!({"live": live, "summary": n.metrics})))
}

/// Every node's reported metrics, by node (nodes that reported none are left out).
async fn run_metrics(State(app): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let r = record(&app.store, &id).await?;
    let mut out = serde_json::Map::new();
    for n in &r.nodes {
        let live = live_metrics(&app.store, &r, &n.id).await;
        if !live.is_empty() {
            out.insert(n.id.clone(), json!(live));
        }
    }
    Ok(Json(Value::Object(out)))
}

/// The run's results table as `scorch run` prints it, with its profile and vars.
async fn results(State(app): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    if let Some(v) = app.results.lock().await.get(&id) {
        return Ok(Json(v.clone()));
    }
    let r = record(&app.store, &id).await?;
    let lines = scorch_report::summary::collect_results(&app.store, &r).await?;
    let diff = |d: &Option<(String, scorch_report::stats::Interval)>| {
        d.as_ref()
            .map(|(base, i)| json!({"base": base, "estimate": i.estimate, "lo": i.lo, "hi": i.hi}))
    };
    let rows: Vec<Value> = lines
        .iter()
        .map(|l| {
            let e = &l.result;
            json!({
                "node": l.node, "label": e.label, "suite": e.suite, "split": e.split,
                "n": e.n, "correct": e.correct, "accuracy": l.wilson.estimate,
                "lo": l.wilson.lo, "hi": l.wilson.hi, "vs": diff(&l.vs),
                "vs_previous": diff(&l.vs_previous), "answer_diversity": e.answer_diversity,
                "pass_at_k": e.pass_at_k, "mean_turns": e.mean_turns,
            })
        })
        .collect();
    let v = json!({"rows": rows, "profile": r.profile, "vars": r.vars});
    if r.status != RunStatus::Running {
        app.results.lock().await.insert(r.id.clone(), v.clone());
    }
    Ok(Json(v))
}

/// Each node's params as its cache key has them (secrets as `${env.NAME}`), for the nodes
/// whose result is in the store.
async fn params(State(app): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let r = record(&app.store, &id).await?;
    let mut out = serde_json::Map::new();
    for n in &r.nodes {
        if let Some(key) = &n.key
            && let Ok(Some(m)) = app.store.manifest(key).await
        {
            out.insert(n.id.clone(), m.components.params);
        }
    }
    Ok(Json(Value::Object(out)))
}

async fn log(
    State(app): Shared,
    Path((id, node)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let r = record(&app.store, &id).await?;
    let n = node_of(&r, &node)?;
    let text = match app.store.node_file(&r.id, &n.id, NodeFile::Log).await? {
        Some(t) => t,
        None => {
            let live = app.store.live_node_file(&r.id, &n.id, NodeFile::Log);
            match (std::fs::read(&live), super::logs::secrets_of(&r)) {
                (Ok(bytes), Some(secrets)) => {
                    let text = String::from_utf8_lossy(&bytes);
                    secrets.redact_str(super::logs::complete_lines(&text))
                }
                (Ok(_), None) => format!(
                    "(the log is shown once the node is done: {} is needed to redact it while it runs)",
                    r.file
                ),
                (Err(_), _) => String::new(),
            }
        }
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn artifact(State(app): Shared, Path(hash): Path<String>) -> Result<Json<Value>, ApiError> {
    if !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("bad artifact hash `{hash}`"),
        ));
    }
    let p = scorch_report::preview::preview(&app.store, &hash, 20).await?;
    Ok(Json(serde_json::to_value(p).unwrap_or_default()))
}

async fn compare(State(app): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let r = record(&app.store, &id).await?;
    let wf = scorch_engine::workflow::load(
        std::path::Path::new(&r.file),
        &scorch::builtin::registry(),
        &scorch_engine::workflow::LoadOptions::default(),
    )
    .map_err(|_| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "the workflow file {} is needed to compare the arms; it is gone or no longer valid",
                r.file
            ),
        )
    })?;
    let arms = scorch_report::compare::compare(&app.store, &r, &wf.graph(), None)
        .await
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    Ok(Json(
        json!({"markdown": scorch_report::compare::markdown(&arms, None)}),
    ))
}
