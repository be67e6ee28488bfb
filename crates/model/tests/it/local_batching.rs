//! The in-process student's two ways of batching episodes give the same trajectories: in
//! rounds (every open episode's request in one call) and continuously (each request joins
//! the running batch as its episode sends it). Each request samples with its own seed, so a
//! sampled episode is the same whatever else is in its batch, and an episode played in a
//! later run (a resumed node) is the one an uninterrupted run plays.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{assert_reused_a_part, first_turns, next_turns, student, texts};
use scorch_agent::llm::ChatOptions;
use scorch_agent::suite::{Split, tasks};
use scorch_agent::tool::CalcTool;
use scorch_api::NoProgress;
use scorch_model::episode::{Episode, Schedule, run_with};
use scorch_model::local::{Batching, LocalModel};
use scorch_model::policy::{Policy, Request};
use scorch_tables::{Author, Trajectory};

/// `n` episodes of the built-in suite, each with its place in the table as its stream.
fn episodes(n: u64) -> Vec<Episode> {
    tasks(11, Split::Train, 0, n)
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let mut ep = Episode::new(t, Box::new(CalcTool), Some(4));
            ep.stream = Some(i as u64);
            ep
        })
        .collect()
}

fn options(temperature: f64) -> ChatOptions {
    ChatOptions {
        temperature,
        max_tokens: 12,
        seed: Some(3),
        ..Default::default()
    }
}

/// Play `eps` to their end with `model`; their trajectories.
fn play(model: &LocalModel, mut eps: Vec<Episode>, o: &ChatOptions) -> Vec<Trajectory> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(run_with(
        model,
        &mut eps,
        "Solve it.",
        o,
        Author::Student,
        &NoProgress,
        Schedule::default(),
    ))
    .unwrap();
    eps.iter().map(|e| e.trajectory("student", 0)).collect()
}

#[test]
fn continuous_batching_gives_the_trajectories_of_rounds() {
    for temperature in [0.0, 1.0] {
        let o = options(temperature);
        let rounds = play(&student().with_batching(Batching::Rounds), episodes(40), &o);
        let continuous = student().with_batching(Batching::Continuous);
        assert!(continuous.independent(), "episodes advance on their own");
        let joined = play(&continuous, episodes(40), &o);
        assert_eq!(joined, rounds, "temperature {temperature}");
        // Something was generated and episodes took several turns: the comparison is not
        // of empty tables.
        assert!(rounds.iter().all(|t| t.steps.len() >= 2));
        assert!(
            rounds
                .iter()
                .flat_map(|t| &t.steps)
                .any(|s| s.completion_tokens > 1)
        );
    }
}

#[test]
fn a_sampled_episode_is_the_same_in_any_batch_and_in_a_later_run() {
    let o = options(1.0);
    for batching in [Batching::Rounds, Batching::Continuous] {
        let all = play(&student().with_batching(batching), episodes(24), &o);
        // The first ten in one run, the rest in another (as a node that resumes plays only
        // the episodes its journal lacks).
        let model = student().with_batching(batching);
        let mut eps = episodes(24);
        let rest = eps.split_off(10);
        let mut split = play(&model, eps, &o);
        split.extend(play(&model, rest, &o));
        assert_eq!(split, all, "{batching:?}");
    }
    // Samples of one task differ (each has its own stream), as they must for a group.
    let model = student();
    let same_task: Vec<Episode> = (0..6)
        .map(|i| {
            let t = tasks(11, Split::Train, 0, 1).pop().unwrap();
            let mut ep = Episode::new(t, Box::new(CalcTool), Some(2));
            ep.stream = Some(i);
            ep
        })
        .collect();
    let samples = play(&model, same_task, &o);
    let plans: std::collections::BTreeSet<_> =
        samples.iter().map(|t| t.steps[0].thought.clone()).collect();
    assert!(
        plans.len() > 1,
        "six samples of one task all wrote {plans:?}"
    );
}

#[test]
fn a_continuous_turn_reuses_its_last_turns_keys_and_writes_what_a_fresh_prefill_writes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let o = options(0.0);
    let ask = |model: &LocalModel, chats: Vec<_>| {
        let requests = Request::each(chats, 5);
        rt.block_on(async {
            let calls = requests
                .into_iter()
                .map(|r| model.complete_continuous(r, &o));
            futures::future::try_join_all(calls).await.unwrap()
        })
    };
    let model = student();
    let first = first_turns(12);
    let replies = ask(&model, first.clone());
    assert!(replies.iter().all(|r| r.cached_tokens == 0));
    let second = next_turns(&first, &replies);
    let reused = ask(&model, second.clone());
    let fresh = ask(&student(), second);
    assert_eq!(texts(&reused), texts(&fresh));
    assert_reused_a_part(&reused, &fresh);
}
