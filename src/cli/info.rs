//! `scorch plugins` and `scorch schema`: what this binary knows.

use scorch_api::{DynPlugin, PortType, did_you_mean};
use scorch_engine::error::EngineError;
use scorch_engine::schema::{ParamDoc, param_docs};
use serde_json::{Value, json};

use super::Failure;

pub(super) fn plugins(kind: Option<&str>, as_json: bool) -> Result<(), Failure> {
    let registry = scorch::builtin::registry();
    let Some(kind) = kind else {
        if as_json {
            let kinds: Vec<Value> = registry.plugins().map(|p| describe(p.as_ref())).collect();
            outln!("{}", Value::Array(kinds));
        } else {
            for p in registry.plugins() {
                outln!("{:<10} v{:<4} {}", p.kind(), p.version(), p.description());
            }
        }
        return Ok(());
    };
    let plugin = registry.get(kind).ok_or_else(|| {
        let hint = match did_you_mean(kind, registry.kinds()) {
            Some(k) => format!("did you mean `{k}`?"),
            None => format!("kinds: {}", registry.kinds().collect::<Vec<_>>().join(", ")),
        };
        EngineError::usage(format!("no node kind `{kind}`; {hint}"))
    })?;
    if as_json {
        outln!("{}", describe(plugin.as_ref()));
        return Ok(());
    }
    outln!(
        "{} v{}: {}",
        plugin.kind(),
        plugin.version(),
        plugin.description()
    );
    let docs = param_docs(&plugin.params_schema());
    outln!("\nparams:");
    if docs.is_empty() {
        outln!("  (none)");
    }
    // Two lines a param: types and defaults vary too much in width for columns.
    for d in &docs {
        outln!("  {}: {}  ({})", d.name, d.ty, default_words(d));
        if !d.description.is_empty() {
            outln!("      {}", d.description);
        }
    }
    match plugin.check(&Value::Null) {
        Ok(checked) => {
            let sig = checked.signature;
            outln!("\ninputs (with default params):");
            if sig.inputs.is_empty() && sig.extra_inputs.is_none() {
                outln!("  (none)");
            }
            for p in &sig.inputs {
                let optional = if p.optional { ", optional" } else { "" };
                outln!("  {:<14} {}{optional}", p.name, port_words(&p.ty));
            }
            if let Some(ty) = &sig.extra_inputs {
                outln!("  {:<14} {} (any name)", "*", port_words(ty));
            }
            outln!("\noutputs (with default params):");
            for p in &sig.outputs {
                outln!("  {:<14} {}", p.name, port_words(&p.ty));
            }
        }
        Err(_) => outln!("\ninputs and outputs: set by the params"),
    }
    Ok(())
}

/// `default: X`, `required`, or `optional` (no default).
fn default_words(d: &ParamDoc) -> String {
    match &d.default {
        Some(v) => format!("default: {}", flow_yaml(v)),
        None if d.required => "required".into(),
        None => "optional".into(),
    }
}

/// `v` in YAML's flow style, as a workflow file would write it: `{kind: student}`.
fn flow_yaml(v: &Value) -> String {
    match v {
        Value::String(s)
            if !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || "_-./".contains(c)) =>
        {
            s.clone()
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}: {}", flow_yaml(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(flow_yaml).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// `table` or `blob set`, without a table's every column.
fn port_words(ty: &PortType) -> String {
    match ty {
        PortType::Blobs => "blob set".into(),
        PortType::Table(_) => "table".into(),
    }
}

fn describe(plugin: &dyn DynPlugin) -> Value {
    let params: Vec<Value> = param_docs(&plugin.params_schema())
        .into_iter()
        .map(|d| {
            json!({
                "name": d.name,
                "type": d.ty,
                "default": d.default,
                "required": d.required,
                "description": d.description,
            })
        })
        .collect();
    json!({
        "kind": plugin.kind(),
        "version": plugin.version(),
        "description": plugin.description(),
        "params": params,
    })
}

pub(super) fn schema(table: Option<String>) -> Result<(), Failure> {
    let schema = match table {
        None => scorch_engine::schema::workflow_schema(&scorch::builtin::registry()),
        Some(kind) => scorch_tables::table_schemas()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                EngineError::usage(format!(
                    "no table kind `{kind}`; kinds: tasks, trajectories, repairs, rl_prompts"
                ))
            })?,
    };
    outln!(
        "{}",
        serde_json::to_string_pretty(&schema).unwrap_or_default()
    );
    Ok(())
}
