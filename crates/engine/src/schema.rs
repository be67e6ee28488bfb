//! JSON Schemas that know the node kinds: the workflow file's schema with each kind's params
//! (what an editor's YAML language server completes and checks), and a kind's params as rows
//! of name, type, default and description (`scorch plugins KIND`).

use scorch_api::Registry;
use serde_json::{Map, Value, json};

/// A string that is exactly one reference, `${vars.NAME}` or `${matrix.KEY}`: accepted where
/// a param wants a number, a boolean, an enum or a mapping, since the engine substitutes it
/// before the kind sees its params.
const REFERENCE: &str = "Reference";

/// The workflow file's schema, as committed in `schemas/workflow.schema.json`: the
/// document's structure from [`crate::spec`], `kind` limited to the registry's kinds, and a
/// node's `params` checked against its kind's params schema.
pub fn workflow_schema(registry: &Registry) -> Value {
    let mut schema = crate::spec::workflow_schema();
    let mut defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    defs.insert(
        REFERENCE.into(),
        json!({
            "description": "A reference the engine substitutes before the kind reads its params.",
            "type": "string",
            "pattern": "^\\$\\{[a-z]+\\.[A-Za-z0-9_.-]+\\}$"
        }),
    );
    let mut cases = Vec::new();
    let mut kinds = Vec::new();
    for plugin in registry.plugins() {
        let kind = plugin.kind();
        kinds.push(Value::from(kind));
        let mut params = plugin.params_schema();
        let prefix = format!("{kind}.");
        if let Some(Value::Object(own)) = params.as_object_mut().and_then(|p| p.remove("$defs")) {
            for (name, mut def) in own {
                rename_refs(&mut def, &prefix);
                defs.insert(format!("{prefix}{name}"), accept_references(def));
            }
        }
        rename_refs(&mut params, &prefix);
        if let Some(p) = params.as_object_mut() {
            p.remove("$schema");
            p.remove("title");
            p.insert(
                "description".into(),
                Value::from(format!("Params of `{kind}`: {}", plugin.description())),
            );
        }
        defs.insert(format!("{prefix}params"), accept_references(params));
        cases.push(json!({
            "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {"properties": {"params": {"$ref": format!("#/$defs/{prefix}params")}}}
        }));
    }
    if let Some(node) = defs.get_mut("NodeSpec").and_then(Value::as_object_mut) {
        if let Some(kind) = node
            .get_mut("properties")
            .and_then(|p| p.get_mut("kind"))
            .and_then(Value::as_object_mut)
        {
            kind.insert("enum".into(), Value::Array(kinds));
        }
        node.insert("allOf".into(), Value::Array(cases));
    }
    if let Some(s) = schema.as_object_mut() {
        s.insert("$defs".into(), Value::Object(defs));
    }
    schema
}

/// Point `#/$defs/NAME` at `#/$defs/{prefix}NAME`, where a kind's definitions are moved.
fn rename_refs(schema: &mut Value, prefix: &str) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(r) if key == "$ref" => {
                        if let Some(name) = r.strip_prefix("#/$defs/") {
                            *r = format!("#/$defs/{prefix}{name}");
                        }
                    }
                    other => rename_refs(other, prefix),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_refs(v, prefix)),
        _ => {}
    }
}

/// `schema`, with every place that a reference could stand for also accepting one: any
/// typed value but free text and a variant's tag. `oneOf` becomes `anyOf`: a reference
/// matches every variant, and "exactly one" would then reject it (the variants differ by
/// their tags, so nothing else changes).
fn accept_references(schema: Value) -> Value {
    let Value::Object(mut map) = schema else {
        return schema;
    };
    for key in ["properties", "$defs"] {
        if let Some(Value::Object(children)) = map.remove(key) {
            let children: Map<String, Value> = children
                .into_iter()
                .map(|(k, v)| (k, accept_references(v)))
                .collect();
            map.insert(key.into(), Value::Object(children));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.remove(key) {
            map.insert(key.into(), accept_references(child));
        }
    }
    for (key, to) in [("anyOf", "anyOf"), ("oneOf", "anyOf"), ("allOf", "allOf")] {
        if let Some(Value::Array(branches)) = map.remove(key) {
            let branches = branches.into_iter().map(accept_references).collect();
            map.insert(to.into(), Value::Array(branches));
        }
    }
    let takes_string = match map.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    let free_text = takes_string
        && !["enum", "const", "pattern", "format"]
            .iter()
            .any(|k| map.contains_key(*k));
    // An enum written as one `const` per variant (to keep each variant's description).
    let consts = map
        .get("anyOf")
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty() && b.iter().all(|v| v.get("const").is_some()));
    let typed = map.contains_key("type") || map.contains_key("enum") || consts;
    if !typed || free_text || map.contains_key("const") {
        return Value::Object(map);
    }
    // Keep the words on the outside, where editors show them.
    let mut outer = Map::new();
    for key in ["description", "default", "title"] {
        if let Some(v) = map.remove(key) {
            outer.insert(key.into(), v);
        }
    }
    outer.insert(
        "anyOf".into(),
        json!([Value::Object(map), {"$ref": format!("#/$defs/{REFERENCE}")}]),
    );
    Value::Object(outer)
}

/// One param of a node kind, as `scorch plugins KIND` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamDoc {
    /// Its name under `params:`; a nested one is dotted (`sampling.temperature`).
    pub name: String,
    /// What it takes, in a few words (`integer ≥ 0`, `f32 | bf16 | auto`, `mapping`).
    pub ty: String,
    /// Its default, if it has one.
    pub default: Option<Value>,
    /// Whether a node must give it.
    pub required: bool,
    /// What it is for.
    pub description: String,
}

/// The params described by `schema` (a kind's params schema, with its `$defs`), nested
/// mappings flattened into dotted names.
pub fn param_docs(schema: &Value) -> Vec<ParamDoc> {
    let mut out = Vec::new();
    collect(schema, schema, "", &mut out, 0);
    out
}

fn collect(root: &Value, schema: &Value, prefix: &str, out: &mut Vec<ParamDoc>, depth: usize) {
    let schema = resolve(root, schema);
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        let full = format!("{prefix}{name}");
        let target = nested_object(root, prop);
        out.push(ParamDoc {
            name: full.clone(),
            ty: type_words(root, prop),
            default: prop.get("default").cloned(),
            required: required.contains(&name.as_str()),
            description: description(root, prop),
        });
        if depth >= 3 {
            continue;
        }
        if let Some(obj) = target {
            collect(root, obj, &format!("{full}."), out, depth + 1);
            continue;
        }
        // A tagged enum: each variant's own fields, marked with its tag.
        for (tag, variant) in variants(root, prop) {
            let mut fields = Vec::new();
            collect(root, variant, &format!("{full}."), &mut fields, depth + 1);
            for mut f in fields {
                if f.name == format!("{full}.kind") {
                    continue;
                }
                f.description = format!("(kind: {tag}) {}", f.description);
                out.push(f);
            }
        }
    }
}

/// The schema a `$ref` points at (one level), or `schema` itself.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs").and_then(|d| d.get(name)))
        .unwrap_or(schema)
}

/// The one mapping with named fields that `prop` is (or may be, when optional).
fn nested_object<'a>(root: &'a Value, prop: &'a Value) -> Option<&'a Value> {
    let prop = resolve(root, prop);
    if prop.get("properties").is_some() {
        return Some(prop);
    }
    let branches = prop.get("anyOf").and_then(Value::as_array)?;
    let objects: Vec<&Value> = branches
        .iter()
        .map(|b| resolve(root, b))
        .filter(|b| b.get("properties").is_some())
        .collect();
    match objects.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// The variants of a tagged enum (`{kind: endpoint, ...}`), by tag.
fn variants<'a>(root: &'a Value, prop: &'a Value) -> Vec<(&'a str, &'a Value)> {
    let prop = resolve(root, prop);
    ["oneOf", "anyOf"]
        .iter()
        .filter_map(|k| prop.get(*k).and_then(Value::as_array))
        .flatten()
        .map(|b| resolve(root, b))
        .filter_map(|b| {
            let tag = b.get("properties")?.get("kind")?.get("const")?.as_str()?;
            Some((tag, b))
        })
        .collect()
}

fn description(root: &Value, prop: &Value) -> String {
    let text = prop
        .get("description")
        .or_else(|| resolve(root, prop).get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    // The first paragraph, on one line.
    text.split("\n\n")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A few words for what `prop` takes.
fn type_words(root: &Value, prop: &Value) -> String {
    let prop = resolve(root, prop);
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(" | ");
    }
    if let Some(v) = prop.get("const") {
        return v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = prop.get(key).and_then(Value::as_array) {
            let mut words: Vec<String> = Vec::new();
            for b in branches {
                let w = type_words(root, b);
                if !words.contains(&w) {
                    words.push(w);
                }
            }
            // `null` only says the param is optional, which the default already shows.
            words.retain(|w| w != "null");
            return words.join(" | ");
        }
    }
    // A variant of a tagged enum: by its tag.
    if let Some(tag) = prop
        .get("properties")
        .and_then(|p| p.get("kind"))
        .and_then(|k| k.get("const"))
        .and_then(Value::as_str)
    {
        return format!("{{kind: {tag}}}");
    }
    let types: Vec<&str> = match prop.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return "any".into(),
    };
    types
        .iter()
        .filter(|t| **t != "null" || types.len() == 1)
        .map(|t| match *t {
            "integer" if prop.get("minimum").and_then(Value::as_f64) == Some(0.0) => {
                "integer ≥ 0".to_owned()
            }
            "object" => "mapping".to_owned(),
            "array" => match prop.get("items") {
                Some(items) => format!("list of {}", type_words(root, items)),
                None => "list".to_owned(),
            },
            "number" => "number".to_owned(),
            other => other.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_accepted_where_a_typed_value_goes() {
        let s = accept_references(json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer", "minimum": 0, "description": "count", "default": 3},
                "name": {"type": "string"},
                "mode": {"type": "string", "enum": ["a", "b"]}
            }
        }));
        let n = &s["anyOf"][0]["properties"]["n"];
        assert_eq!(n["description"], "count");
        assert_eq!(n["default"], 3);
        assert_eq!(n["anyOf"][0], json!({"type": "integer", "minimum": 0}));
        assert_eq!(n["anyOf"][1]["$ref"], "#/$defs/Reference");
        // Free text already takes a reference.
        assert_eq!(
            s["anyOf"][0]["properties"]["name"],
            json!({"type": "string"})
        );
        assert_eq!(
            s["anyOf"][0]["properties"]["mode"]["anyOf"][1]["$ref"],
            "#/$defs/Reference"
        );
    }

    #[test]
    fn param_docs_flatten_nested_mappings_and_name_types() {
        let schema = json!({
            "type": "object",
            "properties": {
                "steps": {"type": "integer", "minimum": 0, "default": 300,
                          "description": "Optimiser steps.\n\nMore words."},
                "precision": {"$ref": "#/$defs/Precision", "default": "auto"},
                "sampling": {"anyOf": [{"$ref": "#/$defs/Sampling"}, {"type": "null"}]}
            },
            "required": ["steps"],
            "$defs": {
                "Precision": {"type": "string", "enum": ["auto", "f32", "bf16"],
                              "description": "Compute precision."},
                "Sampling": {"type": "object", "properties": {
                    "temperature": {"type": ["number", "null"], "description": "Softmax temperature."}
                }}
            }
        });
        let docs = param_docs(&schema);
        let names: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            ["steps", "precision", "sampling", "sampling.temperature"]
        );
        assert_eq!(docs[0].ty, "integer ≥ 0");
        assert_eq!(docs[0].default, Some(json!(300)));
        assert_eq!(docs[0].description, "Optimiser steps.");
        assert!(docs[0].required);
        assert_eq!(docs[1].ty, "auto | f32 | bf16");
        assert_eq!(docs[1].description, "Compute precision.");
        assert_eq!(docs[2].ty, "mapping");
        assert_eq!(docs[3].ty, "number");
        assert!(!docs[3].required);
    }
}
