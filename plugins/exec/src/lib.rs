//! The `exec` plugin: run an external command with its inputs and outputs as local paths,
//! so that tools written in any language can be workflow nodes.
//!
//! Placeholders in `command` and `env` values: `{inputs.NAME}` (a table's Parquet file,
//! or a blob set's directory), `{outputs.NAME}` (the Parquet file to write, or the
//! directory to fill), `{scratch}`, `{seed}`, `{workflow_dir}`. The same paths are also in
//! the environment as `SCORCH_INPUT_<NAME>`, `SCORCH_OUTPUT_<NAME>`, `SCORCH_SCRATCH` and
//! `SCORCH_SEED`. Relative paths run from the workflow file's directory. The command may
//! report metrics as it goes, as JSON lines appended to `$SCORCH_METRICS` (see `metrics`).
#![deny(missing_docs)]

mod folder;
mod metrics;
pub use folder::{Folder, FolderParams};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use std::time::Duration;

use schemars::JsonSchema;
use scorch_api::reexports::arrow_schema::{DataType, Field, Schema};
use scorch_api::reexports::async_trait;
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, PortType, Signature};
use serde::{Deserialize, Serialize};

/// The `exec` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exec;

/// What an exec port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PortKind {
    /// A Parquet table.
    Table,
    /// A directory of files.
    Blobs,
}

/// A column type of a declared output table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// 64-bit signed integer.
    Int64,
    /// 32-bit signed integer.
    Int32,
    /// 64-bit float.
    Float64,
    /// 32-bit float.
    Float32,
    /// UTF-8 string.
    Utf8,
    /// Large UTF-8 string.
    LargeUtf8,
    /// Boolean.
    Bool,
}

impl ColumnType {
    fn data_type(self) -> DataType {
        match self {
            Self::Int64 => DataType::Int64,
            Self::Int32 => DataType::Int32,
            Self::Float64 => DataType::Float64,
            Self::Float32 => DataType::Float32,
            Self::Utf8 => DataType::Utf8,
            Self::LargeUtf8 => DataType::LargeUtf8,
            Self::Bool => DataType::Boolean,
        }
    }
}

/// A declared output.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputDecl {
    /// Table or blobs.
    #[serde(rename = "type")]
    pub kind: PortKind,
    /// For tables: columns the command must write (more are allowed), with their types.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, ColumnType>,
}

/// Params of `exec`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The program and its arguments; placeholders are replaced.
    pub command: Vec<String>,
    /// Extra environment variables; placeholders are replaced.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Inputs that are blob sets; every other input is a table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blob_inputs: Vec<String>,
    /// Outputs the command writes.
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputDecl>,
    /// Kill the command after this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[async_trait]
impl Plugin for Exec {
    type Params = ExecParams;
    fn kind(&self) -> &'static str {
        "exec"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "Runs an external command with its inputs and outputs as local Parquet files and folders"
    }
    fn signature(&self, p: &ExecParams) -> Result<Signature, ParamError> {
        if p.command.first().is_none_or(|c| c.trim().is_empty()) {
            return Err(
                ParamError::new("command", "the command is empty").with_hint(
                    "give the program and its arguments as a list, e.g. [python3, tool.py]",
                ),
            );
        }
        if let Some(t) = p.timeout_s
            && !(t.is_finite() && t > 0.0)
        {
            return Err(ParamError::new(
                "timeout_s",
                format!("{t} is not a positive number of seconds"),
            ));
        }
        for (i, arg) in p.command.iter().enumerate() {
            for key in placeholders(arg) {
                if let Some(out) = key.strip_prefix("outputs.")
                    && !p.outputs.contains_key(out)
                {
                    return Err(ParamError::new(
                        format!("command[{i}]"),
                        format!("`{{{key}}}` is not a declared output"),
                    )
                    .with_hint(format!("declare it: `outputs: {{{out}: {{type: table}}}}`")));
                }
            }
        }
        let mut sig = Signature::new().extra_inputs(PortType::any_table());
        for name in &p.blob_inputs {
            sig = sig.input(name, PortType::Blobs);
        }
        for (name, decl) in &p.outputs {
            if !valid_name(name) {
                return Err(ParamError::new(
                    format!("outputs.{name}"),
                    "output names use letters, digits, `_` and `-`",
                ));
            }
            let ty = match decl.kind {
                PortKind::Blobs if !decl.columns.is_empty() => {
                    return Err(ParamError::new(
                        format!("outputs.{name}.columns"),
                        "a blob set has no columns",
                    ));
                }
                PortKind::Blobs => PortType::Blobs,
                PortKind::Table if decl.columns.is_empty() => PortType::any_table(),
                PortKind::Table => PortType::table(Schema::new(
                    decl.columns
                        .iter()
                        .map(|(c, t)| Field::new(c, t.data_type(), true))
                        .collect::<Vec<_>>(),
                )),
            };
            sig = sig.output(name, ty);
        }
        Ok(sig)
    }

    async fn run(&self, p: ExecParams, ctx: &NodeContext) -> Result<(), PluginError> {
        ctx.check_cancelled()?;
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let mut env: Vec<(String, String)> = Vec::new();
        let names: Vec<String> = ctx.input_names().map(str::to_owned).collect();
        for name in names {
            let path = if p.blob_inputs.contains(&name) {
                ctx.blobs(&name)?.to_path_buf()
            } else {
                let paths = ctx.table(&name)?.local_paths().await?;
                paths
                    .into_iter()
                    .next()
                    .ok_or_else(|| PluginError::failed(format!("input `{name}` has no file")))?
            };
            let path = path.display().to_string();
            env.push((format!("SCORCH_INPUT_{}", env_name(&name)), path.clone()));
            vars.insert(format!("inputs.{name}"), path);
        }
        for (name, decl) in &p.outputs {
            let path = match decl.kind {
                PortKind::Table => ctx.table_output_path(name)?,
                PortKind::Blobs => ctx.blob_dir(name)?,
            };
            let path = path.display().to_string();
            env.push((format!("SCORCH_OUTPUT_{}", env_name(name)), path.clone()));
            vars.insert(format!("outputs.{name}"), path);
        }
        let scratch = ctx.scratch_dir().display().to_string();
        vars.insert("scratch".into(), scratch.clone());
        vars.insert("seed".into(), ctx.seed().to_string());
        vars.insert(
            "workflow_dir".into(),
            ctx.workflow_dir().display().to_string(),
        );
        let mut metrics =
            metrics::MetricsFile::new(ctx.scratch_dir().join("metrics.jsonl"), ctx.log_file());
        env.push((
            "SCORCH_METRICS".into(),
            metrics.path().display().to_string(),
        ));
        env.push(("SCORCH_SCRATCH".into(), scratch));
        env.push(("SCORCH_SEED".into(), ctx.seed().to_string()));
        let argv: Vec<String> = p
            .command
            .iter()
            .map(|a| substitute(a, &vars))
            .collect::<Result<_, _>>()?;
        for (k, v) in &p.env {
            env.push((k.clone(), substitute(v, &vars)?));
        }
        // The command's output is the node's log (kept with the run: `scorch logs`).
        let log_path = ctx.log_file().to_path_buf();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| PluginError::io("opening the node's log", e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| PluginError::io("opening the node's log", e))?;
        let program = resolve_program(&argv[0], ctx.workflow_dir());
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&argv[1..])
            .current_dir(ctx.workflow_dir())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            PluginError::failed(format!("cannot start `{}`: {e}", argv[0])).with_source(e)
        })?;
        let timeout = p
            .timeout_s
            .map(Duration::from_secs_f64)
            .unwrap_or(Duration::MAX);
        let progress = ctx.progress_handle();
        let status = tokio::select! {
            s = child.wait() => s.map_err(|e| PluginError::io("waiting for the command", e))?,
            never = metrics.follow(progress.as_ref()) => match never {},
            () = ctx.cancellation().cancelled() => {
                let _ = child.kill().await;
                return Err(PluginError::cancelled());
            }
            () = sleep_or_forever(timeout) => {
                let _ = child.kill().await;
                return Err(PluginError::failed(format!("`{}` ran past its {:?} timeout", argv[0], timeout)));
            }
        };
        metrics.read_new(progress.as_ref());
        if !status.success() {
            let tail = ctx.log_tail(20);
            return Err(PluginError::failed(format!(
                "`{}` exited with {status}; its last output:\n{tail}",
                argv.join(" ")
            )));
        }
        Ok(())
    }
}

async fn sleep_or_forever(d: Duration) {
    if d == Duration::MAX {
        std::future::pending::<()>().await;
    } else {
        tokio::time::sleep(d).await;
    }
}

fn resolve_program(program: &str, dir: &Path) -> PathBuf {
    let p = Path::new(program);
    if p.components().count() > 1 && p.is_relative() {
        dir.join(p)
    } else {
        p.to_path_buf()
    }
}

fn env_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether `key` has the shape of a placeholder (`inputs.NAME`, `outputs.NAME`, `scratch`,
/// `seed`, `workflow_dir`). Other `{...}` text, such as a Python f-string, is left alone.
fn is_placeholder(key: &str) -> bool {
    match key.split_once('.') {
        Some(("inputs" | "outputs", name)) => valid_name(name),
        Some(_) => false,
        None => matches!(key, "scratch" | "seed" | "workflow_dir"),
    }
}

/// The placeholders used in `text`.
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('{').filter_map(move |(i, _)| {
        let rest = &text[i + 1..];
        let end = rest.find('}')?;
        let key = &rest[..end];
        is_placeholder(key).then_some(key)
    })
}

/// Replace placeholders in `text`.
fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, PluginError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let key = tail[1..]
            .find('}')
            .map(|end| &tail[1..=end])
            .filter(|k| is_placeholder(k));
        match key {
            Some(key) => {
                let value = vars.get(key).ok_or_else(|| {
                    PluginError::failed(format!(
                        "placeholder `{{{key}}}` names an input that is not connected"
                    ))
                })?;
                out.push_str(value);
                rest = &tail[key.len() + 2..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution() {
        let mut vars = BTreeMap::new();
        vars.insert("inputs.a".to_owned(), "/x/a.parquet".to_owned());
        assert_eq!(
            substitute("--in={inputs.a}", &vars).unwrap(),
            "--in=/x/a.parquet"
        );
        assert_eq!(
            substitute("f'{a[1]}' {x} {", &vars).unwrap(),
            "f'{a[1]}' {x} {"
        );
        let err = substitute("{inputs.b}", &vars).unwrap_err();
        assert!(
            err.message
                .contains("`{inputs.b}` names an input that is not connected"),
            "{err}"
        );
        assert_eq!(
            placeholders("{outputs.t}/{x}{seed}").collect::<Vec<_>>(),
            vec!["outputs.t", "seed"]
        );
    }
}
