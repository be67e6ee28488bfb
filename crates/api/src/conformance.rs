//! The conformance suite every plugin crate runs against its plugins.
//!
//! ```no_run
//! # async fn f(plugin: impl scorch_api::DynPlugin) {
//! use scorch_api::conformance::{Case, check_plugin};
//! let report = check_plugin(&plugin, &[Case::new("defaults", serde_json::json!({}))]).await;
//! assert!(report.is_ok(), "{report:?}");
//! # }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use crate::testing::{RunOptions, TestInput, run_plugin};
use crate::{DynPlugin, PluginErrorKind};

/// One configuration to exercise.
#[derive(Debug, Clone)]
pub struct Case {
    /// A name for failure messages.
    pub name: String,
    /// Params as a workflow would give them.
    pub params: serde_json::Value,
    /// Inputs by name.
    pub inputs: BTreeMap<String, TestInput>,
    /// The workflow directory the node sees.
    pub workflow_dir: Option<std::path::PathBuf>,
}

impl Case {
    /// A case without inputs.
    pub fn new(name: &str, params: serde_json::Value) -> Self {
        Self {
            name: name.to_owned(),
            params,
            inputs: BTreeMap::new(),
            workflow_dir: None,
        }
    }
    /// Add an input.
    pub fn input(mut self, name: &str, input: TestInput) -> Self {
        self.inputs.insert(name.to_owned(), input);
        self
    }
    /// Set the workflow directory.
    pub fn in_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.workflow_dir = Some(dir.into());
        self
    }
}

/// The clauses of the contract a plugin broke; empty when it conforms.
#[derive(Debug, Default)]
pub struct Report {
    /// One sentence per failed check.
    pub failures: Vec<String>,
}

impl Report {
    /// Whether every check passed.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

fn valid_kind(kind: &str) -> bool {
    let mut chars = kind.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Check `plugin` against the [`Plugin`](crate::Plugin) contract on each case.
pub async fn check_plugin(plugin: &dyn DynPlugin, cases: &[Case]) -> Report {
    let mut report = Report::default();
    let mut fail = |msg: String| report.failures.push(msg);
    if !valid_kind(plugin.kind()) {
        fail(format!(
            "kind `{}` is not lowercase [a-z][a-z0-9_-]*",
            plugin.kind()
        ));
    }
    if plugin.version().trim().is_empty() {
        fail("version is empty".into());
    }
    if plugin.description().trim().is_empty() {
        fail("description is empty".into());
    }
    if !plugin.params_schema().is_object() {
        fail("params schema is not a JSON object".into());
    }
    if cases.is_empty() {
        fail("no case given to the conformance suite".into());
    }
    for case in cases {
        let name = &case.name;
        let checked = match plugin.check(&case.params) {
            Ok(c) => c,
            Err(e) => {
                fail(format!("[{name}] params rejected: {e}"));
                continue;
            }
        };
        match plugin.check(&checked.params) {
            Ok(again) if again.params == checked.params => {}
            Ok(_) => fail(format!(
                "[{name}] canonical params are not stable under a second check"
            )),
            Err(e) => fail(format!("[{name}] canonical params are rejected: {e}")),
        }
        for hardware in [crate::Hardware::CPU, crate::Hardware::CUDA] {
            let settled = match plugin.check_on(&checked.params, hardware) {
                Ok(s) => s,
                Err(e) => {
                    fail(format!(
                        "[{name}] params settled for {hardware:?} are rejected: {e}"
                    ));
                    continue;
                }
            };
            match plugin.check_on(&settled.params, hardware) {
                Ok(again) if again.params == settled.params => {}
                _ => fail(format!(
                    "[{name}] params settled for {hardware:?} change when settled again"
                )),
            }
        }
        if let serde_json::Value::Object(map) = &checked.params {
            let mut with_unknown = map.clone();
            with_unknown.insert("__conformance_unknown_field__".into(), serde_json::json!(1));
            if plugin
                .check(&serde_json::Value::Object(with_unknown))
                .is_ok()
            {
                fail(format!(
                    "[{name}] an unknown params field is accepted (use deny_unknown_fields)"
                ));
            }
        }
        for input in &checked.signature.inputs {
            if !input.optional && !case.inputs.contains_key(&input.name) {
                fail(format!(
                    "[{name}] the case does not give required input `{}`",
                    input.name
                ));
            }
        }
        let opts = RunOptions {
            seed: 7,
            cancelled: false,
            workflow_dir: case.workflow_dir.clone(),
        };
        let first = run_plugin(plugin, &case.params, case.inputs.clone(), opts.clone()).await;
        let second = run_plugin(plugin, &case.params, case.inputs.clone(), opts).await;
        match (first, second) {
            (Ok(a), Ok(b)) => {
                let declared: Vec<_> = checked
                    .signature
                    .outputs
                    .iter()
                    .map(|o| o.name.clone())
                    .collect();
                let written: Vec<_> = a.digests.keys().cloned().collect();
                let mut declared_sorted = declared.clone();
                declared_sorted.sort();
                if written != declared_sorted {
                    fail(format!(
                        "[{name}] wrote outputs {written:?}, declared {declared:?}"
                    ));
                }
                if a.digests != b.digests {
                    fail(format!(
                        "[{name}] two runs with the same seed wrote different bytes"
                    ));
                }
            }
            (Err(e), _) | (_, Err(e)) => fail(format!("[{name}] run failed: {e}")),
        }
        let cancelled = tokio::time::timeout(
            Duration::from_secs(30),
            run_plugin(
                plugin,
                &case.params,
                case.inputs.clone(),
                RunOptions {
                    seed: 7,
                    cancelled: true,
                    workflow_dir: case.workflow_dir.clone(),
                },
            ),
        )
        .await;
        match cancelled {
            Err(_) => fail(format!(
                "[{name}] a cancelled run did not return within 30 s"
            )),
            Ok(Err(e)) if e.kind != PluginErrorKind::Cancelled => fail(format!(
                "[{name}] a cancelled run failed with `{e}` instead of a cancellation"
            )),
            Ok(_) => {}
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::valid_kind;

    #[test]
    fn kinds() {
        assert!(valid_kind("rollout"));
        assert!(valid_kind("eval-2_x"));
        assert!(!valid_kind("Rollout"));
        assert!(!valid_kind("2x"));
        assert!(!valid_kind(""));
        assert!(!valid_kind("a.b"));
    }
}
