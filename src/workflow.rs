//! Loading a workflow: YAML → variables and matrix → typed spec → plugins and params →
//! references and schemas → a DAG. Every problem found becomes a [`Diagnostic`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scorch_api::{
    DynPlugin, Registry, Signature, check_compatible, did_you_mean, unknown_field_hint,
};
use serde_json::Value;

use crate::dag;
use crate::error::{Diagnostic, ErrorKind, WorkflowError};
use crate::interp::{Scope, Secrets, interpolate};
use crate::spec::{NodeSpec, WorkflowSpec};
use crate::yaml::{self, SpanIndex};

/// Options that change how a file loads.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--set PATH=VALUE` overrides, in order (VALUE is a YAML scalar or flow value).
    pub sets: Vec<String>,
    /// `--slots NAME=N` resource limits.
    pub slots: BTreeMap<String, u32>,
}

/// An input edge.
#[derive(Debug, Clone)]
pub struct Edge {
    /// The consumer's input name.
    pub input: String,
    /// The producer's index in [`Workflow::nodes`].
    pub node: usize,
    /// The producer's output name.
    pub output: String,
}

/// A node ready to plan and run.
#[derive(Clone)]
pub struct Node {
    /// Id (`rl[lr=1e-6]` for a matrix instance).
    pub id: String,
    /// The id as written in the file.
    pub base: String,
    /// Matrix bindings of this instance.
    pub matrix: Vec<(String, Value)>,
    /// The plugin.
    pub plugin: Arc<dyn DynPlugin>,
    /// Params as the plugin gets them (secrets included).
    pub params: Value,
    /// Params as they enter the cache key and records (secrets as `${env.NAME}`).
    pub key_params: Value,
    /// Inputs and outputs.
    pub signature: Signature,
    /// Inputs, by input name order.
    pub inputs: Vec<Edge>,
    /// Slots held while running.
    pub resources: BTreeMap<String, u32>,
    /// Retries after a failure.
    pub retries: u32,
    /// The seed.
    pub seed: u64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("kind", &self.plugin.kind())
            .finish_non_exhaustive()
    }
}

/// A checked workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Its name.
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// The file's directory.
    pub dir: PathBuf,
    /// The `store:` URL, if the file sets one.
    pub store: Option<String>,
    /// Nodes in topological order.
    pub nodes: Vec<Node>,
    /// Resource limits of a run.
    pub limits: BTreeMap<String, u32>,
    /// The `--set profile=NAME` applied, if any.
    pub profile: Option<String>,
    /// The variables after the profile and `--set`s, as written: `${env.…}` references stay
    /// unresolved, so no secret is in them.
    pub vars: serde_json::Map<String, Value>,
    /// The environment values the workflow read: what records, errors and output redact.
    pub secrets: Secrets,
}

impl Workflow {
    /// The index of node `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }
    /// Dependencies of each node, by index.
    pub fn deps(&self) -> Vec<Vec<usize>> {
        self.nodes
            .iter()
            .map(|n| n.inputs.iter().map(|e| e.node).collect())
            .collect()
    }
}

struct Ctx<'a> {
    index: &'a SpanIndex,
    diags: Vec<Diagnostic>,
    /// instance id → base id
    bases: HashMap<String, String>,
}

impl Ctx<'_> {
    /// A diagnostic at `path` (instance ids mapped back to the file's ids), pointing at the
    /// value, or at the key when `at_key`.
    fn push(
        &mut self,
        kind: ErrorKind,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
        at_key: bool,
    ) {
        let path = self.file_path(path);
        let place = self.index.nearest(&path);
        let span = place.map(|(p, pl)| {
            if at_key || p != path {
                pl.key.unwrap_or(pl.value)
            } else {
                pl.value
            }
        });
        let span = match (place, at_key) {
            (Some((p, pl)), false) if p == path => Some(pl.value),
            _ => span,
        };
        self.diags.push(
            Diagnostic::new(kind, message)
                .at(path)
                .spanned(span)
                .hint(hint),
        );
    }

    fn file_path(&self, path: &str) -> String {
        if let Some(rest) = path.strip_prefix("nodes.") {
            for (inst, base) in &self.bases {
                if inst != base
                    && let Some(after) = rest.strip_prefix(inst.as_str())
                    && (after.is_empty() || after.starts_with('.'))
                {
                    return format!("nodes.{base}{after}");
                }
            }
        }
        path.to_owned()
    }
}

fn valid_id(id: &str) -> bool {
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
fn apply_set(doc: &mut Value, set: &str) -> Result<(), Box<Diagnostic>> {
    let bad = |msg: String| Box::new(Diagnostic::new(ErrorKind::InvalidSet, msg));
    let (path, raw) = set
        .split_once('=')
        .ok_or_else(|| bad(format!("`--set {set}` is not of the form PATH=VALUE")))?;
    let value: Value = if raw.is_empty() {
        Value::String(String::new())
    } else {
        match yaml::parse(raw) {
            Ok((v, _)) => v,
            Err(_) => Value::String(raw.to_owned()),
        }
    };
    let keys: Vec<&str> = path.split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(bad(format!(
            "`--set {set}`: `{path}` is not a dotted key path"
        )));
    }
    // A variable must exist in `vars:` (or the profile): a misspelt one would otherwise be
    // set quietly and used by nothing.
    if let ["vars", name] = keys.as_slice() {
        let known: Vec<&str> = doc
            .get("vars")
            .and_then(Value::as_object)
            .map(|v| v.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if !known.contains(name) {
            let hint = match did_you_mean(name, known.iter().copied()) {
                Some(k) => format!("did you mean `vars.{k}`?"),
                None if known.is_empty() => {
                    "the workflow has no `vars:`; add the variable there first".into()
                }
                None => format!("variables: {}", known.join(", ")),
            };
            return Err(Box::new(
                Diagnostic::new(
                    ErrorKind::InvalidSet,
                    format!("`--set {set}`: the workflow has no variable `{name}`"),
                )
                .hint(Some(hint)),
            ));
        }
    }
    let mut cur = doc;
    for (i, k) in keys.iter().enumerate() {
        let Value::Object(map) = cur else {
            return Err(bad(format!(
                "`--set {set}`: `{}` is not a mapping",
                keys[..i].join(".")
            )));
        };
        if i + 1 == keys.len() {
            map.insert((*k).to_owned(), value);
            return Ok(());
        }
        cur = map
            .entry((*k).to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(())
}

/// Read, check and resolve the workflow at `path`.
pub fn load(
    path: &Path,
    registry: &Registry,
    options: &LoadOptions,
) -> Result<Workflow, WorkflowError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| WorkflowError {
        file: file.clone(),
        source_text: Arc::from(""),
        diagnostics: vec![Diagnostic::new(
            ErrorKind::Io,
            format!("cannot read the workflow file: {e}"),
        )],
    })?;
    let source_text: Arc<str> = Arc::from(text.as_str());
    let fail = |diagnostics: Vec<Diagnostic>| WorkflowError {
        file: file.clone(),
        source_text: source_text.clone(),
        diagnostics,
    };
    let (doc, index) = yaml::parse(&text).map_err(|e| {
        fail(vec![
            Diagnostic::new(ErrorKind::Syntax, format!("invalid YAML: {}", e.message))
                .spanned(e.span)
                .hint(Some(
                    "check the indentation, brackets and quotes around this place".into(),
                )),
        ])
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let dir = if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    };
    let mut ctx = Ctx {
        index: &index,
        diags: Vec::new(),
        bases: HashMap::new(),
    };
    match resolve(doc, &text, registry, options, &mut ctx, path, &dir) {
        Some(w) if ctx.diags.is_empty() => Ok(w),
        _ => Err(fail(std::mem::take(&mut ctx.diags))),
    }
}

fn resolve(
    mut doc: Value,
    text: &str,
    registry: &Registry,
    options: &LoadOptions,
    ctx: &mut Ctx<'_>,
    path: &Path,
    dir: &Path,
) -> Option<Workflow> {
    for (dup, span, first) in ctx.index.duplicates.clone() {
        let is_node = yaml::parent(&dup) == Some("nodes");
        let (kind, what) = if is_node {
            (ErrorKind::DuplicateNode, "node id")
        } else {
            (ErrorKind::DuplicateKey, "key")
        };
        let name = dup.rsplit('.').next().unwrap_or(&dup).to_owned();
        let mut d = Diagnostic::new(kind, format!("duplicate {what} `{name}`"))
            .at(dup.clone())
            .spanned(Some(span))
            .label("defined again here")
            .hint(Some(format!("rename one of the two `{name}`s")));
        d.related.push((first, "first defined here".to_owned()));
        ctx.diags.push(d);
    }
    if !doc.is_object() {
        ctx.push(
            ErrorKind::Structure,
            "",
            "a workflow file is a mapping with `name:` and `nodes:`",
            Some("start the file with `name: my-experiment` and a `nodes:` mapping".into()),
            false,
        );
        return None;
    }
    // `--set profile=NAME` applies the profile's variables first; other `--set`s win over it.
    let (profile_sets, other_sets): (Vec<&String>, Vec<&String>) =
        options.sets.iter().partition(|s| s.starts_with("profile="));
    if let Some(set) = profile_sets.last() {
        let name = set.trim_start_matches("profile=");
        let profile = doc
            .get("profiles")
            .and_then(|p| p.get(name))
            .and_then(Value::as_object)
            .cloned();
        match profile {
            Some(values) => {
                if let Some(Value::Object(vars)) = doc.get_mut("vars") {
                    vars.extend(values);
                } else if let Value::Object(top) = &mut doc {
                    top.insert("vars".into(), Value::Object(values));
                }
            }
            None => {
                let known: Vec<String> = doc
                    .get("profiles")
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                ctx.diags.push(
                    Diagnostic::new(
                        ErrorKind::InvalidSet,
                        format!("`--set profile={name}`: the workflow has no profile `{name}`"),
                    )
                    .hint(Some(if known.is_empty() {
                        "the workflow defines no `profiles:`".into()
                    } else {
                        format!("profiles: {}", known.join(", "))
                    })),
                );
            }
        }
    }
    for set in other_sets {
        if let Err(d) = apply_set(&mut doc, set) {
            ctx.diags.push(*d);
        }
    }
    let Value::Object(mut top) = doc else {
        return None;
    };
    let profile = profile_sets
        .last()
        .map(|s| s.trim_start_matches("profile=").to_owned());
    let written_vars = top
        .get("vars")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();

    // Variables, with environment references resolved.
    let mut secrets = Secrets::default();
    let raw_vars = top
        .get("vars")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let vars = match &raw_vars {
        Value::Object(_) => match interpolate(&raw_vars, &Scope::default(), &mut secrets) {
            Ok(Value::Object(v)) => v,
            Ok(_) => Default::default(),
            Err(e) => {
                ctx.push(
                    ErrorKind::UnsetVariable,
                    &yaml::join("vars", &e.path),
                    e.message,
                    e.hint,
                    false,
                );
                Default::default()
            }
        },
        _ => {
            ctx.push(
                ErrorKind::InvalidType,
                "vars",
                "`vars` must be a mapping of names to values",
                None,
                false,
            );
            Default::default()
        }
    };
    top.insert("vars".into(), Value::Object(vars.clone()));
    for key in ["name", "description", "store", "seed", "resources"] {
        if let Some(v) = top.get(key) {
            match interpolate(
                v,
                &Scope {
                    vars: Some(&vars),
                    ..Default::default()
                },
                &mut secrets,
            ) {
                Ok(v) => {
                    top.insert(key.into(), v);
                }
                Err(e) => ctx.push(
                    ErrorKind::UnsetVariable,
                    &yaml::join(key, &e.path),
                    e.message,
                    e.hint,
                    false,
                ),
            }
        }
    }

    // Nodes: matrix expansion, then interpolation of each instance.
    let mut instances = serde_json::Map::new();
    let mut bindings: HashMap<String, (String, Vec<(String, Value)>)> = HashMap::new();
    let mut key_params: HashMap<String, Value> = HashMap::new();
    match top.get("nodes") {
        Some(Value::Object(nodes)) => {
            if nodes.is_empty() {
                ctx.push(
                    ErrorKind::Structure,
                    "nodes",
                    "the workflow has no nodes",
                    None,
                    false,
                );
            }
            for (id, raw) in nodes {
                let node_path = yaml::join("nodes", id);
                if !valid_id(id) {
                    ctx.push(
                        ErrorKind::InvalidId,
                        &node_path,
                        format!("node id `{id}` is not an identifier"),
                        Some(
                            "use letters, digits, `_` and `-`, starting with a letter or `_`"
                                .into(),
                        ),
                        true,
                    );
                    continue;
                }
                let Value::Object(raw) = raw else {
                    ctx.push(
                        ErrorKind::InvalidType,
                        &node_path,
                        format!("node `{id}` must be a mapping with `kind:`"),
                        None,
                        false,
                    );
                    continue;
                };
                let combos = match expand_matrix(raw.get("matrix"), &node_path, text, ctx) {
                    Some(c) => c,
                    None => continue,
                };
                for combo in combos {
                    let inst_id = if combo.is_empty() {
                        id.clone()
                    } else {
                        let parts: Vec<String> =
                            combo.iter().map(|(k, _, t)| format!("{k}={t}")).collect();
                        format!("{id}[{}]", parts.join(","))
                    };
                    let matrix: Vec<(String, Value)> = combo
                        .iter()
                        .map(|(k, v, _)| (k.clone(), v.clone()))
                        .collect();
                    let mut body = raw.clone();
                    body.remove("matrix");
                    let body = Value::Object(body);
                    let scope = Scope {
                        vars: Some(&vars),
                        matrix: matrix.iter().cloned().collect(),
                        keep_env: false,
                    };
                    let value = match interpolate(&body, &scope, &mut secrets) {
                        Ok(v) => v,
                        Err(e) => {
                            ctx.push(
                                ErrorKind::UnsetVariable,
                                &yaml::join(&node_path, &e.path),
                                e.message,
                                e.hint,
                                false,
                            );
                            continue;
                        }
                    };
                    if instances.contains_key(&inst_id) {
                        ctx.push(
                            ErrorKind::DuplicateNode,
                            &node_path,
                            format!("the matrix makes node `{inst_id}` twice"),
                            Some("remove the repeated matrix value".into()),
                            true,
                        );
                        continue;
                    }
                    ctx.bases.insert(inst_id.clone(), id.clone());
                    // The same params with `${env.X}` left as written: what keys and records see.
                    let keep = Scope {
                        keep_env: true,
                        ..scope.clone()
                    };
                    if let Ok(kept) = interpolate(&body, &keep, &mut Secrets::default()) {
                        key_params.insert(
                            inst_id.clone(),
                            kept.get("params").cloned().unwrap_or(Value::Null),
                        );
                    }
                    bindings.insert(inst_id.clone(), (id.clone(), matrix));
                    instances.insert(inst_id, value);
                }
            }
        }
        Some(_) => ctx.push(
            ErrorKind::InvalidType,
            "nodes",
            "`nodes` must be a mapping of node ids to nodes",
            None,
            false,
        ),
        None => ctx.push(
            ErrorKind::MissingField,
            "",
            "the workflow has no `nodes:`",
            Some("add `nodes:` with at least one node".into()),
            false,
        ),
    }
    if !ctx.diags.is_empty() {
        return None;
    }
    top.insert("nodes".into(), Value::Object(instances));

    // The typed spec.
    let spec: WorkflowSpec = match serde_path_to_error::deserialize(Value::Object(top)) {
        Ok(s) => s,
        Err(e) => {
            let p = e.path().to_string();
            let p = if p == "." { String::new() } else { p };
            let message = e.inner().to_string();
            let (kind, at_key) = if message.starts_with("unknown field") {
                (ErrorKind::UnknownField, true)
            } else if message.starts_with("missing field") {
                (ErrorKind::MissingField, false)
            } else {
                (ErrorKind::InvalidType, false)
            };
            let hint = unknown_field_hint(&message).or_else(|| type_hint(&message));
            ctx.push(kind, &p, message, hint, at_key);
            return None;
        }
    };

    if let Some(url) = &spec.store
        && let Err(why) = crate::store::check_url(url)
    {
        ctx.push(
            ErrorKind::InvalidType,
            "store",
            format!("store `{url}`: {why}"),
            Some("the default is file://.scorch; --store overrides it".into()),
            false,
        );
    }
    let mut limits = spec.resources.clone();
    limits.extend(options.slots.clone());
    limits
        .entry("cpu".into())
        .or_insert_with(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));

    // Plugins and params.
    let mut nodes: Vec<Node> = Vec::new();
    let mut specs: Vec<NodeSpec> = Vec::new();
    for (id, ns) in &spec.nodes {
        let base_path = yaml::join("nodes", id);
        let Some(plugin) = registry.get(&ns.kind) else {
            let hint = did_you_mean(&ns.kind, registry.kinds())
                .map(|k| format!("did you mean `{k}`?"))
                .unwrap_or_else(|| {
                    format!(
                        "known kinds: {}",
                        registry.kinds().collect::<Vec<_>>().join(", ")
                    )
                });
            ctx.push(
                ErrorKind::UnknownPlugin,
                &format!("{base_path}.kind"),
                format!("unknown plugin kind `{}`", ns.kind),
                Some(hint),
                false,
            );
            continue;
        };
        let params = Value::Object(ns.params.clone());
        let checked = match plugin.check(&params) {
            Ok(c) => c,
            Err(e) => {
                let p = if e.path.is_empty() {
                    format!("{base_path}.params")
                } else {
                    format!("{base_path}.params.{}", e.path)
                };
                let at_key = e.message.starts_with("unknown field");
                ctx.push(
                    ErrorKind::InvalidParam,
                    &p,
                    format!("invalid params for `{}`: {}", ns.kind, e.message),
                    e.hint.clone().or_else(|| type_hint(&e.message)),
                    at_key,
                );
                continue;
            }
        };
        let mut resources = ns.resources.clone();
        resources.entry("cpu".into()).or_insert(1);
        for (slot, need) in &resources {
            match limits.get(slot) {
                Some(limit) if need > limit => ctx.push(
                    ErrorKind::Resources,
                    &format!("{base_path}.resources.{slot}"),
                    format!("node `{id}` needs {need} `{slot}` slot(s) but a run has {limit}"),
                    Some(format!("lower the need, or raise the limit with `resources: {{{slot}: {need}}}` or `--slots {slot}={need}`")),
                    false,
                ),
                None => ctx.push(
                    ErrorKind::Resources,
                    &format!("{base_path}.resources.{slot}"),
                    format!("node `{id}` needs resource `{slot}`, which this run does not have"),
                    Some(format!("declare it at the top level, `resources: {{{slot}: N}}`, or pass `--slots {slot}=N`")),
                    true,
                ),
                Some(_) => {}
            }
        }
        let (base, matrix) = bindings
            .get(id)
            .cloned()
            .unwrap_or_else(|| (id.clone(), Vec::new()));
        nodes.push(Node {
            id: id.clone(),
            base,
            matrix,
            plugin: plugin.clone(),
            // `${env.X}` kept as written, and any secret that arrived another way (through
            // a variable, a matrix, a longer string) replaced by its reference too.
            key_params: match key_params.get(id).map(|p| plugin.check(p)) {
                Some(Ok(kept)) => secrets.redact(&kept.params),
                _ => secrets.redact(&checked.params),
            },
            params: checked.params,
            signature: checked.signature,
            inputs: Vec::new(),
            resources,
            retries: ns.retries,
            seed: ns.seed.unwrap_or(spec.seed),
        });
        specs.push(ns.clone());
    }
    if !ctx.diags.is_empty() {
        return None;
    }

    // References.
    let ids: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.clone(), i))
        .collect();
    for i in 0..nodes.len() {
        let node_id = nodes[i].id.clone();
        let mut edges = Vec::new();
        for (input, is) in &specs[i].inputs {
            let p = format!("nodes.{node_id}.inputs.{input}.from");
            let Some((target, output)) = resolve_ref(&is.from, &nodes[i], &nodes, &ids, ctx, &p)
            else {
                continue;
            };
            let Some(consumer_ty) = nodes[i].signature.input_type(input).cloned() else {
                let known: Vec<&str> = nodes[i]
                    .signature
                    .inputs
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                let hint = did_you_mean(input, known.iter().copied())
                    .map(|c| format!("did you mean `{c}`?"))
                    .or_else(|| {
                        Some(format!(
                            "`{}` takes: {}",
                            nodes[i].plugin.kind(),
                            if known.is_empty() {
                                "no inputs".into()
                            } else {
                                known.join(", ")
                            }
                        ))
                    });
                ctx.push(
                    ErrorKind::UnknownInput,
                    &format!("nodes.{node_id}.inputs.{input}"),
                    format!("`{}` has no input `{input}`", nodes[i].plugin.kind()),
                    hint,
                    true,
                );
                continue;
            };
            let Some(producer_ty) = nodes[target].signature.output_type(&output) else {
                let known: Vec<&str> = nodes[target]
                    .signature
                    .outputs
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                let hint = did_you_mean(&output, known.iter().copied())
                    .map(|c| format!("did you mean `{}.{c}`?", nodes[target].id))
                    .or_else(|| {
                        Some(format!(
                            "`{}` has outputs: {}",
                            nodes[target].id,
                            known.join(", ")
                        ))
                    });
                ctx.push(
                    ErrorKind::UnknownOutput,
                    &p,
                    format!("node `{}` has no output `{output}`", nodes[target].id),
                    hint,
                    false,
                );
                continue;
            };
            if let Err(why) = check_compatible(&consumer_ty, producer_ty) {
                ctx.push(
                    ErrorKind::SchemaMismatch,
                    &p,
                    format!(
                        "`{}.{output}` does not fit input `{input}` of `{node_id}`: {why}",
                        nodes[target].id
                    ),
                    Some(format!(
                        "`{}` declares {producer_ty}; `{input}` expects {consumer_ty}",
                        nodes[target].id
                    )),
                    false,
                );
                continue;
            }
            edges.push(Edge {
                input: input.clone(),
                node: target,
                output,
            });
        }
        for port in &nodes[i].signature.inputs {
            if !port.optional && !specs[i].inputs.contains_key(&port.name) {
                ctx.push(
                    ErrorKind::MissingInput,
                    &format!("nodes.{node_id}"),
                    format!(
                        "node `{node_id}` does not connect required input `{}` ({})",
                        port.name, port.ty
                    ),
                    Some(format!(
                        "add `inputs: {{{}: {{from: NODE.OUTPUT}}}}`",
                        port.name
                    )),
                    true,
                );
            }
        }
        nodes[i].inputs = edges;
    }
    if !ctx.diags.is_empty() {
        return None;
    }

    // The DAG.
    let deps: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| n.inputs.iter().map(|e| e.node).collect())
        .collect();
    let order = match dag::topo_order(&deps) {
        Ok(o) => o,
        Err(cycle) => {
            let names: Vec<&str> = cycle.iter().map(|&i| nodes[i].id.as_str()).collect();
            let mut ring = names.join(" → ");
            if let Some(first) = names.first() {
                ring.push_str(&format!(" → {first}"));
            }
            let (from, to) = (cycle[0], cycle.get(1).copied().unwrap_or(cycle[0]));
            let input = nodes[to]
                .inputs
                .iter()
                .find(|e| e.node == from)
                .map(|e| e.input.clone())
                .unwrap_or_default();
            ctx.push(
                ErrorKind::Cycle,
                &format!("nodes.{}.inputs.{input}.from", nodes[to].id),
                format!("the nodes form a cycle: {ring}"),
                Some("a node cannot depend on its own output; remove one of these inputs".into()),
                false,
            );
            return None;
        }
    };
    let mut position = vec![0; nodes.len()];
    for (new, &old) in order.iter().enumerate() {
        position[old] = new;
    }
    let mut sorted: Vec<Node> = order.iter().map(|&i| nodes[i].clone()).collect();
    for n in &mut sorted {
        for e in &mut n.inputs {
            e.node = position[e.node];
        }
    }
    Some(Workflow {
        name: spec.name.clone(),
        file: path.to_path_buf(),
        dir: dir.to_path_buf(),
        store: spec.store.clone(),
        nodes: sorted,
        limits,
        profile,
        vars: written_vars,
        secrets,
    })
}

/// A plain-words hint for serde's "invalid type: X, expected Y".
fn type_hint(message: &str) -> Option<String> {
    let expected = message.split("expected ").nth(1)?.trim();
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" => "`true` or `false`",
        "a string" => "text (quote it if YAML reads it as something else)",
        "a sequence" => "a list, e.g. `[a, b]`",
        e if e.starts_with("a map") || e.starts_with("struct") => "a mapping, e.g. `{key: value}`",
        e if e.starts_with("one of") => return Some(format!("use {e}")),
        _ => return None,
    };
    Some(format!("write {words} here"))
}

type Combo = Vec<(String, Value, String)>;

fn expand_matrix(
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
            false,
        );
        return None;
    };
    let mut combos: Vec<Combo> = vec![Vec::new()];
    for (key, values) in axes {
        let apath = format!("{mpath}.{key}");
        if !valid_id(key) {
            ctx.push(
                ErrorKind::InvalidMatrix,
                &apath,
                format!("matrix key `{key}` is not an identifier"),
                None,
                true,
            );
            return None;
        }
        let Value::Array(values) = values else {
            ctx.push(
                ErrorKind::InvalidMatrix,
                &apath,
                format!("matrix key `{key}` must list its values"),
                Some(format!("e.g. `{key}: [1, 2]`")),
                false,
            );
            return None;
        };
        if values.is_empty() {
            ctx.push(
                ErrorKind::InvalidMatrix,
                &apath,
                format!("matrix key `{key}` has no values"),
                None,
                false,
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
                        false,
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
fn resolve_ref(
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
            false,
        );
        return None;
    };
    if target.is_empty() || output.is_empty() {
        ctx.push(
            ErrorKind::InvalidReference,
            path,
            format!("`{from}` is not of the form NODE.OUTPUT"),
            None,
            false,
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
            false,
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
        false,
    );
    None
}
