//! Every workflow in `tests/bad/` is rejected with its expected message and exit code 2,
//! and nothing is written to the store.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{Project, text};
use std::path::Path;

#[test]
fn every_bad_workflow_gets_its_message_and_exit_2() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let expected = std::fs::read_to_string(dir.join("EXPECTED.txt")).expect("EXPECTED.txt");
    let mut listed = Vec::new();
    let project = Project::new();
    for line in expected
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let parts: Vec<&str> = line.split(" | ").map(str::trim).collect();
        let (file, code, needles) = (parts[0], parts[1], &parts[2..]);
        listed.push(file.to_owned());
        let store = project.path().join(format!("store-{file}"));
        for args in [vec!["validate", file], vec!["run", file, "--store"]] {
            let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
            if args[0] == "run" {
                args.push(format!("file://{}", store.display()));
            }
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_scorch"))
                .args(&args)
                .current_dir(&dir)
                .env("NO_COLOR", "1")
                .output()
                .expect("run scorch");
            let stderr = text(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{file}: {args:?} exit code\n{stderr}"
            );
            assert!(
                stderr.contains(&format!("scorch::workflow::{code}")),
                "{file}: code {code} missing in\n{stderr}"
            );
            for needle in needles {
                assert!(
                    stderr.contains(needle),
                    "{file}: `{needle}` missing in\n{stderr}"
                );
            }
            assert!(
                text(&out.stdout).is_empty(),
                "{file}: printed to stdout: {}",
                text(&out.stdout)
            );
        }
        assert!(
            !store.exists(),
            "{file}: the store was created by a workflow that does not load"
        );
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("tests/bad")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    on_disk.sort();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "every file in tests/bad has one line in EXPECTED.txt"
    );
    assert!(
        listed.len() >= 20,
        "the corpus has {} workflows",
        listed.len()
    );
}

#[test]
fn json_mode_reports_errors_as_data() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scorch"))
        .args(["validate", "unknown_plugin.yaml", "--json"])
        .current_dir(&dir)
        .output()
        .expect("run scorch");
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["code"], "unknown-plugin");
    assert_eq!(v["errors"][0]["path"], "nodes.twice.kind");
    assert_eq!(v["errors"][0]["line"], 5);
    assert_eq!(v["errors"][0]["hint"], "did you mean `affine`?");
}

#[test]
fn a_diagnostic_past_column_65535_is_printed_without_a_panic() {
    let p = common::Project::new();
    let pad = "x".repeat(70_000);
    let cases = [
        // Semantic: an unknown namespace at column ~70,000.
        (
            "semantic.yaml",
            format!(
                "name: long\nnodes:\n  nums:\n    kind: numbers\n    params: {{note: \"{pad}\", n: \"${{var.n}}\"}}\n"
            ),
            "unknown namespace `var`",
        ),
        // Syntax: an unclosed bracket at the end of a 70,000-column line.
        (
            "syntax.yaml",
            format!("name: long\nnodes:\n  nums: {{kind: numbers, params: {{note: {pad}\n"),
            "invalid YAML",
        ),
    ];
    for (file, text, expected) in cases {
        p.write(file, &text);
        let out = p.scorch(&["validate", file]);
        let err = common::text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{file}: {}",
            &err[..err.len().min(2000)]
        );
        assert!(
            err.contains(expected),
            "{file}: {}",
            &err[..err.len().min(2000)]
        );
        assert!(err.contains(&format!("{file}:")), "{file}: names the file");
        assert!(err.len() < 20_000, "{file}: the long line is not echoed");
    }
}
