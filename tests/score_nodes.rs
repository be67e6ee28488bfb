//! The SCoRe node plugins through the CLI on a tiny world: tasks → oracle demonstrations →
//! SFT from scratch → evaluation of the student and of the teacher.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Project, with_outcome};
use scorch_api::parquet_io::read_rows;
use scorch_api::tables::{EvalResult, TrainStep, Trajectory};

const TINY: &str = r#"
name: tiny-score
nodes:
  train_tasks:
    kind: tasks
    params: {split: train, count: 24}
  test_tasks:
    kind: tasks
    params: {split: test, count: 6}
  demos:
    kind: rollout
    params: {policy: {kind: oracle}}
    inputs: {tasks: {from: train_tasks.tasks}}
  warm_sft:
    kind: sft
    params:
      steps: 4
      batch_size: 8
      init: {vocab_size: 200, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64}
      device: cpu
    inputs: {trajectories: {from: demos.trajectories}}
  eval_warm:
    kind: eval
    params: {label: warm_start, device: cpu, turn_limit: 3, sampling: {temperature: 0.0, max_tokens: 24}}
    inputs: {tasks: {from: test_tasks.tasks}, model: {from: warm_sft.checkpoint}}
  eval_teacher:
    kind: eval
    params: {label: teacher, policy: {kind: oracle}}
    inputs: {tasks: {from: test_tasks.tasks}}
  mentor_tasks:
    kind: tasks
    params: {split: train, count: 10, offset: 100}
  mentored:
    kind: correct
    params: {max_repairs: 2, turn_limit: 4, device: cpu, sampling: {temperature: 1.0, max_tokens: 24}}
    inputs: {tasks: {from: mentor_tasks.tasks}, model: {from: warm_sft.checkpoint}}
  split:
    kind: filter
    params: {rl_share: 1.0}
    inputs: {tasks: {from: mentor_tasks.tasks}, trajectories: {from: mentored.trajectories}, repairs: {from: mentored.repairs}}
  score_rl:
    kind: rl
    params: {steps: 2, prompts_per_step: 2, group_size: 2, turn_limit: 4, device: cpu, sampling: {temperature: 1.0, max_tokens: 24}}
    inputs: {rl_prompts: {from: split.rl_prompts}, tasks: {from: mentor_tasks.tasks}, model: {from: warm_sft.checkpoint}}
"#;

fn artifact_file(
    p: &Project,
    rec: &serde_json::Value,
    node: &str,
    output: &str,
) -> std::path::PathBuf {
    let n = rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == node)
        .unwrap();
    let hash = n["outputs"][output]["artifact"].as_str().unwrap();
    let a: serde_json::Value = serde_json::from_slice(
        &std::fs::read(p.path().join(format!(".scorch/artifacts/{hash}.json"))).unwrap(),
    )
    .unwrap();
    p.path()
        .join(".scorch/objects")
        .join(a["files"][0]["object"].as_str().unwrap())
}

#[test]
fn a_tiny_warm_start_runs_end_to_end_and_reruns_cached() {
    let p = Project::new();
    p.write("wf.yaml", TINY);
    let rec = p.run_json(&["wf.yaml", "-j", "2"], 0);
    assert_eq!(with_outcome(&rec, "ran").len(), 10, "{rec}");
    let demos: Vec<Trajectory> =
        read_rows(&artifact_file(&p, &rec, "demos", "trajectories")).unwrap();
    assert_eq!(demos.len(), 24);
    assert!(demos.iter().all(|t| t.correct && t.policy == "oracle"));
    let loss: Vec<TrainStep> = read_rows(&artifact_file(&p, &rec, "warm_sft", "loss")).unwrap();
    assert_eq!(loss.len(), 4);
    assert!(loss.iter().all(|s| s.loss.is_finite() && s.lr > 0.0));
    let teacher: Vec<EvalResult> =
        read_rows(&artifact_file(&p, &rec, "eval_teacher", "results")).unwrap();
    assert_eq!(
        (teacher[0].n, teacher[0].accuracy),
        (6, 1.0),
        "the oracle solves every task"
    );
    let warm: Vec<EvalResult> =
        read_rows(&artifact_file(&p, &rec, "eval_warm", "results")).unwrap();
    assert_eq!(
        (warm[0].label.as_str(), warm[0].split.as_str(), warm[0].n),
        ("warm_start", "test", 6)
    );
    assert!((0.0..=1.0).contains(&warm[0].accuracy));
    // Mentored solving: the oracle repaired the barely trained student, and every RL start
    // state's prefix is one the judge accepts step by step.
    let records: Vec<scorch_api::tables::RepairRecord> =
        read_rows(&artifact_file(&p, &rec, "mentored", "repairs")).unwrap();
    let mentored: Vec<Trajectory> =
        read_rows(&artifact_file(&p, &rec, "mentored", "trajectories")).unwrap();
    assert_eq!((records.len(), mentored.len()), (10, 10));
    assert!(
        records.iter().map(|r| r.repairs.len()).sum::<usize>() > 0,
        "repairs happened"
    );
    for (r, t) in records.iter().zip(&mentored) {
        assert!(r.repairs.len() <= 2);
        for fix in &r.repairs {
            assert_eq!(fix.teacher_step.author, scorch_api::tables::Author::Teacher);
            assert!(
                fix.student_steps
                    .first()
                    .is_some_and(|s| s.author == scorch_api::tables::Author::Student)
            );
        }
        if let Some(last) = r.repairs.last() {
            assert_eq!(
                t.steps[last.step_index as usize - 1].code,
                last.teacher_step.code,
                "the repair is in the trajectory"
            );
        }
    }
    let prompts: Vec<scorch_api::tables::RlPrompt> =
        read_rows(&artifact_file(&p, &rec, "split", "rl_prompts")).unwrap();
    let tasks = scorch_agent::suite::tasks(0, scorch_agent::suite::Split::Train, 100, 10);
    for prompt in &prompts {
        let task = tasks.iter().find(|t| t.task_id == prompt.task_id).unwrap();
        let world = scorch_agent::suite::world_of(task).unwrap();
        let verdict = scorch_agent::oracle::judge_world(&world, &prompt.prefix);
        assert!(
            matches!(verdict, scorch_agent::teacher::Verdict::CannotLocate { .. }),
            "{} prefix not verified: {verdict:?}",
            prompt.prompt_id
        );
        if prompt.source == "repaired" {
            assert!(prompt.chosen.is_some() && prompt.rejected.is_some());
        }
    }
    let again = p.run_json(&["wf.yaml"], 0);
    let metrics: Vec<TrainStep> =
        read_rows(&artifact_file(&p, &rec, "score_rl", "metrics")).unwrap();
    assert_eq!(metrics.len(), 2);
    assert!(
        metrics
            .iter()
            .all(|m| (0.0..=1.0).contains(&m.reward) && m.loss.is_finite())
    );
    assert_eq!(with_outcome(&again, "cached").len(), 10);
}
