//! LoRA adapters in PEFT's folder layout: `adapter_config.json` (PEFT's `LoraConfig`) and
//! `adapter_model.safetensors` (keys `base_model.model.<module>.lora_A.weight`, A of shape
//! rank × in and B of shape out × rank, float32), plus `scorch_base.json`, which records the
//! base the adapter was trained on by content hash. What PEFT writes loads here; what this
//! writes PEFT loads (`tests/lora_peft.rs` holds both against the real library).

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tch::Tensor;

use crate::ModelError;
use scorch_spec::student::{LORA_MODULES, LoraParams};

/// PEFT's adapter config file.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// PEFT's adapter weights file.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// The record of the base an adapter belongs to.
pub const BASE_RECORD: &str = "scorch_base.json";
/// What PEFT puts before a module's path in its saved keys (`PeftModelForCausalLM.base_model`
/// is the `LoraModel`, whose `model` is the HF model).
const PEFT_PREFIX: &str = "base_model.model.";

/// An adapter's shape and scale.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank r.
    pub rank: i64,
    /// `lora_alpha`.
    pub alpha: f64,
    /// Dropout on the adapters' input while training.
    pub dropout: f64,
    /// Adapted projections, by module name (`q_proj`).
    pub targets: Vec<String>,
    /// rsLoRA's scale, alpha / sqrt(r), instead of alpha / r.
    pub rslora: bool,
}

impl LoraConfig {
    /// The factor on B·A.
    pub fn scale(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.rank as f64).sqrt()
        } else {
            self.alpha / self.rank as f64
        }
    }

    /// From a node's `lora` param.
    pub fn from_params(p: &LoraParams) -> Self {
        let mut targets = p.targets.clone();
        targets.sort();
        targets.dedup();
        Self {
            rank: p.rank,
            alpha: p.alpha,
            dropout: p.dropout,
            targets,
            rslora: false,
        }
    }

    /// Read `adapter_config.json` of a PEFT adapter folder. What this implementation cannot
    /// represent (DoRA, per-module ranks, layer subsets, trained biases, extra modules) is an
    /// error naming the field, not an adapter silently loaded as something else.
    pub fn read(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(ADAPTER_CONFIG);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", path.display())))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Config(format!("{}: {e}", path.display())))?;
        let bad = |field: &str, what: String| {
            ModelError::Config(format!("{}: `{field}` {what}", path.display()))
        };
        if v["peft_type"].as_str() != Some("LORA") {
            return Err(bad(
                "peft_type",
                format!("is {}, not \"LORA\"", v["peft_type"]),
            ));
        }
        let rank = v["r"]
            .as_i64()
            .filter(|r| *r > 0)
            .ok_or_else(|| bad("r", format!("must be a positive integer (is {})", v["r"])))?;
        let alpha = v["lora_alpha"]
            .as_f64()
            .filter(|a| *a > 0.0)
            .ok_or_else(|| {
                bad(
                    "lora_alpha",
                    format!("must be positive (is {})", v["lora_alpha"]),
                )
            })?;
        let targets: Vec<String> = match &v["target_modules"] {
            Value::String(s) if s == "all-linear" => {
                LORA_MODULES.iter().map(|m| (*m).to_owned()).collect()
            }
            Value::String(s) if LORA_MODULES.contains(&s.as_str()) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|t| match t.as_str() {
                    Some(name) if LORA_MODULES.contains(&name) => Ok(name.to_owned()),
                    _ => Err(bad(
                        "target_modules",
                        format!(
                            "names {t}, not a Qwen2 projection ({})",
                            LORA_MODULES.join(", ")
                        ),
                    )),
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(bad(
                    "target_modules",
                    format!("is {other}: give a list of projection names"),
                ));
            }
        };
        let off = |field: &str| match &v[field] {
            Value::Null | Value::Bool(false) => true,
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        for field in [
            "use_dora",
            "rank_pattern",
            "alpha_pattern",
            "layers_to_transform",
            "modules_to_save",
            "fan_in_fan_out",
            "lora_bias",
            "layer_replication",
            "trainable_token_indices",
        ] {
            if !off(field) {
                return Err(bad(field, format!("is {}: not supported here", v[field])));
            }
        }
        if !matches!(v["bias"].as_str(), None | Some("none")) {
            return Err(bad(
                "bias",
                format!("is {}: only \"none\" is supported", v["bias"]),
            ));
        }
        let mut targets = targets;
        targets.sort();
        targets.dedup();
        Ok(Self {
            rank,
            alpha,
            dropout: v["lora_dropout"].as_f64().unwrap_or(0.0),
            targets,
            rslora: v["use_rslora"].as_bool().unwrap_or(false),
        })
    }

    /// `adapter_config.json` as PEFT writes it for a causal LM (the fields every PEFT version
    /// since 0.6 reads; later ones fill the rest with their defaults).
    pub fn to_peft_json(&self, base_name: &str) -> Value {
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_name,
            "r": self.rank,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": self.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": self.rslora,
            "use_dora": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "layers_pattern": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        })
    }

    /// Whether `other` has the same shape and scale (what continuing an adapter needs).
    pub fn same_shape(&self, other: &Self) -> bool {
        self.rank == other.rank && self.targets == other.targets && self.scale() == other.scale()
    }
}

/// What `scorch_base.json` says: the base an adapter was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseRecord {
    /// [`base_hash`] of the base folder.
    pub blake3: String,
}

impl BaseRecord {
    /// Read the record of adapter folder `dir`; `None` for an adapter that has none (PEFT
    /// wrote it).
    pub fn read(dir: &Path) -> Result<Option<Self>, ModelError> {
        let path = dir.join(BASE_RECORD);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ModelError::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ModelError::Checkpoint(format!("{}: {e}", path.display()))),
        }
    }
}

/// Whether `dir` holds a LoRA adapter (PEFT's layout) rather than a whole model.
pub fn is_adapter(dir: &Path) -> bool {
    dir.join(ADAPTER_CONFIG).is_file()
}

/// The content hash of a model folder: blake3 over `config.json`, `tokenizer.json` and the
/// weight files in name order, each preceded by its name and length. Two folders with the
/// same files hash the same wherever they are.
pub fn base_hash(dir: &Path) -> Result<String, ModelError> {
    let mut names = vec!["config.json".to_owned(), "tokenizer.json".to_owned()];
    let mut weights: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", dir.display())))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".safetensors") || n == "model.safetensors.index.json")
        .collect();
    weights.sort();
    names.extend(weights);
    let mut hasher = blake3::Hasher::new();
    for name in names {
        let path = dir.join(&name);
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        hasher.update(name.as_bytes());
        hasher.update(&len.to_le_bytes());
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| ModelError::Checkpoint(format!("{}: {e}", path.display())))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Whether a variable name is an adapter's (`….lora_A.weight`, `….lora_B.weight`).
pub fn is_lora_name(name: &str) -> bool {
    name.contains(".lora_A.") || name.contains(".lora_B.")
}

/// A variable's key in PEFT's adapter file.
pub fn peft_key(name: &str) -> String {
    format!("{PEFT_PREFIX}{name}")
}

/// A PEFT adapter file's key as a variable name (PEFT older than 0.7 kept no adapter name in
/// the saved keys either; a `.default.` left in by hand is dropped).
pub fn var_name(key: &str) -> String {
    key.strip_prefix(PEFT_PREFIX)
        .unwrap_or(key)
        .replace(".lora_A.default.", ".lora_A.")
        .replace(".lora_B.default.", ".lora_B.")
}

/// PEFT's initialisation of new adapters, drawn from torch's global generator (seed it and
/// hold the lock first): A ~ kaiming-uniform with a = √5, i.e. U(−1/√in, 1/√in); B = 0, so
/// an adapter starts as the identity update.
pub fn init_adapters(vars: &mut [(String, Tensor)]) {
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, var) in vars.iter_mut() {
            if name.contains(".lora_A.") {
                let fan_in = var.size().get(1).copied().unwrap_or(1).max(1) as f64;
                let bound = 1.0 / fan_in.sqrt();
                let _ = var.uniform_(-bound, bound);
            } else {
                let _ = var.zero_();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_keys_round_trip_and_scale() {
        let name = "model.layers.3.mlp.down_proj.lora_B.weight";
        assert_eq!(var_name(&peft_key(name)), name);
        assert_eq!(
            var_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight"),
            "model.layers.0.self_attn.q_proj.lora_A.weight"
        );
        assert!(is_lora_name(name));
        assert!(!is_lora_name("model.layers.3.mlp.down_proj.weight"));
        let c = LoraConfig::from_params(&LoraParams {
            rank: 4,
            alpha: 8.0,
            dropout: 0.0,
            targets: vec!["v_proj".into(), "q_proj".into(), "q_proj".into()],
        });
        assert_eq!(c.scale(), 2.0);
        assert_eq!(c.targets, ["q_proj", "v_proj"]);
        assert_eq!(LoraConfig { rslora: true, ..c }.scale(), 4.0);
    }

    #[test]
    fn a_peft_config_reads_back_and_unsupported_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let c = LoraConfig::from_params(&LoraParams::default());
        std::fs::write(
            dir.path().join(ADAPTER_CONFIG),
            c.to_peft_json("base").to_string(),
        )
        .unwrap();
        assert_eq!(LoraConfig::read(dir.path()).unwrap(), c);
        let mut v = c.to_peft_json("base");
        v["use_dora"] = json!(true);
        std::fs::write(dir.path().join(ADAPTER_CONFIG), v.to_string()).unwrap();
        let e = LoraConfig::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("`use_dora`"), "{e}");
        let mut v = c.to_peft_json("base");
        v["target_modules"] = json!(["q_proj", "lm_head"]);
        std::fs::write(dir.path().join(ADAPTER_CONFIG), v.to_string()).unwrap();
        let e = LoraConfig::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("lm_head"), "{e}");
    }
}
