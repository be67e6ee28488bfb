//! Matrix expansion and `from:` references, which may name a matrix node by its base id.

use std::collections::HashMap;

use scorch_api::did_you_mean;
use serde_json::Value;

use super::{Ctx, Node};
use crate::error::ErrorKind;
use crate::yaml;

pub(super) fn valid_id(id: &str) -> bool {
    let mut c = id.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The text of a matrix value for instance names: the YAML source when there is one.
fn value_text(v: &Value, span: Option<yaml::Span>, text: &str) -> String {
    if let (Some(s), false) = (span, v.is_string())
        && let Some(t) = text.get(s.offset..s.offset + s.len)
    {
        let t = t.trim();
        if !t.is_empty() && !t.contains([',', ']', '\n']) {
            return t.to_owned();
        }
    }
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Apply one `--set a.b.c=VALUE`.
type Combo = Vec<(String, Value, String)>;

pub(super) fn expand_matrix(
    matrix: Option<&Value>,
    node_path: &str,
    text: &str,
    ctx: &mut Ctx<'_>,
) -> Option<Vec<Combo>> {
    let Some(matrix) = matrix else {
        return Some(vec![Vec::new()]);
    };
    let mpath = format!("{node_path}.matrix");
    let Value::Object(axes) = matrix else {
        ctx.push(
            ErrorKind::InvalidMatrix,
            &mpath,
            "`matrix` must map keys to lists of values",
            Some("e.g. `matrix: {lr: [1e-6, 1e-5]}`".into()),
        );
        return None;
    };
    let mut combos: Vec<Combo> = vec![Vec::new()];
    for (key, values) in axes {
        let apath = format!("{mpath}.{key}");
        if !valid_id(key) {
            ctx.push_at_key(
                ErrorKind::InvalidMatrix,
                &apath,
                format!("matrix key `{key}` is not an identifier"),
                None,
            );
            return None;
        }
        let Value::Array(values) = values else {
            ctx.push(
                ErrorKind::InvalidMatrix,
                &apath,
                format!("matrix key `{key}` must list its values"),
                Some(format!("e.g. `{key}: [1, 2]`")),
            );
            return None;
        };
        if values.is_empty() {
            ctx.push(
                ErrorKind::InvalidMatrix,
                &apath,
                format!("matrix key `{key}` has no values"),
                None,
            );
            return None;
        }
        let mut next = Vec::new();
        for combo in &combos {
            for (i, v) in values.iter().enumerate() {
                if v.is_object() || v.is_array() {
                    ctx.push(
                        ErrorKind::InvalidMatrix,
                        &format!("{apath}[{i}]"),
                        "matrix values must be scalars",
                        None,
                    );
                    return None;
                }
                let span = ctx.index.get(&format!("{apath}[{i}]")).map(|p| p.value);
                let mut c = combo.clone();
                c.push((key.clone(), v.clone(), value_text(v, span, text)));
                next.push(c);
            }
        }
        combos = next;
    }
    Some(combos)
}

/// Resolve `from:` text to (producer index, output name).
pub(super) fn resolve_ref(
    from: &str,
    consumer: &Node,
    nodes: &[Node],
    ids: &HashMap<String, usize>,
    ctx: &mut Ctx<'_>,
    path: &str,
) -> Option<(usize, String)> {
    let Some((target, output)) = from.rsplit_once('.') else {
        ctx.push(
            ErrorKind::InvalidReference,
            path,
            format!("`{from}` is not of the form NODE.OUTPUT"),
            Some("e.g. `from: warm_sft.checkpoint`".into()),
        );
        return None;
    };
    if target.is_empty() || output.is_empty() {
        ctx.push(
            ErrorKind::InvalidReference,
            path,
            format!("`{from}` is not of the form NODE.OUTPUT"),
            None,
        );
        return None;
    }
    if let Some(&i) = ids.get(target)
        && (nodes[i].matrix.is_empty() || target.contains('['))
    {
        return Some((i, output.to_owned()));
    }
    // A base id of a matrix node: pick the instance that agrees with the consumer's bindings.
    let instances: Vec<usize> = (0..nodes.len())
        .filter(|&i| nodes[i].base == target && !nodes[i].matrix.is_empty())
        .collect();
    if instances.is_empty() {
        let bases: Vec<&str> = {
            let mut b: Vec<&str> = nodes.iter().map(|n| n.base.as_str()).collect();
            b.dedup();
            b
        };
        let hint = did_you_mean(
            target,
            bases.iter().copied().chain(ids.keys().map(String::as_str)),
        )
        .map(|c| format!("did you mean `{c}`?"))
        .or_else(|| Some(format!("nodes: {}", bases.join(", "))));
        ctx.push(
            ErrorKind::UnknownNode,
            path,
            format!("unknown node `{target}` in `{from}`"),
            hint,
        );
        return None;
    }
    let matching: Vec<usize> = instances
        .iter()
        .copied()
        .filter(|&i| {
            nodes[i].matrix.iter().all(|(k, v)| {
                consumer
                    .matrix
                    .iter()
                    .find(|(ck, _)| ck == k)
                    .is_none_or(|(_, cv)| cv == v)
            })
        })
        .collect();
    let covered = nodes[instances[0]]
        .matrix
        .iter()
        .all(|(k, _)| consumer.matrix.iter().any(|(ck, _)| ck == k));
    if matching.len() == 1 && covered {
        return Some((matching[0], output.to_owned()));
    }
    let choices: Vec<String> = instances
        .iter()
        .take(4)
        .map(|&i| format!("`{}.{output}`", nodes[i].id))
        .collect();
    ctx.push(
        ErrorKind::InvalidReference,
        path,
        format!(
            "`{target}` is a matrix of {} nodes; `{from}` does not say which",
            instances.len()
        ),
        Some(format!(
            "name one, e.g. {}, or give this node the same matrix keys",
            choices.join(" or ")
        )),
    );
    None
}
