//! MLflow, through its REST API (`/api/2.0/mlflow/…`): one MLflow run per scorch run (its
//! variables as params, every node's summary metrics as `NODE/METRIC`, the run record as an
//! artifact) and a child run per node that computes (its canonical params, its metrics as
//! they come, its summary metrics, its log as an artifact).
//!
//! Requests go out on a thread of their own, in order, so the run never waits for the
//! server; a request that fails is a warning, not a failed run. Only the first one (finding
//! or creating the experiment) is made before the run starts, so that a wrong URI stops the
//! command before anything is computed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use scorch_engine::events::{Event, MetricLine, Observer, unix_time};
use scorch_engine::record::Outcome;
use scorch_engine::store::{NodeFile, Store};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::TrackError;

/// Metrics are sent at least this often while a node runs (and when it ends).
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// The most metrics in one `log-batch` (MLflow's limit is 1000).
const BATCH_METRICS: usize = 1000;
/// The most params in one `log-batch` (MLflow's limit).
const BATCH_PARAMS: usize = 100;
/// MLflow's longest param value.
const PARAM_VALUE_MAX: usize = 6000;

/// Reports a run to an MLflow tracking server.
#[derive(Debug)]
pub struct Mlflow {
    tx: Mutex<Option<mpsc::UnboundedSender<Event>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Mlflow {
    /// Connect to the server at `uri` and find (or create) `experiment` before the run.
    pub async fn connect(uri: &str, experiment: &str, store: Store) -> Result<Self, TrackError> {
        let fail = |source: ApiError| TrackError::Mlflow {
            uri: uri.to_owned(),
            source,
        };
        let client = || {
            Client::new(uri).map_err(|source| {
                fail(ApiError::Http {
                    path: String::new(),
                    source,
                })
            })
        };
        let experiment_id = client()?.experiment(experiment).await.map_err(fail)?;
        // The requests of the run go out on a thread with a runtime of its own, so that a
        // slow server never holds up the run's.
        // (A client of its own: a client's connections belong to the runtime that made them.)
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| TrackError::Thread { source })?;
        let client = client()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let reporter = Reporter {
            client,
            store,
            experiment_id,
            parent: None,
            run: String::new(),
            nodes: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("mlflow".into())
            .spawn(move || rt.block_on(reporter.serve(rx)))
            .map_err(|source| TrackError::Thread { source })?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }
}

impl Observer for Mlflow {
    fn event(&self, event: &Event) {
        if let Ok(tx) = self.tx.lock()
            && let Some(tx) = tx.as_ref()
        {
            let _ = tx.send(event.clone());
        }
    }
    fn finish(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// A request to the server that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer (refused, timed out, cut).
    #[error("{path}: {source}")]
    Http {
        /// The API path.
        path: String,
        /// Why.
        source: reqwest::Error,
    },
    /// An answer other than success.
    #[error("{path}: {status} {code}: {message}")]
    Status {
        /// The API path.
        path: String,
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// MLflow's `error_code` (`RESOURCE_DOES_NOT_EXIST`), empty if none.
        code: String,
        /// MLflow's message, or the start of the body.
        message: String,
    },
    /// The run's artifacts go where scorch cannot write.
    #[error(
        "artifacts of this server go to `{0}`, which scorch cannot write; start the server \
         with artifact proxying (`mlflow server`'s default)"
    )]
    Artifacts(String),
}

/// The REST calls.
#[derive(Debug)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(uri: &str) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            base: uri.trim_end_matches('/').to_owned(),
        })
    }

    /// Send `req` for `path`; the JSON answer of a success.
    async fn send(&self, path: &str, req: reqwest::RequestBuilder) -> Result<Value, ApiError> {
        let http = |source| ApiError::Http {
            path: path.to_owned(),
            source,
        };
        let resp = req.send().await.map_err(http)?;
        let status = resp.status();
        let text = resp.text().await.map_err(http)?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(ApiError::Status {
            path: path.to_owned(),
            status,
            code: value["error_code"].as_str().unwrap_or_default().to_owned(),
            message: match value["message"].as_str() {
                Some(m) => m.to_owned(),
                None => text.chars().take(300).collect(),
            },
        })
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, ApiError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.send(path, self.http.post(url).json(&body)).await
    }

    async fn experiment(&self, name: &str) -> Result<String, ApiError> {
        let path = "experiments/get-by-name";
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let req = self.http.get(url).query(&[("experiment_name", name)]);
        match self.send(path, req).await {
            Ok(v) => Ok(id_of(&v["experiment"]["experiment_id"])),
            Err(ApiError::Status { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => {
                let v = self
                    .post("experiments/create", json!({"name": name}))
                    .await?;
                Ok(id_of(&v["experiment_id"]))
            }
            Err(e) => Err(e),
        }
    }

    /// A new run; its id and artifact URI.
    async fn create_run(
        &self,
        experiment_id: &str,
        name: &str,
        tags: &[(&str, String)],
    ) -> Result<(String, String), ApiError> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let v = self
            .post(
                "runs/create",
                json!({
                    "experiment_id": experiment_id,
                    "run_name": name,
                    "start_time": now_ms(),
                    "tags": tags,
                }),
            )
            .await?;
        let info = &v["run"]["info"];
        Ok((
            id_of(&info["run_id"]),
            info["artifact_uri"].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// `items` under `field` (`params`, `metrics`) of `log-batch` calls, `per` at a time.
    async fn log_batch(
        &self,
        run_id: &str,
        field: &str,
        items: Vec<Value>,
        per: usize,
    ) -> Result<(), ApiError> {
        for chunk in items.chunks(per) {
            self.post("runs/log-batch", json!({"run_id": run_id, field: chunk}))
                .await?;
        }
        Ok(())
    }

    async fn log_params(&self, run_id: &str, params: &[(String, String)]) -> Result<(), ApiError> {
        let items = params
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        self.log_batch(run_id, "params", items, BATCH_PARAMS).await
    }

    async fn log_metrics(&self, run_id: &str, metrics: &[MetricLine]) -> Result<(), ApiError> {
        let items = metrics
            .iter()
            .filter(|m| m.value.is_finite())
            .map(|m| {
                json!({
                    "key": metric_key(&m.name),
                    "value": m.value,
                    "timestamp": (m.time * 1000.0) as u64,
                    "step": m.step.unwrap_or(0),
                })
            })
            .collect();
        self.log_batch(run_id, "metrics", items, BATCH_METRICS)
            .await
    }

    async fn end_run(&self, run_id: &str, status: &str) -> Result<(), ApiError> {
        self.post(
            "runs/update",
            json!({"run_id": run_id, "status": status, "end_time": now_ms()}),
        )
        .await
        .map(|_| ())
    }

    /// Upload `bytes` as artifact `name` of a run whose artifacts the server proxies
    /// (`mlflow-artifacts:/…`, the default of `mlflow server`).
    async fn put_artifact(
        &self,
        artifact_uri: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), ApiError> {
        let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") else {
            return Err(ApiError::Artifacts(artifact_uri.to_owned()));
        };
        let path = format!(
            "mlflow-artifacts/artifacts/{}/{name}",
            rest.trim_start_matches('/')
        );
        let url = format!("{}/api/2.0/{path}", self.base);
        self.send(&path, self.http.put(url).body(bytes))
            .await
            .map(|_| ())
    }
}

/// An MLflow run of one node.
#[derive(Debug)]
struct NodeRun {
    id: String,
    artifacts: String,
    pending: Vec<MetricLine>,
    last_flush: Instant,
    /// Names sent as they came (their summary values are not sent again).
    live: std::collections::HashSet<String>,
}

/// The thread's side: the events of one run, in order.
#[derive(Debug)]
struct Reporter {
    client: Client,
    store: Store,
    experiment_id: String,
    /// The MLflow run of the scorch run, and its artifact URI.
    parent: Option<(String, String)>,
    run: String,
    nodes: HashMap<String, NodeRun>,
}

impl Reporter {
    async fn serve(mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        loop {
            let event = tokio::select! {
                e = rx.recv() => e,
                () = tokio::time::sleep(FLUSH_EVERY) => {
                    self.flush(false).await;
                    continue;
                }
            };
            let Some(event) = event else { break };
            if let Err(e) = self.handle(event).await {
                tracing::warn!(error = %e, "cannot report to MLflow");
            }
        }
        self.flush(true).await;
    }

    async fn flush(&mut self, all: bool) {
        for node in self.nodes.values_mut() {
            if node.pending.is_empty() || (!all && node.last_flush.elapsed() < FLUSH_EVERY) {
                continue;
            }
            let pending = std::mem::take(&mut node.pending);
            node.last_flush = Instant::now();
            if let Err(e) = self.client.log_metrics(&node.id, &pending).await {
                tracing::warn!(error = %e, "cannot send metrics to MLflow");
            }
        }
    }

    async fn handle(&mut self, event: Event) -> Result<(), ApiError> {
        match event {
            Event::RunStarted {
                run,
                workflow,
                store,
                vars,
                ..
            } => {
                let (id, artifacts) = self
                    .client
                    .create_run(
                        &self.experiment_id,
                        &run,
                        &[
                            ("scorch.run", run.clone()),
                            ("scorch.workflow", workflow),
                            ("scorch.store", store),
                        ],
                    )
                    .await?;
                let mut params = Vec::new();
                flatten("vars", &Value::Object(vars), &mut params);
                self.client.log_params(&id, &params).await?;
                self.run = run;
                self.parent = Some((id, artifacts));
            }
            Event::NodeStarted {
                node,
                kind,
                key,
                params,
            } => {
                let Some((parent, _)) = &self.parent else {
                    return Ok(());
                };
                let (id, artifacts) = self
                    .client
                    .create_run(
                        &self.experiment_id,
                        &node,
                        &[
                            ("mlflow.parentRunId", parent.clone()),
                            ("scorch.run", self.run.clone()),
                            ("scorch.node", node.clone()),
                            ("scorch.kind", kind),
                            ("scorch.key", key),
                        ],
                    )
                    .await?;
                let mut flat = Vec::new();
                flatten("", &params, &mut flat);
                self.client.log_params(&id, &flat).await?;
                self.nodes.insert(
                    node,
                    NodeRun {
                        id,
                        artifacts,
                        pending: Vec::new(),
                        last_flush: Instant::now(),
                        live: Default::default(),
                    },
                );
            }
            Event::Metric(m) => {
                if let Some(n) = self.nodes.get_mut(&m.node) {
                    n.live.insert(m.name.clone());
                    n.pending.push(m);
                    if n.pending.len() >= BATCH_METRICS {
                        let pending = std::mem::take(&mut n.pending);
                        n.last_flush = Instant::now();
                        self.client.log_metrics(&n.id, &pending).await?;
                    }
                }
            }
            Event::NodeFinished {
                node,
                outcome,
                metrics,
                ..
            } => {
                let Some(mut n) = self.nodes.remove(&node) else {
                    return Ok(());
                };
                let now = unix_time();
                n.pending.extend(
                    metrics
                        .iter()
                        .filter(|m| !n.live.contains(&m.name))
                        .map(|m| MetricLine {
                            node: node.clone(),
                            name: m.name.clone(),
                            step: m.step,
                            value: m.value,
                            time: now,
                        }),
                );
                self.client.log_metrics(&n.id, &n.pending).await?;
                match self.store.node_file(&self.run, &node, NodeFile::Log).await {
                    Ok(Some(log)) => {
                        if let Err(e) = self
                            .client
                            .put_artifact(&n.artifacts, "node.log", log.into_bytes())
                            .await
                        {
                            tracing::warn!(error = %e, "cannot send a node's log to MLflow");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot read a node's log for MLflow"),
                }
                let status = match outcome {
                    Outcome::Ran | Outcome::Cached => "FINISHED",
                    Outcome::Cancelled => "KILLED",
                    _ => "FAILED",
                };
                self.client.end_run(&n.id, status).await?;
            }
            Event::RunFinished(record) => {
                let Some((parent, artifacts)) = self.parent.take() else {
                    return Ok(());
                };
                let now = unix_time();
                let summary: Vec<MetricLine> = record
                    .nodes
                    .iter()
                    .flat_map(|n| {
                        n.metrics.iter().map(|m| MetricLine {
                            node: n.id.clone(),
                            name: format!("{}/{}", n.id, m.name),
                            step: m.step,
                            value: m.value,
                            time: now,
                        })
                    })
                    .collect();
                self.client.log_metrics(&parent, &summary).await?;
                let text = serde_json::to_vec_pretty(&record).unwrap_or_default();
                if let Err(e) = self.client.put_artifact(&artifacts, "run.json", text).await {
                    tracing::warn!(error = %e, "cannot send the run record to MLflow");
                }
                let status = match record.status {
                    scorch_engine::record::RunStatus::Succeeded => "FINISHED",
                    scorch_engine::record::RunStatus::Cancelled => "KILLED",
                    _ => "FAILED",
                };
                self.client.end_run(&parent, status).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// MLflow's ids come as strings (some servers send numbers).
fn id_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn now_ms() -> u64 {
    (unix_time() * 1000.0) as u64
}

/// A metric or param key MLflow accepts: letters, digits and `_-. /:`; anything else
/// (a matrix node's `[lr=1e-6]`) becomes `_`.
fn metric_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-. /:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(250)
        .collect()
}

/// Nested params as `a.b.c = value` (lists as JSON), values cut to MLflow's limit.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        _ if prefix.is_empty() => {}
        other => {
            let text = match other {
                Value::String(s) => s.clone(),
                x => x.to_string(),
            };
            out.push((
                metric_key(prefix),
                text.chars().take(PARAM_VALUE_MAX).collect(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_flatten_to_dotted_keys_mlflow_accepts() {
        let mut out = Vec::new();
        flatten(
            "",
            &json!({"policy": {"kind": "local", "sizes": [1, 2]}, "lr[x=1]": 0.5}),
            &mut out,
        );
        assert_eq!(
            out,
            [
                ("policy.kind".to_owned(), "local".to_owned()),
                ("policy.sizes".to_owned(), "[1,2]".to_owned()),
                ("lr_x_1_".to_owned(), "0.5".to_owned()),
            ]
        );
    }
}
