use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Hardware, NodeContext, ParamError, PluginError, Signature};

/// A node kind.
///
/// # Contract
///
/// - [`kind`](Plugin::kind) is a stable identifier: lowercase ASCII letters, digits, `_`
///   and `-`, starting with a letter. [`version`](Plugin::version) changes whenever the
///   plugin's outputs for the same params and inputs may change; it is part of every
///   cache key, so bumping it invalidates cached results of this kind.
/// - `Params` rejects unknown fields (`#[serde(deny_unknown_fields)]`) and fills defaults,
///   so that two spellings of the same configuration serialise to the same canonical
///   params. An empty params object must deserialise when every field has a default.
/// - [`signature`](Plugin::signature) is a pure function of the params. It names every
///   input the plugin reads and every output it writes.
/// - [`run`](Plugin::run) writes every declared output exactly once through the
///   context, and nothing else outside the context's scratch directory. For the same
///   params, input contents and [`NodeContext::seed`] it writes the same bytes: the engine
///   relies on this for early cutoff.
/// - `run` returns promptly with [`PluginError::cancelled`] once
///   [`NodeContext::cancellation`] fires. A run that fails or is cancelled leaves nothing
///   visible: the engine discards its staged outputs.
/// - CPU-heavy work runs off the async threads, through [`NodeContext::blocking`].
///
/// The [`conformance`](crate::conformance) suite checks what of this can be checked
/// mechanically; every plugin crate runs it.
#[async_trait]
pub trait Plugin: Send + Sync + 'static {
    /// The typed parameters, as written under a node's `params:`.
    type Params: DeserializeOwned + Serialize + JsonSchema + Send + Sync + 'static;

    /// The node kind named in workflow files.
    fn kind(&self) -> &'static str;
    /// The plugin's version; part of every cache key.
    fn version(&self) -> &'static str;
    /// One line saying what the node does.
    fn description(&self) -> &'static str;
    /// The inputs and outputs of a node configured with `params`.
    fn signature(&self, params: &Self::Params) -> Result<Signature, ParamError>;
    /// Settle what `params` leave to the machine for a node that runs on `hardware`; see
    /// [`Declaration::settle`].
    fn settle(&self, _params: &mut Self::Params, _hardware: Hardware) {}
    /// Do the work.
    async fn run(&self, params: Self::Params, ctx: &NodeContext) -> Result<(), PluginError>;
}

/// What a node kind takes and gives, without the work: all the engine needs to type-check a
/// workflow and compute cache keys. A kind whose work needs heavy libraries (libtorch) is
/// declared in a crate without them, so that a binary can check workflows of that kind
/// without linking what runs it, and run it in a worker process.
///
/// # Contract
///
/// The same as [`Plugin`]'s for `kind`, `version`, `Params` and `signature`; a plugin that
/// implements a declared kind returns exactly the declaration's values.
pub trait Declaration: Send + Sync + 'static {
    /// The typed parameters, as written under a node's `params:`.
    type Params: DeserializeOwned + Serialize + JsonSchema + Send + Sync + 'static;
    /// The node kind named in workflow files.
    fn kind(&self) -> &'static str;
    /// The kind's version; part of every cache key.
    fn version(&self) -> &'static str;
    /// One line saying what the node does.
    fn description(&self) -> &'static str;
    /// The inputs and outputs of a node configured with `params`.
    fn signature(&self, params: &Self::Params) -> Result<Signature, ParamError>;
    /// Settle what `params` leave to the machine (`device: auto`, `precision: auto`) for a
    /// node that runs on `hardware`: the engine calls this before it computes the cache key
    /// and runs the plugin with the result, so the key says what ran (see
    /// [`hardware`](crate::hardware)). Settled params must check again unchanged, and a param
    /// that the node does not use is best left as written (its key then does not depend on
    /// the machine). The default settles nothing.
    fn settle(&self, _params: &mut Self::Params, _hardware: Hardware) {}
}

/// The work of a kind declared elsewhere: a [`Declaration`] in a crate without the work's
/// heavy dependencies. Such a plugin is a [`Plugin`] whose kind, version, description, params
/// and ports are exactly its declaration's; it writes only [`run`](DeclaredPlugin::run).
#[async_trait]
pub trait DeclaredPlugin: Send + Sync + 'static {
    /// The declaration it implements.
    type Declared: Declaration + Default;
    /// Do the work; see [`Plugin::run`].
    async fn run(
        &self,
        params: <Self::Declared as Declaration>::Params,
        ctx: &NodeContext,
    ) -> Result<(), PluginError>;
}

#[async_trait]
impl<P: DeclaredPlugin> Plugin for P {
    type Params = <P::Declared as Declaration>::Params;
    fn kind(&self) -> &'static str {
        P::Declared::default().kind()
    }
    fn version(&self) -> &'static str {
        P::Declared::default().version()
    }
    fn description(&self) -> &'static str {
        P::Declared::default().description()
    }
    fn signature(&self, params: &Self::Params) -> Result<Signature, ParamError> {
        P::Declared::default().signature(params)
    }
    fn settle(&self, params: &mut Self::Params, hardware: Hardware) {
        P::Declared::default().settle(params, hardware);
    }
    async fn run(&self, params: Self::Params, ctx: &NodeContext) -> Result<(), PluginError> {
        DeclaredPlugin::run(self, params, ctx).await
    }
}

/// Type-check `params` as `T`, compute the signature, and serialise them back with their
/// defaults filled in: what [`DynPlugin::check`] does for a plugin or a declaration.
pub fn check_params<T: DeserializeOwned + Serialize>(
    params: &serde_json::Value,
    signature: impl FnOnce(&T) -> Result<Signature, ParamError>,
) -> Result<Checked, ParamError> {
    let typed: T = parse_params(params)?;
    let signature = signature(&typed)?;
    let params = serde_json::to_value(&typed)
        .map_err(|e| ParamError::new("", format!("params do not serialise: {e}")))?;
    Ok(Checked { params, signature })
}

/// Type-check `params` as `T`, apply `settle` ([`Declaration::settle`]) and serialise the
/// result: what [`DynPlugin::check_on`] checks.
pub fn settle_params<T: DeserializeOwned + Serialize>(
    params: &serde_json::Value,
    settle: impl FnOnce(&mut T),
) -> Result<serde_json::Value, ParamError> {
    let mut typed: T = parse_params(params)?;
    settle(&mut typed);
    serde_json::to_value(&typed)
        .map_err(|e| ParamError::new("", format!("params do not serialise: {e}")))
}

/// Type-check params that passed [`check_params`] again before running (they came through
/// the engine or a worker's job file).
pub fn parse_checked<T: DeserializeOwned>(params: &serde_json::Value) -> Result<T, PluginError> {
    parse_params(params)
        .map_err(|e| PluginError::failed(format!("params no longer type-check: {e}")))
}

/// A parameter object checked against a plugin's declaration.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The params after deserialisation and re-serialisation: defaults filled in.
    pub params: serde_json::Value,
    /// The node's inputs and outputs.
    pub signature: Signature,
}

/// The object-safe face of a [`Plugin`], as the engine holds it.
#[async_trait]
pub trait DynPlugin: Send + Sync + 'static {
    /// See [`Plugin::kind`].
    fn kind(&self) -> &'static str;
    /// See [`Plugin::version`].
    fn version(&self) -> &'static str;
    /// See [`Plugin::description`].
    fn description(&self) -> &'static str;
    /// JSON Schema of the params.
    fn params_schema(&self) -> serde_json::Value;
    /// Type-check `params` and compute the signature.
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError>;
    /// Type-check `params`, settle them for `hardware` ([`Plugin::settle`]) and check the
    /// result: what a node on `hardware` runs with, and its cache key is made of.
    fn check_on(
        &self,
        params: &serde_json::Value,
        hardware: Hardware,
    ) -> Result<Checked, ParamError>;
    /// Whether its nodes run in a worker process of their own (model kinds): the engine
    /// then gives such a node every cpu slot of the run unless it asks for fewer, and the
    /// worker's compute as many threads as it was granted.
    fn in_worker(&self) -> bool {
        false
    }
    /// Run with params that passed [`check`](DynPlugin::check).
    async fn run_json(
        &self,
        params: &serde_json::Value,
        ctx: &NodeContext,
    ) -> Result<(), PluginError>;
}

fn parse_params<T: DeserializeOwned>(params: &serde_json::Value) -> Result<T, ParamError> {
    let value = if params.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        params.clone()
    };
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = err.inner().to_string();
        let hint = unknown_field_hint(&message);
        let mut e = ParamError::new(path, message);
        e.hint = hint;
        e
    })
}

/// For serde's "unknown field `x`, expected one of `a`, `b`": "did you mean `a`?".
pub fn unknown_field_hint(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown variant `"))?;
    let (field, rest) = rest.split_once('`')?;
    let candidates: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    did_you_mean(field, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The candidate closest to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= c.len().max(word.len()) / 3 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[async_trait]
impl<P: Plugin> DynPlugin for P {
    fn kind(&self) -> &'static str {
        Plugin::kind(self)
    }
    fn version(&self) -> &'static str {
        Plugin::version(self)
    }
    fn description(&self) -> &'static str {
        Plugin::description(self)
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(P::Params)).unwrap_or_default()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        check_params(params, |p: &P::Params| self.signature(p))
    }
    fn check_on(
        &self,
        params: &serde_json::Value,
        hardware: Hardware,
    ) -> Result<Checked, ParamError> {
        let settled = settle_params(params, |p: &mut P::Params| self.settle(p, hardware))?;
        self.check(&settled)
    }
    async fn run_json(
        &self,
        params: &serde_json::Value,
        ctx: &NodeContext,
    ) -> Result<(), PluginError> {
        self.run(parse_checked(params)?, ctx).await
    }
}

/// The plugins a binary knows, by kind.
#[derive(Clone, Default)]
pub struct Registry {
    plugins: BTreeMap<&'static str, Arc<dyn DynPlugin>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.plugins.keys()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a plugin; a later plugin of the same kind replaces an earlier one.
    pub fn with(mut self, plugin: impl DynPlugin) -> Self {
        self.plugins.insert(plugin.kind(), Arc::new(plugin));
        self
    }
    /// The plugin of `kind`.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn DynPlugin>> {
        self.plugins.get(kind)
    }
    /// All kinds, sorted.
    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.plugins.keys().copied()
    }
    /// All plugins, sorted by kind.
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<dyn DynPlugin>> + '_ {
        self.plugins.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_hint_picks_the_closest_name() {
        let msg = "unknown field `sedd`, expected one of `n`, `seed`, `scale`";
        assert_eq!(
            unknown_field_hint(msg).as_deref(),
            Some("did you mean `seed`?")
        );
        assert_eq!(
            unknown_field_hint("unknown field `zzzzzz`, expected `n`"),
            None
        );
        assert_eq!(unknown_field_hint("invalid type: string"), None);
    }
}
