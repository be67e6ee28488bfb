//! The stages of loading, in order; each adds what it finds wrong to the [`Ctx`] and the
//! next runs only on what the previous produced.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use scorch_api::{Hardware, Registry, check_compatible, did_you_mean, unknown_field_hint};
use serde_json::Value;

use super::matrix::{expand_matrix, resolve_ref, valid_id};
use super::{Ctx, Edge, LoadOptions, Node, Workflow, deps_of};
use crate::dag;
use crate::error::{Diagnostic, ErrorKind};
use crate::interp::{Scope, Secrets, interpolate};
use crate::spec::{ExecutorSpec, NodeSpec, WorkflowSpec};
use crate::yaml;

/// Each node instance's `(base id, matrix bindings)`.
type Bindings = HashMap<String, (String, Vec<(String, Value)>)>;

/// A JSON mapping (the document's top level, the variables).
type Map = serde_json::Map<String, Value>;

/// The stages in order: the first that leaves a diagnostic ends the load.
pub(super) fn resolve(
    doc: Value,
    text: &str,
    registry: &Registry,
    options: &LoadOptions,
    ctx: &mut Ctx<'_>,
    path: &Path,
    dir: &Path,
) -> Option<Workflow> {
    report_duplicates(ctx);
    let (top, profile, written_vars) = apply_overrides(doc, options, ctx)?;
    let (mut top, vars, mut secrets) = resolve_vars(top, ctx);
    let (instances, bindings, key_params) = expand_nodes(&top, &vars, text, &mut secrets, ctx);
    if !ctx.diags.is_empty() {
        return None;
    }
    top.insert("nodes".into(), Value::Object(instances));
    let (spec, limits) = typed_spec(top, options, ctx)?;
    let here = match options.hardware.map_or_else(Hardware::probe, Ok) {
        Ok(h) => h,
        Err(message) => {
            ctx.diags.push(
                Diagnostic::new(ErrorKind::Environment, message.to_string()).hint(Some(
                    "unset it to look for a GPU, or set it to `cpu` or `cuda`".into(),
                )),
            );
            return None;
        }
    };
    let (mut nodes, specs) = build_nodes(
        &spec,
        registry,
        here,
        &limits,
        &bindings,
        &key_params,
        &secrets,
        ctx,
    );
    if !ctx.diags.is_empty() {
        return None;
    }
    connect(&mut nodes, &specs, ctx);
    if !ctx.diags.is_empty() {
        return None;
    }
    let mut sorted = sort(nodes, ctx)?;
    warn_missing_files(&sorted, dir, ctx);
    super::memory::plan_memory(&mut sorted, dir, ctx);
    if !ctx.diags.is_empty() {
        return None;
    }
    Some(Workflow {
        name: spec.name.clone(),
        file: path.to_path_buf(),
        dir: dir.to_path_buf(),
        store: spec.store.clone(),
        trackers: spec.trackers.clone(),
        nodes: sorted,
        limits,
        profile,
        vars: written_vars,
        secrets,
        warnings: Vec::new(),
        source_text: text.into(),
    })
}

/// A warning for each local file a node reads that is not there: the run would fail when
/// it reaches the node, perhaps hours in. A warning, not an error: the file may be made
/// before then, or the workflow checked on another machine than the one that runs it.
fn warn_missing_files(nodes: &[Node], dir: &Path, ctx: &mut Ctx<'_>) {
    for n in nodes {
        for f in &n.signature.local_files {
            let path = dir.join(&f.path);
            if path.exists() {
                continue;
            }
            // `./x` and `a/./b` as `x` and `a/b`.
            let path: std::path::PathBuf = path
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect();
            ctx.warn(
                ErrorKind::MissingFile,
                &format!("nodes.{}.params.{}", n.id, f.param),
                format!(
                    "`{}` does not exist (looked for {}); `{}` will fail when it runs",
                    f.path,
                    path.display(),
                    n.id
                ),
                Some("paths are relative to the workflow file's folder".into()),
            );
        }
    }
}

/// Keys written twice (a node id twice is its own kind of error).
fn report_duplicates(ctx: &mut Ctx<'_>) {
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
}

/// `--set profile=NAME` and the other `--set`s applied to the document; returns its top
/// mapping, the profile applied and the variables as written.
fn apply_overrides(
    mut doc: Value,
    options: &LoadOptions,
    ctx: &mut Ctx<'_>,
) -> Option<(Map, Option<String>, Map)> {
    if !doc.is_object() {
        ctx.push(
            ErrorKind::Structure,
            "",
            "a workflow file is a mapping with `name:` and `nodes:`",
            Some("start the file with `name: my-experiment` and a `nodes:` mapping".into()),
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
        match apply_set(&mut doc, set) {
            Ok(path) => ctx.sets.push((path, set.clone())),
            Err(d) => ctx.diags.push(*d),
        }
    }
    let Value::Object(top) = doc else {
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

    Some((top, profile, written_vars))
}

/// Variables, with environment references resolved, and the top-level keys that may use
/// them; returns the top mapping, the variables and the secrets met on the way.
fn resolve_vars(mut top: Map, ctx: &mut Ctx<'_>) -> (Map, Map, Secrets) {
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
                ),
            }
        }
    }

    (top, vars, secrets)
}

/// Nodes: matrix expansion, then interpolation of each instance. Returns the instances by
/// id, each instance's base id and bindings, and its params with `${env.X}` as written.
fn expand_nodes(
    top: &Map,
    vars: &Map,
    text: &str,
    secrets: &mut Secrets,
    ctx: &mut Ctx<'_>,
) -> (Map, Bindings, HashMap<String, Value>) {
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
                );
            }
            for (id, raw) in nodes {
                let node_path = yaml::join("nodes", id);
                if !valid_id(id) {
                    ctx.push_at_key(
                        ErrorKind::InvalidId,
                        &node_path,
                        format!("node id `{id}` is not an identifier"),
                        Some(
                            "use letters, digits, `_` and `-`, starting with a letter or `_`"
                                .into(),
                        ),
                    );
                    continue;
                }
                let Value::Object(raw) = raw else {
                    ctx.push(
                        ErrorKind::InvalidType,
                        &node_path,
                        format!("node `{id}` must be a mapping with `kind:`"),
                        None,
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
                        vars: Some(vars),
                        matrix: matrix.iter().cloned().collect(),
                        keep_env: false,
                    };
                    let value = match interpolate(&body, &scope, secrets) {
                        Ok(v) => v,
                        Err(e) => {
                            ctx.push(
                                ErrorKind::UnsetVariable,
                                &yaml::join(&node_path, &e.path),
                                e.message,
                                e.hint,
                            );
                            continue;
                        }
                    };
                    if instances.contains_key(&inst_id) {
                        ctx.push_at_key(
                            ErrorKind::DuplicateNode,
                            &node_path,
                            format!("the matrix makes node `{inst_id}` twice"),
                            Some("remove the repeated matrix value".into()),
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
        ),
        None => ctx.push(
            ErrorKind::MissingField,
            "",
            "the workflow has no `nodes:`",
            Some("add `nodes:` with at least one node".into()),
        ),
    }
    (instances, bindings, key_params)
}

/// The typed spec, the store URL checked, and the run's resource limits.
fn typed_spec(
    top: Map,
    options: &LoadOptions,
    ctx: &mut Ctx<'_>,
) -> Option<(WorkflowSpec, BTreeMap<String, u32>)> {
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
            ctx.add(kind, &p, message, hint, at_key);
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
        );
    }
    let mut limits = spec.resources.clone();
    limits.extend(options.slots.clone());
    limits
        .entry("cpu".into())
        .or_insert_with(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));

    Some((spec, limits))
}

/// Plugins and params: each node's plugin found, its params checked, its resources
/// within the limits.
#[allow(clippy::too_many_arguments)]
fn build_nodes(
    spec: &WorkflowSpec,
    registry: &Registry,
    here: Hardware,
    limits: &BTreeMap<String, u32>,
    bindings: &Bindings,
    key_params: &HashMap<String, Value>,
    secrets: &Secrets,
    ctx: &mut Ctx<'_>,
) -> (Vec<Node>, Vec<NodeSpec>) {
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
            );
            continue;
        };
        let params = Value::Object(ns.params.clone());
        let executor = ns
            .executor
            .clone()
            .or_else(|| spec.executor.clone())
            .unwrap_or(ExecutorSpec::Local);
        // `auto` settles for the machine the node runs on: this one, or for a cluster job
        // the machine its resources ask for.
        let hardware = if executor.is_cluster() {
            Hardware {
                cuda: ns.resources.get("gpu").is_some_and(|n| *n > 0),
            }
        } else {
            here
        };
        let checked = match plugin.check_on(&params, hardware) {
            Ok(c) => c,
            Err(e) => {
                let p = if e.path.is_empty() {
                    format!("{base_path}.params")
                } else {
                    format!("{base_path}.params.{}", e.path)
                };
                let at_key = e.message.starts_with("unknown field");
                ctx.add(
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
        // A model node (its own worker process, libtorch's thread pools) takes every cpu slot
        // of the run unless it asks for fewer: two of them then run one after the other,
        // each with every core, rather than side by side oversubscribing the cores. A
        // cluster job asks its machine for what it needs instead.
        let cpu = if plugin.in_worker() && !executor.is_cluster() {
            limits.get("cpu").copied().unwrap_or(1)
        } else {
            1
        };
        resources.entry("cpu".into()).or_insert(cpu);
        if let Some(processes) = checked.signature.processes {
            super::processes::fit(
                id,
                &base_path,
                processes,
                &ns.resources,
                executor.is_cluster(),
                &mut resources,
                ctx,
            );
        }
        for (slot, need) in &resources {
            // A cluster job asks the cluster for its machine; this one's cores do not limit it.
            if executor.is_cluster() && crate::slurm::MACHINE_SLOTS.contains(&slot.as_str()) {
                continue;
            }
            match limits.get(slot) {
                Some(limit) if need > limit => ctx.push(
                    ErrorKind::Resources,
                    &format!("{base_path}.resources.{slot}"),
                    format!("node `{id}` needs {need} `{slot}` slot(s) but a run has {limit}"),
                    Some(format!("lower the need, or raise the limit with `resources: {{{slot}: {need}}}` or `--slots {slot}={need}`")),
                ),
                None => ctx.push_at_key(
                    ErrorKind::Resources,
                    &format!("{base_path}.resources.{slot}"),
                    format!("node `{id}` needs resource `{slot}`, which this run does not have"),
                    Some(format!("declare it at the top level, `resources: {{{slot}: N}}`, or pass `--slots {slot}=N`")),
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
            key_params: match key_params.get(id).map(|p| plugin.check_on(p, hardware)) {
                Some(Ok(kept)) => secrets.redact(&kept.params),
                _ => secrets.redact(&checked.params),
            },
            params: checked.params,
            signature: checked.signature,
            inputs: Vec::new(),
            resources,
            retries: ns.retries,
            seed: ns.seed.unwrap_or(spec.seed),
            executor,
            memory: None,
        });
        specs.push(ns.clone());
    }
    (nodes, specs)
}

/// References: each input's `from:` resolved to a producer and output, types checked, and
/// every required input connected.
fn connect(nodes: &mut [Node], specs: &[NodeSpec], ctx: &mut Ctx<'_>) {
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
            let Some((target, output)) = resolve_ref(&is.from, &nodes[i], nodes, &ids, ctx, &p)
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
                ctx.push_at_key(
                    ErrorKind::UnknownInput,
                    &format!("nodes.{node_id}.inputs.{input}"),
                    format!("`{}` has no input `{input}`", nodes[i].plugin.kind()),
                    hint,
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
                ctx.push_at_key(
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
                );
            }
        }
        nodes[i].inputs = edges;
    }
}

/// The DAG: nodes in topological order (a cycle is reported), edges renumbered.
fn sort(nodes: Vec<Node>, ctx: &mut Ctx<'_>) -> Option<Vec<Node>> {
    let order = match dag::topo_order(&deps_of(&nodes)) {
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
    Some(sorted)
}

/// Apply one `--set PATH=VALUE`; returns PATH.
fn apply_set(doc: &mut Value, set: &str) -> Result<String, Box<Diagnostic>> {
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
            break;
        }
        cur = map
            .entry((*k).to_owned())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    Ok(path.to_owned())
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
