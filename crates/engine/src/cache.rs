//! Cache keys: what a node's result depends on, hashed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bumped whenever the key recipe or the store layout changes.
pub const CACHE_FORMAT: u32 = 1;

/// Everything a node's cache key is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyComponents {
    /// [`CACHE_FORMAT`].
    pub format: u32,
    /// Plugin kind.
    pub kind: String,
    /// Plugin version.
    pub version: String,
    /// Canonical params (defaults filled, secrets as `${env.NAME}`).
    pub params: Value,
    /// The node's seed.
    pub seed: u64,
    /// Content hash of each input artifact, by input name.
    pub inputs: BTreeMap<String, String>,
}

impl KeyComponents {
    /// The cache key: blake3 of the canonical JSON of the components.
    pub fn key(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or(Value::Null);
        blake3::hash(canonical_json(&v).as_bytes())
            .to_hex()
            .to_string()
    }

    /// What differs from `old`, one line per component, in plain words.
    pub fn changes_since(&self, old: &KeyComponents) -> Vec<String> {
        let mut out = Vec::new();
        if self.format != old.format {
            out.push(format!("cache format {} → {}", old.format, self.format));
        }
        if self.kind != old.kind {
            out.push(format!("plugin kind {} → {}", old.kind, self.kind));
        }
        if self.version != old.version {
            out.push(format!("plugin version {} → {}", old.version, self.version));
        }
        if self.params != old.params {
            let mut diffs = Vec::new();
            diff_values("", &old.params, &self.params, &mut diffs);
            out.push(format!("params changed: {}", diffs.join(", ")));
        }
        if self.seed != old.seed {
            out.push(format!("seed {} → {}", old.seed, self.seed));
        }
        for (name, hash) in &self.inputs {
            match old.inputs.get(name) {
                Some(h) if h == hash => {}
                Some(_) => out.push(format!("input `{name}` changed")),
                None => out.push(format!("input `{name}` is new")),
            }
        }
        for name in old.inputs.keys() {
            if !self.inputs.contains_key(name) {
                out.push(format!("input `{name}` was removed"));
            }
        }
        out
    }
}

fn diff_values(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_values(&p, x, y, out),
                    (None, Some(y)) => out.push(format!("{p}: (unset) → {y}")),
                    (Some(x), None) => out.push(format!("{p}: {x} → (unset)")),
                    (None, None) => {}
                }
            }
        }
        (a, b) if a != b => out.push(format!(
            "{}: {a} → {b}",
            if path.is_empty() { "params" } else { path }
        )),
        _ => {}
    }
}

/// JSON with object keys sorted at every level and no whitespace.
pub fn canonical_json(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn comps(params: Value) -> KeyComponents {
        KeyComponents {
            format: 1,
            kind: "k".into(),
            version: "1".into(),
            params,
            seed: 0,
            inputs: BTreeMap::new(),
        }
    }

    #[test]
    fn key_ignores_key_order_but_not_values() {
        let a = comps(json!({"a": 1, "b": {"c": 2.5, "d": "x"}}));
        let b = comps(json!({"b": {"d": "x", "c": 2.5}, "a": 1}));
        assert_eq!(a.key(), b.key());
        assert_ne!(
            a.key(),
            comps(json!({"a": 2, "b": {"c": 2.5, "d": "x"}})).key()
        );
        let mut c = a.clone();
        c.inputs.insert("t".into(), "h1".into());
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn changes_are_described() {
        let mut old = comps(json!({"lr": 0.1, "steps": 3}));
        old.inputs.insert("t".into(), "h1".into());
        let mut new = comps(json!({"lr": 0.2, "steps": 3}));
        new.inputs.insert("t".into(), "h2".into());
        new.version = "2".into();
        assert_eq!(
            new.changes_since(&old),
            vec![
                "plugin version 1 → 2".to_owned(),
                "params changed: lr: 0.1 → 0.2".to_owned(),
                "input `t` changed".to_owned()
            ]
        );
    }
}
