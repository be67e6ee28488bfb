//! Runtime LoRA adapters, as vLLM serves them (`VLLM_ALLOW_RUNTIME_LORA_UPDATING`):
//! `POST /v1/load_lora_adapter` with `{"lora_name", "lora_path"}` loads an adapter folder onto
//! the served base, requests then name it as their `model`, and
//! `POST /v1/unload_lora_adapter` with `{"lora_name"}` drops it. [`Adapters`] is the server
//! side (`scorch serve`); [`load`] and [`unload`] the client side (`rl` with server rollouts),
//! which speaks to vLLM the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use scorch_spec::policy::Endpoint;
use serde_json::{Value, json};

use crate::ModelError;
use crate::checkpoint::Checkpoint;
use crate::local::LocalModel;

/// A served model and the adapters loaded onto its base since.
#[derive(Debug)]
pub struct Adapters {
    /// The served model's name and model.
    served: (String, LocalModel),
    /// The folder adapters must have been trained on (their `scorch_base.json` names it).
    base: Option<PathBuf>,
    device: tch::Device,
    kind: tch::Kind,
    loaded: RwLock<BTreeMap<String, (PathBuf, LocalModel)>>,
}

/// Why a load or unload was refused: an HTTP status and a message.
#[derive(Debug)]
pub struct Refusal {
    /// 400 (bad request), 404 (no such adapter) or 500.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

fn refuse(status: u16, message: String) -> Refusal {
    Refusal { status, message }
}

impl Adapters {
    /// A server of `model` as `name`; adapters load onto `base` (`None`: none can).
    pub fn new(
        name: &str,
        model: LocalModel,
        base: Option<PathBuf>,
        device: tch::Device,
        kind: tch::Kind,
    ) -> Self {
        Self {
            served: (name.to_owned(), model),
            base,
            device,
            kind,
            loaded: RwLock::new(BTreeMap::new()),
        }
    }

    /// The served model's name.
    pub fn name(&self) -> &str {
        &self.served.0
    }

    /// The model a request names: the served one or a loaded adapter.
    pub fn get(&self, name: &str) -> Option<LocalModel> {
        if name == self.served.0 {
            return Some(self.served.1.clone());
        }
        self.read().get(name).map(|(_, m)| m.clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, (PathBuf, LocalModel)>> {
        self.loaded
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `/v1/models`' list: the served model, then each adapter with its base as `parent`.
    pub fn list(&self) -> Vec<Value> {
        let mut out = vec![json!({"id": self.served.0, "object": "model", "owned_by": "scorch"})];
        for (name, (path, _)) in self.read().iter() {
            out.push(json!({
                "id": name, "object": "model", "owned_by": "scorch",
                "root": path.display().to_string(), "parent": self.served.0,
            }));
        }
        out
    }

    /// Load the adapter folder `path` as `name` (blocking: it reads and merges the weights).
    /// A name in use is refused unless `inplace`, which replaces it.
    pub fn load(&self, name: &str, path: &Path, inplace: bool) -> Result<(), Refusal> {
        if name.is_empty() || name == self.served.0 {
            return Err(refuse(
                400,
                format!("`lora_name` must be a new name, not `{name}`"),
            ));
        }
        if !inplace && self.read().contains_key(name) {
            return Err(refuse(
                400,
                format!("The lora adapter '{name}' has already been loaded."),
            ));
        }
        let Some(base) = &self.base else {
            return Err(refuse(
                400,
                "this server has no base folder to load adapters onto".into(),
            ));
        };
        if !crate::lora::is_adapter(path) {
            return Err(refuse(
                400,
                format!("`{}` is not a LoRA adapter folder", path.display()),
            ));
        }
        let mut ck = Checkpoint::load_model(path, Some(base), self.device, self.kind)
            .map_err(|e| refuse(400, e.to_string()))?;
        ck.merge_adapter();
        let model = LocalModel::new(name, ck);
        self.loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), (path.to_path_buf(), model));
        Ok(())
    }

    /// Drop adapter `name`.
    pub fn unload(&self, name: &str) -> Result<(), Refusal> {
        self.loaded
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| refuse(404, format!("The lora adapter '{name}' cannot be found.")))
    }
}

/// The servers of `endpoint`: its `base_url` and its `pool`.
fn servers(endpoint: &Endpoint) -> impl Iterator<Item = &String> {
    std::iter::once(&endpoint.base_url).chain(&endpoint.pool)
}

async fn post(
    endpoint: &Endpoint,
    http: &reqwest::Client,
    route: &str,
    body: &Value,
) -> Result<(), ModelError> {
    let key = match &endpoint.api_key_env {
        Some(var) => Some(std::env::var(var).map_err(|_| {
            ModelError::Config(format!(
                "environment variable `{var}` (the API key) is not set"
            ))
        })?),
        None => None,
    };
    for server in servers(endpoint) {
        let url = format!("{}/{route}", server.trim_end_matches('/'));
        let mut req = http.post(&url).json(body);
        if let Some(k) = &key {
            req = req.bearer_auth(k);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ModelError::Config(format!("POST {url}: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(ModelError::Config(format!(
                "POST {url}: {status}: {}",
                text.chars().take(500).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Load the adapter folder `path` as `name` into every server of `endpoint`.
pub async fn load(
    endpoint: &Endpoint,
    http: &reqwest::Client,
    name: &str,
    path: &Path,
) -> Result<(), ModelError> {
    let body = json!({"lora_name": name, "lora_path": path.display().to_string()});
    post(endpoint, http, "load_lora_adapter", &body).await
}

/// Drop adapter `name` from every server of `endpoint`.
pub async fn unload(
    endpoint: &Endpoint,
    http: &reqwest::Client,
    name: &str,
) -> Result<(), ModelError> {
    post(
        endpoint,
        http,
        "unload_lora_adapter",
        &json!({"lora_name": name}),
    )
    .await
}

/// A learner's adapter loaded into an inference server for one step's rollouts: written to
/// a folder the server reads, loaded under a name of its own, and sampled by naming it.
#[derive(Debug)]
pub struct Published {
    client: crate::openai::OpenAiClient,
    endpoint: Endpoint,
    http: reqwest::Client,
    name: String,
    dir: PathBuf,
}

impl Published {
    /// Save `model`'s adapter into `root/name` and load it into `server` as `name`.
    pub async fn publish(
        server: &scorch_spec::policy::ServerRollout,
        model: &LocalModel,
        root: &Path,
        name: &str,
    ) -> Result<Self, ModelError> {
        let dir = root.join(name);
        {
            let ck = model.lock();
            if ck.adapter.is_none() {
                return Err(ModelError::Config(
                    "server rollouts need a LoRA adapter to load".into(),
                ));
            }
            ck.save(&dir)?;
        }
        // The server reads the folder by its path: make it absolute.
        let dir = std::path::absolute(&dir)
            .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", dir.display())))?;
        let endpoint = server.endpoint(name);
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs_f64(
                server.timeout_s.max(1.0),
            ))
            .build()
            .map_err(|e| ModelError::Config(format!("HTTP client: {e}")))?;
        load(&endpoint, &http, name, &dir).await?;
        let client = crate::openai::OpenAiClient::new(endpoint.clone())
            .map_err(|e| ModelError::Config(e.0))?;
        Ok(Self {
            client,
            endpoint,
            http,
            name: name.to_owned(),
            dir,
        })
    }

    /// The policy that samples from the loaded adapter.
    pub fn policy(&self) -> &crate::openai::OpenAiClient {
        &self.client
    }

    /// Unload the adapter from the servers and delete its folder.
    pub async fn retire(self) -> Result<(), ModelError> {
        unload(&self.endpoint, &self.http, &self.name).await?;
        std::fs::remove_dir_all(&self.dir)
            .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", self.dir.display())))
    }
}
