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
    assert_eq!(generated, scorch_engine::spec::workflow_schema());
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
    for (kind, schema) in scorch_api::tables::table_schemas() {
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
        scorch_api::tables::table_schemas().len(),
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
