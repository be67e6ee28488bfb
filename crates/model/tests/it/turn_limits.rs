//! Every task of every split of the built-in suite can be solved under the turn limit that
//! a student gets: the oracle teacher plays through the same rollout path, under the same
//! limits, and must solve them all.

#![allow(clippy::unwrap_used)]

use scorch_agent::format::turn_limit_for;
use scorch_agent::suite::{Split, tasks};
use scorch_model::rollouts::{RolloutSpec, rollouts};
use scorch_spec::policy::{PolicySpec, SamplingParams};

fn oracle_success(split: Split, fixed: Option<u32>) -> (usize, usize) {
    let tasks = tasks(0, split, 0, 500);
    let sampling = SamplingParams::default();
    let spec = RolloutSpec {
        policy: &PolicySpec::Oracle,
        samples: 1,
        sampling: &sampling,
        turn_limit: fixed,
        model_dir: None,
        base_dir: None,
        device: "cpu",
        seed: 0,
        sandbox: scorch_agent::python::Sandbox::Bwrap,
        progress: &scorch_api::NoProgress,
        tool_workers: None,
        journal: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (rows, _) = rt.block_on(rollouts(&spec, &tasks)).unwrap();
    for (t, task) in rows.iter().zip(&tasks) {
        assert!(t.turns <= turn_limit_for(task, fixed), "{}", t.task_id);
    }
    (rows.iter().filter(|t| t.correct).count(), rows.len())
}

#[test]
fn the_teacher_solves_every_task_of_every_split_under_the_students_limits() {
    for split in [Split::Train, Split::Test, Split::Hard] {
        let (solved, n) = oracle_success(split, None);
        assert_eq!((solved, n), (500, 500), "{split:?}");
    }
}

#[test]
fn a_fixed_limit_below_a_tasks_length_leaves_it_unsolved() {
    // The control: 7-op hard tasks need 9 turns (plan, 7 ops, the answer).
    let (solved, n) = oracle_success(Split::Hard, Some(8));
    assert!(solved < n, "{solved}/{n}");
}

#[test]
fn a_builtin_task_gets_its_op_count_plus_three() {
    for task in tasks(3, Split::Hard, 0, 50) {
        let ops = scorch_agent::suite::world_of(&task).unwrap().ops;
        assert_eq!(turn_limit_for(&task, None), ops + 3);
        assert_eq!(turn_limit_for(&task, Some(4)), 4);
    }
}
