//! The experiment's smoke profile end to end: `workflows/experiments/score-vs-bc.yaml` runs
//! every arm over three seeds on the same tasks, the baselines get the size and the teacher
//! cost they are defined by, and `scorch compare` writes the table with intervals, the paired
//! tests and the figures.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::Project;

fn metric(rec: &serde_json::Value, node: &str, name: &str) -> f64 {
    common::node(rec, node)["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name && m["step"].is_null())
        .unwrap_or_else(|| panic!("{node}: no metric {name}"))["value"]
        .as_f64()
        .unwrap()
}

#[test]
fn the_experiment_smoke_profile_compares_every_arm() {
    let p = Project::new();
    let wf =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workflows/experiments/score-vs-bc.yaml");
    let wf = wf.display().to_string();
    let rec = p.run_json(&[&wf, "--set", "profile=smoke", "-j", "2"], 0);
    assert_eq!(rec["status"], "succeeded");
    for seed in 1..=3 {
        // BC at equal cost: within the repairs' teacher steps, short of them by less than one
        // demonstration (at most 8 steps with the turn limit).
        let spent = metric(&rec, &format!("mentored[seed={seed}]"), "teacher_steps");
        let used = metric(&rec, &format!("bc_cost_data[seed={seed}]"), "teacher_steps");
        assert!(
            used <= spent && used > spent - 8.0,
            "seed {seed}: {used} of {spent}"
        );
    }

    let id = rec["id"].as_str().unwrap();
    let out = p.scorch(&[
        "compare",
        id,
        "--baseline",
        "bc_equal_cost",
        "--gap",
        "warm_start,teacher",
        "--out",
        "cmp",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    assert!(
        common::text(&out.stdout).contains("| share of the gap closed |"),
        "{}",
        common::text(&out.stdout)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("cmp/compare.json")).unwrap()).unwrap();
    let arms = json.as_array().unwrap();
    assert_eq!(arms.len(), 7, "seven arms on `test`");
    // The share of the warm start -> teacher gap each arm closes, from the means.
    let mean = |arm: &str, split: &str| {
        arms.iter()
            .find(|a| a["arm"] == arm && a["split"] == split)
            .unwrap()["mean"]
            .as_f64()
            .unwrap()
    };
    for a in arms {
        let split = a["split"].as_str().unwrap();
        let (from, to) = (mean("warm_start", split), mean("teacher", split));
        assert!(to > from, "the smoke warm start is below the teacher");
        let want = (a["mean"].as_f64().unwrap() - from) / (to - from);
        let got = a["gap_closed"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{}: {got} vs {want}", a["arm"]);
    }
    // An arm the run does not have is a usage error that names the arms it has.
    let out = p.scorch(&["compare", id, "--gap", "warm,teacher", "--out", "cmp2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = common::text(&out.stderr);
    assert!(
        err.contains("no arm `warm`") && err.contains("warm_start"),
        "{err}"
    );
    let out = p.scorch(&["compare", id, "--gap", "warm_start", "--out", "cmp2"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out.stderr));
    let mut tasks_of: BTreeMap<String, usize> = BTreeMap::new();
    for a in arms {
        let (arm, split) = (a["arm"].as_str().unwrap(), a["split"].as_str().unwrap());
        let runs = a["runs"].as_array().unwrap();
        assert_eq!(runs.len(), if arm == "teacher" { 1 } else { 3 }, "{arm}");
        for r in runs {
            // Every arm is evaluated on the same tasks of the split.
            let n = r["n"].as_u64().unwrap() as usize;
            assert_eq!(*tasks_of.entry(split.to_owned()).or_insert(n), n);
            let (lo, hi) = (
                r["wilson"][0].as_f64().unwrap(),
                r["wilson"][1].as_f64().unwrap(),
            );
            let s = r["success"].as_f64().unwrap();
            assert!(lo <= s && s <= hi, "{arm}: {s} outside [{lo}, {hi}]");
        }
        if arm == "teacher" {
            assert_eq!(a["mean"], 1.0);
            assert!(
                runs[0]["teacher_steps"].is_null(),
                "no training behind the teacher"
            );
        } else {
            assert!(
                runs.iter()
                    .all(|r| r["teacher_steps"].as_u64().unwrap() > 0)
            );
        }
        if arm != "bc_equal_cost" && arm != "teacher" {
            assert_eq!(
                a["mcnemar_p"].as_array().unwrap().len(),
                3,
                "{arm}: a test per seed"
            );
            // What the design can detect: a positive difference, within what a share can be
            // (a few tasks per seed here, so it is large); none where no pair differs (the
            // smoke students often solve nothing).
            if let Some(mde) = a["mde"].as_f64() {
                assert!(mde > 0.0 && mde <= 2.0, "{arm}: {mde}");
            }
        } else {
            assert!(a["mde"].is_null(), "{arm}: no baseline to detect against");
        }
    }
    // SCoRe's cost includes its repairs; BC at equal cost matches it within a demonstration.
    let steps = |arm: &str| -> f64 {
        let a = arms
            .iter()
            .find(|a| a["arm"] == arm && a["split"] == "test")
            .unwrap();
        let runs = a["runs"].as_array().unwrap();
        runs.iter()
            .map(|r| r["teacher_steps"].as_f64().unwrap())
            .sum::<f64>()
            / runs.len() as f64
    };
    assert!(steps("score_sft") > steps("warm_start"));
    assert!((steps("score_sft") - steps("bc_equal_cost")).abs() < 8.0);
    // DAgger labels as many states as SCoRe repaired (the smoke tasks have more states than
    // that): the same teacher cost, to the step.
    assert_eq!(steps("dagger_equal_cost"), steps("score_sft"));
    let md = std::fs::read_to_string(p.path().join("cmp/compare.md")).unwrap();
    assert!(md.contains("| score_rl | test | 3 |"), "{md}");
    assert!(md.contains("| detectable at 80% power |"), "{md}");

    for png in ["success_vs_cost_test.png", "success_by_ops_test.png"] {
        let bytes = std::fs::read(p.path().join("cmp").join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{png}");
    }
}
