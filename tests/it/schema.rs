//! `schemas/workflow.schema.json` is generated from the Rust types; this fails when the
//! committed file is out of date (regenerate with `scorch schema > schemas/workflow.schema.json`).

#![allow(clippy::unwrap_used)]

use std::path::Path;

#[test]
fn the_committed_workflow_schema_is_up_to_date() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/workflow.schema.json");
    let committed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file")).expect("json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scorch"))
        .arg("schema")
        .output()
        .expect("scorch schema");
    let generated: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        generated,
        scorch_engine::schema::workflow_schema(&scorch::builtin::registry())
    );
    assert!(
        committed == generated,
        "schemas/workflow.schema.json is stale: run `cargo run -- schema > schemas/workflow.schema.json`"
    );
    for key in ["name", "vars", "store", "seed", "resources", "nodes"] {
        assert!(
            generated["properties"].get(key).is_some(),
            "property {key} missing"
        );
    }
}

#[test]
fn the_committed_table_schemas_are_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/tables");
    for (kind, schema) in scorch_tables::table_schemas() {
        let path = dir.join(format!("{kind}.schema.json"));
        let committed: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{} is missing", path.display())),
        )
        .expect("json");
        assert!(
            committed == schema,
            "{} is stale: run `scorch schema --table {kind} > {}`",
            path.display(),
            path.display()
        );
    }
    assert_eq!(
        std::fs::read_dir(&dir).expect("schemas/tables").count(),
        scorch_tables::table_schemas().len(),
        "one file per table kind"
    );
}

#[test]
fn every_workflow_in_the_repo_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![root.join("workflows"), root.join("examples")];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_scorch"))
                    .args(["validate", &p.display().to_string()])
                    .env("NO_COLOR", "1")
                    .output()
                    .expect("scorch validate");
                assert!(
                    out.status.success(),
                    "{}:\n{}",
                    p.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 1, "no workflow found under workflows/");
}

/// The language server of VS Code's YAML extension (and Neovim's, Helix's), as `scripts/setup`
/// installs it.
fn yaml_language_server() -> std::path::PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME").map_or_else(
        || Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cache"),
        std::path::PathBuf::from,
    );
    let server =
        cache.join("scorch-tools/node_modules/yaml-language-server/bin/yaml-language-server");
    assert!(
        server.exists(),
        "{} is missing: run scripts/setup",
        server.display()
    );
    server
}

#[test]
fn an_editor_checks_and_completes_node_params_with_the_committed_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    // Beside the schema, as the README's first-line setup has it for the repo's workflows.
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::copy(
        root.join("schemas/workflow.schema.json"),
        dir.path().join("schemas/workflow.schema.json"),
    )
    .unwrap();
    let mut files = Vec::new();
    for rel in [
        "workflows/score.yaml",
        "workflows/real/qwen-vllm.yaml",
        "workflows/real/slurm-qwen.yaml",
    ] {
        let to = dir.path().join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(rel), &to).unwrap();
        files.push(rel.to_owned());
    }
    std::fs::write(
        dir.path().join("workflows/bad.yaml"),
        r#"# yaml-language-server: $schema=../schemas/workflow.schema.json
name: bad
vars: {n: 3, precision: bf16}
nodes:
  tasks: {kind: tasks, params: {count: "${vars.n}"}}
  train:
    kind: sft
    params:
      epochs: 3
      steps: abc
      lr: 1e-4
      precision: "${vars.precision}"
    inputs: {trajectories: {from: tasks.tasks}}
  other: {kind: sfx}
  typing:
    kind: rl
    params:
      st
"#,
    )
    .unwrap();
    files.push("workflows/bad.yaml".into());
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/py/yaml_ls_check.py"))
        .arg(yaml_language_server())
        .arg(dir.path())
        .args(&files)
        .args(["--complete", "workflows/bad.yaml:18:8"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let messages = |file: &str| -> Vec<(u64, String)> {
        got["diagnostics"][file]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["line"].as_u64().unwrap(),
                    d["message"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    // The repo's workflows, `${vars.…}` in typed params included, are clean.
    assert_eq!(messages("workflows/score.yaml"), vec![]);
    assert_eq!(messages("workflows/real/qwen-vllm.yaml"), vec![]);
    assert_eq!(messages("workflows/real/slurm-qwen.yaml"), vec![]);
    let bad = messages("workflows/bad.yaml");
    let on = |line: u64| -> String {
        bad.iter()
            .filter(|(l, _)| *l == line)
            .map(|(_, m)| m.clone())
            .collect::<Vec<_>>()
            .join(" / ")
    };
    assert!(on(9).contains("epochs"), "an unknown param: {bad:?}");
    assert!(
        on(10).contains("integer"),
        "a param of the wrong type: {bad:?}"
    );
    assert_eq!(on(11), "", "1e-4 is a number: {bad:?}");
    assert_eq!(on(12), "", "a reference where an enum goes: {bad:?}");
    assert!(
        on(14).contains("\"sft\""),
        "an unknown kind, with the kinds: {bad:?}"
    );
    let labels: Vec<&str> = got["completions"]["workflows/bad.yaml:18:8"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    for param in ["steps", "group_size", "prompts_per_step", "lr", "sampling"] {
        assert!(labels.contains(&param), "rl's {param} offered: {labels:?}");
    }
    assert!(
        !labels.contains(&"batch_size"),
        "not sft's params: {labels:?}"
    );
}

#[test]
fn plugins_kind_lists_each_param_with_type_default_and_description() {
    let scorch = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_scorch"))
            .args(args)
            .output()
            .expect("scorch")
    };
    let out = scorch(&["plugins", "sft"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("sft v"), "{text}");
    assert!(text.contains(": Trains a checkpoint"), "{text}");
    assert!(
        text.contains("  steps: integer ≥ 0  (default: 300)\n      Optimiser steps.\n"),
        "{text}"
    );
    assert!(
        text.contains("  precision: auto | f32 | bf16  (optional)"),
        "{text}"
    );
    assert!(text.contains("  init.vocab_size: integer ≥ 0"), "{text}");
    assert!(
        text.contains("outputs (with default params):\n  checkpoint     blob set"),
        "{text}"
    );
    let text = String::from_utf8_lossy(&scorch(&["plugins", "correct"]).stdout).into_owned();
    assert!(
        text.contains("  teacher: {kind: oracle} | {kind: endpoint}  (default: {kind: oracle})"),
        "{text}"
    );
    assert!(
        text.contains("  teacher.base_url: string  (required)\n      (kind: endpoint) Base URL"),
        "{text}"
    );
    let text = String::from_utf8_lossy(&scorch(&["plugins", "exec"]).stdout).into_owned();
    assert!(
        text.contains("  command: list of string  (required)"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&scorch(&["plugins", "rl", "--json"]).stdout).unwrap();
    let steps = json["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "steps")
        .unwrap();
    assert_eq!(steps["type"], "integer ≥ 0");
    assert!(steps["default"].is_u64(), "{steps}");
    let out = scorch(&["plugins", "sfx"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no node kind `sfx`; did you mean `sft`?")
    );
}
