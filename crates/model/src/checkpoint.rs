//! HF-layout checkpoint folders: `config.json`, `model.safetensors` (or sharded with
//! `model.safetensors.index.json`), `tokenizer.json`. What we load, `transformers` wrote;
//! what we save, `transformers` loads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Device, Kind, Tensor, nn};

use crate::ModelError;
use scorch_spec::student::{ChatFormat, LoraParams};

use crate::chat::ChatFormatExt;
use crate::lora::{
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, BASE_RECORD, BaseRecord, LoraConfig, base_hash, init_adapters,
    is_adapter, is_lora_name, peft_key, var_name,
};
use crate::qwen2::{Config, Qwen2};

/// A model with its weights, config and tokenizer.
pub struct Checkpoint {
    /// The weights.
    pub vs: nn::VarStore,
    /// The network.
    pub model: Qwen2,
    /// The tokenizer.
    pub tokenizer: tokenizers::Tokenizer,
    /// How the model sees a chat (recorded in its config).
    pub chat: ChatFormat,
    /// Where it was loaded from, if anywhere (an adapter's: its base folder).
    pub source: Option<PathBuf>,
    /// The LoRA adapter on the frozen weights, if any.
    pub adapter: Option<Adapter>,
}

/// A LoRA adapter on a checkpoint: its shape and the base it belongs to.
#[derive(Debug, Clone)]
pub struct Adapter {
    /// Rank, scale and targets.
    pub config: LoraConfig,
    /// [`base_hash`] of the base folder.
    pub base_hash: String,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("config", &self.model.config)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

fn kind_of(dtype: Dtype) -> Result<Kind, ModelError> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F16 => Kind::Half,
        Dtype::F64 => Kind::Double,
        other => {
            return Err(ModelError::Checkpoint(format!(
                "weights of dtype {other:?} are not supported"
            )));
        }
    })
}

/// The `torch_dtype` name of a kind.
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        Kind::Double => "float64",
        _ => "float32",
    }
}

fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index).map_err(|_| {
        ModelError::Checkpoint(format!(
            "{} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        ))
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", index.display())))?;
    let mut files: Vec<String> = v["weight_map"]
        .as_object()
        .ok_or_else(|| ModelError::Checkpoint(format!("{}: no weight_map", index.display())))?
        .values()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    files.sort();
    files.dedup();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

/// Read every tensor of the checkpoint's weight files (on the CPU).
pub fn read_weights(dir: &Path) -> Result<HashMap<String, Tensor>, ModelError> {
    let mut out = HashMap::new();
    for file in weight_files(dir)? {
        let bytes = std::fs::read(&file)
            .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", file.display())))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", file.display())))?;
        for (name, view) in st.tensors() {
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_data_size(view.data(), &shape, kind_of(view.dtype())?)
                .map_err(|e| ModelError::Checkpoint(format!("{name}: {e}")))?;
            out.insert(name, t);
        }
    }
    Ok(out)
}

/// Held while a seed is set on torch's global generator and drawn from.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Checkpoint {
    /// Load an HF-layout folder onto `device`, with weights in `kind`.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self, ModelError> {
        if is_adapter(dir) {
            return Err(ModelError::Config(format!(
                "{} is a LoRA adapter: load it with its base (connect the base as `base`)",
                dir.display()
            )));
        }
        let (config, chat, tokenizer) = read_text_side(dir)?;
        let mut vs = nn::VarStore::new(device);
        // The variables are made in `kind` and the file's values copied in (converted as
        // `to_kind` would): a bfloat16 model never holds a float32 copy of itself.
        vs.set_kind(kind);
        let model = Qwen2::new(&vs.root(), config);
        let weights = read_weights(dir)?;
        let mut missing = Vec::new();
        tch::no_grad(|| -> Result<(), ModelError> {
            for (name, var) in vs.variables() {
                match weights.get(&name) {
                    Some(src) => {
                        if src.size() != var.size() {
                            return Err(ModelError::Checkpoint(format!(
                                "{name}: the file has shape {:?}, the config gives {:?}",
                                src.size(),
                                var.size()
                            )));
                        }
                        let mut var = var;
                        var.copy_(src);
                    }
                    None => missing.push(name),
                }
            }
            Ok(())
        })?;
        if !missing.is_empty() {
            missing.sort();
            return Err(ModelError::Checkpoint(format!(
                "{} lacks weights: {}",
                dir.display(),
                missing.join(", ")
            )));
        }
        Ok(Self {
            vs,
            model,
            tokenizer,
            chat,
            source: Some(dir.to_path_buf()),
            adapter: None,
        })
    }

    /// Load `dir`, a whole model or a LoRA adapter; an adapter's base is `base`, loaded with
    /// weights in `kind` (the adapter stays float32). The base must be the one the adapter
    /// records ([`BaseRecord`]), else an error that says so.
    pub fn load_model(
        dir: &Path,
        base: Option<&Path>,
        device: Device,
        kind: Kind,
    ) -> Result<Self, ModelError> {
        if !is_adapter(dir) {
            return Self::load(dir, device, kind);
        }
        let base = base.ok_or_else(|| {
            ModelError::Config(format!(
                "{} is a LoRA adapter: connect the model it was trained on as input `base`",
                dir.display()
            ))
        })?;
        let config = LoraConfig::read(dir)?;
        let hash = base_hash(base)?;
        if let Some(record) = BaseRecord::read(dir)?
            && record.blake3 != hash
        {
            return Err(ModelError::Config(format!(
                "input `base` ({}, content hash {}) is not the base adapter {} was trained on \
                 (content hash {})",
                base.display(),
                &hash[..12],
                dir.display(),
                &record.blake3[..record.blake3.len().min(12)]
            )));
        }
        let mut ck = Self::load(base, device, kind)?;
        ck.attach(config, hash);
        ck.load_adapter_weights(dir)?;
        Ok(ck)
    }

    /// Put a new adapter of shape `config` on these weights, which freeze: A drawn as PEFT
    /// draws it (seeded by `seed`), B zero. The checkpoint must have been loaded from a folder
    /// (the base the adapter records).
    pub fn add_adapter(&mut self, config: LoraConfig, seed: u64) -> Result<(), ModelError> {
        let base = self.source.clone().ok_or_else(|| {
            ModelError::Config("a LoRA adapter needs a base loaded from a folder".into())
        })?;
        self.attach(config, base_hash(&base)?);
        let _guard = TORCH_RNG
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tch::manual_seed(seed as i64);
        let mut vars: Vec<(String, Tensor)> = self.variables(true).into_iter().collect();
        init_adapters(&mut vars);
        Ok(())
    }

    /// Adapter variables of `config` on the (then frozen) weights.
    fn attach(&mut self, config: LoraConfig, base_hash: String) {
        for (name, var) in self.vs.variables() {
            if !is_lora_name(&name) {
                let _ = var.set_requires_grad(false);
            }
        }
        self.model.add_lora(&self.vs.root(), &config);
        self.adapter = Some(Adapter { config, base_hash });
    }

    fn load_adapter_weights(&mut self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(ADAPTER_WEIGHTS);
        let bytes = std::fs::read(&path)
            .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", path.display())))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", path.display())))?;
        let mut vars = self.variables(true);
        tch::no_grad(|| -> Result<(), ModelError> {
            for (key, view) in st.tensors() {
                let name = var_name(&key);
                let var = vars.remove(&name).ok_or_else(|| {
                    ModelError::Checkpoint(format!(
                        "{}: `{key}` is no adapter weight of this model and config",
                        path.display()
                    ))
                })?;
                let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
                if shape != var.size() {
                    return Err(ModelError::Checkpoint(format!(
                        "{}: `{key}` has shape {shape:?}, the base and config give {:?}",
                        path.display(),
                        var.size()
                    )));
                }
                let t = Tensor::f_from_data_size(view.data(), &shape, kind_of(view.dtype())?)?;
                let mut var = var;
                var.f_copy_(&t)?;
            }
            Ok(())
        })?;
        if !vars.is_empty() {
            let mut missing: Vec<String> = vars.into_keys().map(|n| peft_key(&n)).collect();
            missing.sort();
            return Err(ModelError::Checkpoint(format!(
                "{} lacks adapter weights: {}",
                path.display(),
                missing.join(", ")
            )));
        }
        Ok(())
    }

    /// Fold the adapter into the weights: a whole model that computes the same function.
    /// The weights train again, the adapter's variables (kept in the var store, left out of
    /// what is saved) no longer do.
    pub fn merge_adapter(&mut self) {
        if self.adapter.take().is_some() {
            self.model.merge_lora();
            for (name, var) in self.vs.variables() {
                let _ = var.set_requires_grad(!is_lora_name(&name));
            }
        }
    }

    /// The adapter's variables (`lora`), or the model's own: what a saved whole model holds.
    fn variables(&self, lora: bool) -> HashMap<String, Tensor> {
        self.vs
            .variables()
            .into_iter()
            .filter(|(n, _)| is_lora_name(n) == lora)
            .collect()
    }

    /// Save the adapter as a PEFT folder: `adapter_config.json`, `adapter_model.safetensors`
    /// and the record of its base.
    fn save_adapter(&self, adapter: &Adapter, dir: &Path) -> Result<(), ModelError> {
        let base_name = self
            .source
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let config = adapter.config.to_peft_json(&base_name);
        let io = |e: std::io::Error| ModelError::Checkpoint(format!("{}: {e}", dir.display()));
        std::fs::write(
            dir.join(ADAPTER_CONFIG),
            serde_json::to_string_pretty(&config)
                .map_err(|e| ModelError::Checkpoint(e.to_string()))?,
        )
        .map_err(io)?;
        let record = BaseRecord {
            blake3: adapter.base_hash.clone(),
        };
        std::fs::write(
            dir.join(BASE_RECORD),
            serde_json::to_string_pretty(&record)
                .map_err(|e| ModelError::Checkpoint(e.to_string()))?,
        )
        .map_err(io)?;
        let vars: HashMap<String, Tensor> = self
            .variables(true)
            .into_iter()
            .map(|(n, t)| (peft_key(&n), t.to_kind(Kind::Float)))
            .collect();
        write_weights(&vars, &dir.join(ADAPTER_WEIGHTS))
    }

    /// A new model with random weights (HF's initialisation: normal(0, 0.02), zero biases),
    /// seeing chats in the format that `config` records.
    pub fn init(
        config: Config,
        tokenizer: tokenizers::Tokenizer,
        device: Device,
        seed: u64,
    ) -> Result<Self, ModelError> {
        config
            .validate()
            .map_err(|e| ModelError::Config(e.to_string()))?;
        let chat = ChatFormat::of_config(&config).map_err(|e| ModelError::Config(e.to_string()))?;
        // torch's generator is global: seeding it and drawing from it must not interleave
        // with another initialisation in this process (parallel nodes, parallel tests).
        let _guard = TORCH_RNG
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tch::manual_seed(seed as i64);
        let vs = nn::VarStore::new(device);
        let model = Qwen2::new(&vs.root(), config);
        hf_init(&vs);
        Ok(Self {
            vs,
            model,
            tokenizer,
            chat,
            source: None,
            adapter: None,
        })
    }

    /// The weights' kind.
    pub fn kind(&self) -> Kind {
        self.vs
            .variables()
            .iter()
            .find(|(n, _)| !is_lora_name(n))
            .map_or(Kind::Float, |(_, t)| t.kind())
    }

    /// Save as an HF-layout folder, or, with an adapter, as a PEFT adapter folder.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", dir.display())))?;
        if let Some(adapter) = &self.adapter {
            return self.save_adapter(adapter, dir);
        }
        let mut config = self.model.config.clone();
        config.torch_dtype = dtype_name(self.kind()).into();
        let text = serde_json::to_string_pretty(&config)
            .map_err(|e| ModelError::Checkpoint(e.to_string()))?;
        std::fs::write(dir.join("config.json"), text)
            .map_err(|e| ModelError::Checkpoint(e.to_string()))?;
        write_weights(&self.variables(false), &dir.join("model.safetensors"))?;
        self.tokenizer
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| ModelError::Checkpoint(format!("saving tokenizer.json: {e}")))?;
        let generation = serde_json::json!({"bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id, "do_sample": false});
        std::fs::write(dir.join("generation_config.json"), generation.to_string())
            .map_err(|e| ModelError::Checkpoint(e.to_string()))?;
        Ok(())
    }
}

/// What an HF folder says without its weights: its config, the chat format it records, and
/// its tokenizer.
pub fn read_text_side(
    dir: &Path,
) -> Result<(Config, ChatFormat, tokenizers::Tokenizer), ModelError> {
    let config = read_config(dir)?;
    let chat = ChatFormat::of_config(&config)
        .map_err(|e| ModelError::Config(format!("{}: {e}", dir.join("config.json").display())))?;
    let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
        ModelError::Checkpoint(format!("{}: {e}", dir.join("tokenizer.json").display()))
    })?;
    Ok((config, chat, tokenizer))
}

/// Read and check `config.json`.
pub fn read_config(dir: &Path) -> Result<Config, ModelError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", path.display())))?;
    let config: Config = serde_json::from_str(&text)
        .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
    config
        .validate()
        .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
    Ok(config)
}

fn tensor_bytes(t: &Tensor) -> Result<(Dtype, Vec<u8>), ModelError> {
    let t = t.to_device(Device::Cpu).contiguous().flatten(0, -1);
    let err = |e: tch::TchError| ModelError::Checkpoint(e.to_string());
    Ok(match t.kind() {
        Kind::Float => (
            Dtype::F32,
            Vec::<f32>::try_from(&t)
                .map_err(err)?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        Kind::BFloat16 => (
            Dtype::BF16,
            Vec::<i16>::try_from(&t.view_dtype(Kind::Int16))
                .map_err(err)?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        Kind::Half => (
            Dtype::F16,
            Vec::<i16>::try_from(&t.view_dtype(Kind::Int16))
                .map_err(err)?
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        other => {
            return Err(ModelError::Checkpoint(format!(
                "cannot save weights of kind {other:?}"
            )));
        }
    })
}

/// Write named tensors as safetensors with HF's `format: pt` metadata.
pub fn write_weights(vars: &HashMap<String, Tensor>, path: &Path) -> Result<(), ModelError> {
    let mut data: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> = BTreeMap::new();
    for (name, t) in vars {
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let (dtype, bytes) = tensor_bytes(t)?;
        data.insert(name.clone(), (dtype, shape, bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = data
        .iter()
        .map(|(n, (d, s, b))| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| ModelError::Checkpoint(e.to_string()))?;
    let metadata = Some(HashMap::from([("format".to_owned(), "pt".to_owned())]));
    safetensors::tensor::serialize_to_file(views, metadata, path)
        .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", path.display())))
}

/// HF's initialisation of a Qwen2's variables, drawn from torch's global generator (seed it
/// first): normal(0, 0.02) weights, zero biases, norms at 1.
pub fn hf_init(vs: &nn::VarStore) {
    // Sorted: the same seed gives the same weights (the var store is a hash map).
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut var) in vars {
            if name.ends_with("norm.weight") {
                let _ = var.fill_(1.0);
            } else if name.ends_with(".bias") {
                let _ = var.zero_();
            } else {
                let _ = var.normal_(0.0, 0.02);
            }
        }
    });
}

/// Load `dir` (an adapter: on `base`) as a training node with param `lora` trains it, computing
/// in `compute`. Full fine-tuning keeps float32 master weights; with LoRA the frozen base is
/// held in `compute` itself and only the adapter (and its optimiser state) is float32. See
/// [`prepare`] for what the node then trains.
pub fn load_trainable(
    dir: &Path,
    base: Option<&Path>,
    device: tch::Device,
    compute: tch::Kind,
    lora: Option<&LoraParams>,
    seed: u64,
) -> Result<Checkpoint, ModelError> {
    let kind = if lora.is_some() {
        compute
    } else {
        tch::Kind::Float
    };
    let mut ck = Checkpoint::load_model(dir, base, device, kind)?;
    prepare(&mut ck, lora, seed)?;
    ck.model.set_compute(Some(compute));
    Ok(ck)
}

/// Make `ck` what a training node with param `lora` trains: a new adapter on a whole model,
/// the same adapter on an adapter of that shape (an error naming `lora` for another shape),
/// or, without the param, the adapter merged into the weights (full fine-tuning).
fn prepare(ck: &mut Checkpoint, lora: Option<&LoraParams>, seed: u64) -> Result<(), ModelError> {
    match (lora.map(LoraConfig::from_params), &ck.adapter) {
        (Some(want), None) => ck.add_adapter(want, seed),
        (Some(want), Some(have)) if want.same_shape(&have.config) => Ok(()),
        (Some(want), Some(have)) => Err(ModelError::Config(format!(
            "param `lora`: the `model` input is an adapter of rank {} on {} (scale {}); \
             going on with it needs the same rank, targets and scale, not rank {} on {} (scale {})",
            have.config.rank,
            have.config.targets.join(", "),
            have.config.scale(),
            want.rank,
            want.targets.join(", "),
            want.scale()
        ))),
        (None, Some(_)) => {
            ck.merge_adapter();
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// The adapter folder `adapter` merged into `base` on the CPU: computed in float32, held in
/// the base's own dtype (`torch_dtype` of its config), ready to save as a whole HF folder.
pub fn merged(adapter: &Path, base: &Path) -> Result<Checkpoint, ModelError> {
    if !is_adapter(adapter) {
        return Err(ModelError::Config(format!(
            "{} is not a LoRA adapter (no {ADAPTER_CONFIG})",
            adapter.display()
        )));
    }
    let dtype = read_config(base)?.torch_dtype;
    let mut ck = Checkpoint::load_model(adapter, Some(base), tch::Device::Cpu, tch::Kind::Float)?;
    ck.merge_adapter();
    if dtype == "bfloat16" {
        ck.vs.bfloat16();
    }
    Ok(ck)
}
