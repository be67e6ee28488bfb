//! The main job's smoke profile end to end: `workflows/score.yaml --set profile=smoke` runs,
//! every table is well formed, repairs happened, every RL prompt starts from a verified
//! prefix, and a rerun executes no node.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::PathBuf;

use common::{Project, with_outcome};
use scorch_api::parquet_io::read_rows;
use scorch_tables::{Author, EvalResult, RepairRecord, RlPrompt, Task, TrainStep, Trajectory};

fn artifact_files(p: &Project, rec: &serde_json::Value, node: &str, output: &str) -> PathBuf {
    common::output_file(&p.path().join(".scorch"), rec, node, output)
}

#[test]
fn the_smoke_profile_of_score_yaml_runs_end_to_end() {
    let p = Project::new();
    let wf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workflows/score.yaml");
    let wf = wf.display().to_string();
    let rec = p.run_json(&[&wf, "--set", "profile=smoke", "-j", "2"], 0);
    assert_eq!(rec["status"], "succeeded");
    assert_eq!(
        with_outcome(&rec, "ran").len(),
        rec["nodes"].as_array().unwrap().len(),
        "a fresh store runs every node"
    );

    let tasks: Vec<Task> = read_rows(&artifact_files(&p, &rec, "mentor_tasks", "tasks")).unwrap();
    let demos: Vec<Trajectory> =
        read_rows(&artifact_files(&p, &rec, "demos", "trajectories")).unwrap();
    assert!(
        demos
            .iter()
            .all(|t| t.correct && t.steps.iter().all(|s| s.author == Author::Teacher))
    );
    let warm: Vec<Trajectory> = read_rows(&artifact_files(&p, &rec, "warm_demos", "sft")).unwrap();
    assert!(
        !warm.is_empty() && warm.len() < demos.len(),
        "the warm start keeps a share of the demonstrations"
    );
    let loss: Vec<TrainStep> = read_rows(&artifact_files(&p, &rec, "warm_sft", "loss")).unwrap();
    assert!(loss.iter().all(|s| s.loss.is_finite()));

    let mentored: Vec<Trajectory> =
        read_rows(&artifact_files(&p, &rec, "mentored", "trajectories")).unwrap();
    let records: Vec<RepairRecord> =
        read_rows(&artifact_files(&p, &rec, "mentored", "repairs")).unwrap();
    assert_eq!(mentored.len(), tasks.len());
    assert_eq!(records.len(), tasks.len());
    let repairs: usize = records.iter().map(|r| r.repairs.len()).sum();
    assert!(repairs > 0, "repairs happened");
    for r in &records {
        assert!(r.repairs.len() <= 2, "smoke allows two repairs");
        for fix in &r.repairs {
            assert_eq!(fix.teacher_step.author, Author::Teacher);
            assert!(!fix.analysis.is_empty());
        }
    }

    let prompts: Vec<RlPrompt> =
        read_rows(&artifact_files(&p, &rec, "split", "rl_prompts")).unwrap();
    assert!(!prompts.is_empty());
    for prompt in &prompts {
        let task = tasks.iter().find(|t| t.task_id == prompt.task_id).unwrap();
        let world = scorch_agent::suite::world_of(task).unwrap();
        let verdict = scorch_agent::oracle::judge_world(&world, &prompt.prefix);
        assert!(
            matches!(verdict, scorch_agent::teacher::Verdict::CannotLocate { .. }),
            "the prefix of {} is not verified: {verdict:?}",
            prompt.prompt_id
        );
        if prompt.source == "repaired" {
            assert!(prompt.chosen.is_some() && prompt.rejected.is_some());
        }
    }
    let rl: Vec<TrainStep> = read_rows(&artifact_files(&p, &rec, "score_rl", "metrics")).unwrap();
    assert!(
        rl.iter()
            .all(|m| (0.0..=1.0).contains(&m.reward) && m.loss.is_finite())
    );

    for arm in [
        "eval_warm",
        "eval_score_sft",
        "eval_score_rl",
        "eval_teacher",
    ] {
        for split in ["test", "hard"] {
            let r: Vec<EvalResult> = read_rows(&artifact_files(
                &p,
                &rec,
                &format!("{arm}[split={split}]"),
                "results",
            ))
            .unwrap();
            assert_eq!(r.len(), 1, "{arm} {split}");
            assert_eq!(r[0].split, split);
            assert!((0.0..=1.0).contains(&r[0].accuracy));
            if arm == "eval_teacher" {
                assert_eq!(r[0].accuracy, 1.0, "the oracle solves every task");
            }
        }
    }
    let again = p.run_json(&[&wf, "--set", "profile=smoke"], 0);
    assert!(
        with_outcome(&again, "ran").is_empty(),
        "a rerun executes no node"
    );

    // The baseline and the ablations share score.yaml's nodes: after it, only what differs
    // would run.
    for (file, differ) in [
        (
            "workflows/ablations/rl_full_horizon.yaml",
            &["score_rl", "eval_score_rl"][..],
        ),
        (
            "workflows/ablations/rl_sparse_reward.yaml",
            &["score_rl", "eval_score_rl"][..],
        ),
        ("workflows/baselines/bc.yaml", &["bc_sft", "eval_bc"][..]),
    ] {
        let other = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(file);
        let out = p.scorch(&[
            "plan",
            &other.display().to_string(),
            "--set",
            "profile=smoke",
            "--json",
        ]);
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for n in plan["nodes"].as_array().unwrap() {
            let id = n["id"].as_str().unwrap();
            let base = id.split('[').next().unwrap();
            let cached = n["status"] == "cached";
            assert_eq!(
                cached,
                !differ.contains(&base),
                "{file}: {id} is {}",
                n["status"]
            );
        }
    }

    // The end of a run prints the results table; `scorch report` writes the report folder.
    let out = p.scorch(&["run", &wf, "--set", "profile=smoke", "-q"]);
    let printed = common::text(&out.stdout);
    assert!(
        printed.contains("| teacher | builtin | test | 8 | 100.0% [67.6, 100.0] |"),
        "{printed}"
    );
    // Later arms are paired with the first arm on the same tasks (the warm start), and with
    // the arm just above (SCoRe-RL with SCoRe-SFT, the model it started from).
    let rl_rows: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("| score_rl | builtin |"))
        .collect();
    assert_eq!(rl_rows.len(), 2, "{printed}");
    for row in &rl_rows {
        assert!(
            row.contains(" vs warm_start |") && row.contains(" vs score_sft |"),
            "{row}"
        );
    }
    // Whether SCoRe-RL's training reward rose: its first steps against its last.
    assert!(
        printed.contains("| rl node | steps | mean reward, first steps |")
            && printed.contains("| score_rl | 4 | "),
        "{printed}"
    );
    let id = rec["id"].as_str().unwrap();
    // `show` says which profile and variables the run used.
    let out = p.scorch(&["show", id]);
    let shown = common::text(&out.stdout);
    assert!(
        shown.contains("profile: smoke;") && shown.contains("warm_steps=12"),
        "{shown}"
    );
    let out = p.scorch(&["report", id, "--out", "rep"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    let md = std::fs::read_to_string(p.path().join("rep/results.md")).unwrap();
    for arm in ["warm_start", "score_sft", "score_rl", "teacher"] {
        assert_eq!(
            md.matches(&format!("| {arm} | builtin |")).count(),
            2,
            "{arm} test and hard:\n{md}"
        );
    }
    let table: Vec<EvalResult> = read_rows(&p.path().join("rep/results.parquet")).unwrap();
    assert_eq!(table.len(), 8);
    let training = std::fs::read_to_string(p.path().join("rep/training.md")).unwrap();
    assert!(training.contains("| score_rl | 4 | "), "{training}");
    // Every GRPO group's rewards: 4 steps of 2 prompts, 2 episodes each, means that agree
    // with the step's mean reward in `metrics`.
    let groups: Vec<scorch_tables::RlGroup> =
        read_rows(&artifact_files(&p, &rec, "score_rl", "groups")).unwrap();
    let steps: Vec<TrainStep> =
        read_rows(&artifact_files(&p, &rec, "score_rl", "metrics")).unwrap();
    assert_eq!(groups.len(), 8, "{groups:?}");
    for s in &steps {
        let mine: Vec<_> = groups.iter().filter(|g| g.step == s.step).collect();
        assert_eq!(mine.len(), 2);
        let mean = mine.iter().flat_map(|g| &g.rewards).sum::<f64>() / 4.0;
        assert!((mean - s.reward).abs() < 1e-9, "step {}: {mine:?}", s.step);
        for g in mine {
            assert_eq!(g.rewards.len(), 2);
            assert!((g.mean() - (g.rewards[0] + g.rewards[1]) / 2.0).abs() < 1e-12);
        }
    }
    let nodes = std::fs::read_to_string(p.path().join("rep/nodes.md")).unwrap();
    assert!(nodes.contains("| mentored | correct | ran |"), "{nodes}");
    let html = std::fs::read_to_string(p.path().join("rep/index.html")).unwrap();
    assert!(html.contains("<h2>Results</h2>") && html.contains("eval_score_rl[split=hard]"));
    assert!(html.contains("<h2>RL training reward</h2>"), "{html}");
    assert!(
        html.contains("profile: smoke;"),
        "the report names the profile"
    );
    assert!(
        std::fs::read_to_string(p.path().join("rep/dag.dot"))
            .unwrap()
            .contains("digraph \"score\"")
    );
    // The figures are PNG images of a plausible size, linked from the page.
    for png in [
        "accuracy.png",
        "sft_loss.png",
        "rl_reward.png",
        "reward_mix.png",
        "rl_entropy.png",
        "rl_zero_variance_groups.png",
        "rl_clip_fraction.png",
        "dag.png",
    ] {
        let bytes = std::fs::read(p.path().join("rep").join(png)).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{png} is not a PNG"
        );
        assert!(bytes.len() > 5_000, "{png}: {} bytes", bytes.len());
        assert!(
            html.contains(&format!("<img src=\"{png}\"")),
            "{png} not linked"
        );
    }
    // The mix of reward classes counts every RL episode of the run.
    let episodes: f64 = common::node(&rec, "score_rl")["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().unwrap().starts_with("reward_class_"))
        .map(|m| m["value"].as_f64().unwrap())
        .sum();
    assert_eq!(episodes, 4.0 * 2.0 * 2.0, "rl_steps x prompts x group");

    // A worker node's log names the worker and holds its progress lines; its live metrics
    // (a loss per step) are kept beside it.
    let log = p.scorch(&["logs", id, "warm_sft"]);
    let log = common::text(&log.stdout);
    assert!(log.starts_with("scorch-worker "), "{log}");
    assert!(
        log.lines().any(|l| l.starts_with("progress: loss ")),
        "{log}"
    );
    assert!(!log.contains("progress: progress:"), "{log}");
    // An evaluation says how many of its ended episodes were right as it goes.
    let log = p.scorch(&["logs", id, "eval_warm[split=test]"]);
    let log = common::text(&log.stdout);
    assert!(
        log.lines().any(|l| l.starts_with("progress: ")
            && l.contains(" ended, ")
            && l.contains("% right")),
        "{log}"
    );
    let metrics = std::fs::read_to_string(
        p.path()
            .join(format!(".scorch/logs/{id}/warm_sft.metrics.jsonl")),
    )
    .unwrap();
    let losses = metrics
        .lines()
        .filter(|l| l.contains("\"name\":\"loss\""))
        .count();
    assert!(losses > 0, "{metrics}");

    // Outputs come out as plain files, by reference: the newest run's checkpoint as an HF
    // folder that transformers loads, a table as a .parquet file pyarrow reads, trajectories
    // as chats.
    let out = p.scorch(&["export", "score_rl", "--out", "out"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    let out = p.scorch(&[
        "export",
        &format!("{id}:eval_warm[split=test].results"),
        "--out",
        "out",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    let out = p.scorch(&["export", "mentored.trajectories", "--out", "out"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    let check = std::process::Command::new("python3")
        .current_dir(p.path())
        .args([
            "-c",
            "import duckdb, pyarrow.parquet as pq; from transformers import AutoModelForCausalLM\n\
             assert pq.read_table('out/results.parquet').num_rows == 1\n\
             assert pq.read_table('out/metrics.parquet').num_rows == 4\n\
             t = pq.read_table('out/trajectories.parquet')\n\
             n, tasks = duckdb.sql(\"select count(*), count(distinct task_id) from 'out/trajectories.parquet'\").fetchall()[0]\n\
             assert n == t.num_rows == 16 and tasks == 16, (n, t.num_rows, tasks)\n\
             print(type(AutoModelForCausalLM.from_pretrained('out/checkpoint')).__name__)",
        ])
        .output()
        .unwrap();
    assert_eq!(
        common::text(&check.stdout).trim(),
        "Qwen2ForCausalLM",
        "{}",
        common::text(&check.stderr)
    );
    // Into a folder that already holds it: refused, nothing overwritten.
    let out = p.scorch(&["export", "score_rl.checkpoint", "--out", "out"]);
    assert_eq!(out.status.code(), Some(2));
    let out = p.scorch(&["export-chat", "mentored", "--out", "chat.jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out.stderr));
    let chats = std::fs::read_to_string(p.path().join("chat.jsonl")).unwrap();
    assert_eq!(
        chats.lines().count(),
        16,
        "one conversation per mentored task"
    );
    // `serve` takes a reference too: the newest run's SCoRe-RL checkpoint.
    let (server, url, _) = common::serve(p.path(), &["score_rl", "--device", "cpu"]);
    drop(server);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    // LoRA from the command line: SCoRe-SFT and SCoRe-RL train adapters on the warm start,
    // and only they and the evaluations after them run again.
    let lora = p.run_json(
        &[
            &wf,
            "--set",
            "profile=smoke",
            "--set",
            "vars.lora={rank: 4}",
        ],
        0,
    );
    let mut ran = with_outcome(&lora, "ran");
    ran.sort();
    assert_eq!(
        ran,
        [
            "eval_score_rl[split=hard]",
            "eval_score_rl[split=test]",
            "eval_score_sft[split=hard]",
            "eval_score_sft[split=test]",
            "score_rl",
            "score_sft",
        ]
    );
    for node in ["score_sft", "score_rl"] {
        let hash = common::node(&lora, node)["outputs"]["checkpoint"]["artifact"]
            .as_str()
            .unwrap()
            .to_owned();
        let a: serde_json::Value = serde_json::from_slice(
            &std::fs::read(p.path().join(format!(".scorch/artifacts/{hash}.json"))).unwrap(),
        )
        .unwrap();
        let mut files: Vec<&str> = a["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        files.sort_unstable();
        assert_eq!(
            files,
            [
                "adapter_config.json",
                "adapter_model.safetensors",
                "scorch_base.json"
            ],
            "{node}: a PEFT adapter, not a whole model"
        );
    }
    let rl: Vec<TrainStep> = read_rows(&artifact_files(&p, &lora, "score_rl", "metrics")).unwrap();
    assert!(rl.iter().all(|m| m.loss.is_finite()));
    let out = p.scorch(&["export", "score_rl.nope", "--out", "out2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::text(&out.stderr).contains("it has `checkpoint`, `groups`, `metrics`"));

    // SCoRe-RL off-policy: three passes over two mini-batches a step, with a KL term to the
    // start: each step reports its diagnostics. (This student does not yet answer, so every
    // group's rewards are equal: nothing to clip. The clipping and the KL term are held to
    // what they must do in plugins/rl/tests/it/known_answer.rs, and to TRL in trl_loss.rs.)
    let off = p.run_json(
        &[
            &wf,
            "--set",
            "profile=smoke",
            "--set",
            "vars.rl_lr=0.01",
            "--set",
            "nodes.score_rl.params.ppo_epochs=3",
            "--set",
            "nodes.score_rl.params.mini_batches=2",
            "--set",
            "nodes.score_rl.params.kl_coef=0.05",
            "--only",
            "score_rl",
        ],
        0,
    );
    let metrics = common::node(&off, "score_rl")["metrics"]
        .as_array()
        .unwrap();
    let series = |name: &str| -> Vec<f64> {
        metrics
            .iter()
            .filter(|m| m["name"] == name && m["step"].is_u64())
            .map(|m| m["value"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(series("entropy").len(), 4, "{metrics:?}");
    assert!(series("entropy").iter().all(|e| *e > 0.0), "{metrics:?}");
    assert!(series("kl").iter().all(|k| *k >= 0.0), "{metrics:?}");
    for (z, c) in series("zero_variance_groups")
        .iter()
        .zip(series("clip_fraction"))
    {
        assert!((0.0..=1.0).contains(z) && (0.0..=1.0).contains(&c));
        if *z == 1.0 {
            assert_eq!(c, 0.0, "no advantage, nothing clipped: {metrics:?}");
        }
    }
}
