//! Rollouts: a policy (the oracle, the local student or an endpoint) plays every task, each
//! sample an episode, the episodes of one system prompt batched together.

use scorch_agent::oracle::Oracle;
use scorch_agent::python::Sandbox;
use scorch_agent::teacher::Teacher;
use scorch_api::ProgressSink;
use scorch_api::tables::{Author, StopReason, Task, Trajectory};

use crate::ModelError;
use crate::episode::{self, Episode};
use scorch_kinds::policy::{PolicySpec, SamplingParams};

use crate::spec::{chat_policy, system_for, tool_for};

/// How to roll out: the policy and its settings.
#[derive(Clone)]
pub struct RolloutSpec<'a> {
    /// Which policy.
    pub policy: &'a PolicySpec,
    /// Samples per task.
    pub samples: u32,
    /// Sampling settings.
    pub sampling: &'a SamplingParams,
    /// Most turns per episode; `None`: each task's own limit.
    pub turn_limit: Option<u32>,
    /// The student checkpoint, for `policy: student`.
    pub model_dir: Option<&'a std::path::Path>,
    /// The base of a student that is a LoRA adapter.
    pub base_dir: Option<&'a std::path::Path>,
    /// `auto`, `cpu` or `cuda`.
    pub device: &'a str,
    /// Sampler seed.
    pub seed: u64,
    /// The python tool's boundary.
    pub sandbox: Sandbox,
    /// Where finished episodes are counted (the oracle's count at once).
    pub progress: &'a dyn ProgressSink,
    /// Tool calls at once (`None`: the machine's cores).
    pub tool_workers: Option<usize>,
}

impl std::fmt::Debug for RolloutSpec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutSpec")
            .field("policy", self.policy)
            .field("samples", &self.samples)
            .field("turn_limit", &self.turn_limit)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

/// Run the policy on every task, `samples` times. Returns the trajectories and (prompt,
/// completion) tokens spent.
pub async fn rollouts(
    r: &RolloutSpec<'_>,
    tasks: &[Task],
) -> Result<(Vec<Trajectory>, (u64, u64)), ModelError> {
    let samples = r.samples.max(1);
    let mut out = Vec::new();
    let mut tokens = (0, 0);
    match chat_policy(r.policy, r.model_dir, r.base_dir, r.device)? {
        None => {
            for t in tasks {
                let (demo, cost) = Oracle.demonstrate(t).await?;
                tokens.0 += cost.prompt_tokens;
                tokens.1 += cost.completion_tokens;
                for sample in 0..samples {
                    let mut ep = Episode::new(t.clone(), tool_for(t, r.sandbox)?, r.turn_limit);
                    // The oracle plays under the same turn limit as any policy: a
                    // demonstration longer than the limit ends at it, unanswered.
                    let fits = demo.steps.len() <= ep.turn_limit as usize;
                    ep.steps = demo.steps.clone();
                    ep.steps.truncate(ep.turn_limit as usize);
                    ep.final_answer = demo.final_answer.clone().filter(|_| fits);
                    ep.stop = Some(if ep.final_answer.is_some() {
                        StopReason::FinalAnswer
                    } else {
                        StopReason::TurnLimit
                    });
                    out.push(ep.trajectory("oracle", sample));
                    r.progress.advance(1);
                }
            }
        }
        Some(policy) => {
            let mut slots: Vec<Option<Episode>> =
                Vec::with_capacity(tasks.len() * samples as usize);
            for t in tasks {
                for _ in 0..samples {
                    slots.push(Some(Episode::new(
                        t.clone(),
                        tool_for(t, r.sandbox)?,
                        r.turn_limit,
                    )));
                }
            }
            // Episodes of one suite share a system prompt; each group is one batch.
            let systems: Vec<&str> = tasks
                .iter()
                .flat_map(|t| std::iter::repeat_n(system_for(&t.task_id), samples as usize))
                .collect();
            let mut groups = systems.clone();
            groups.sort_unstable();
            groups.dedup();
            for system in groups {
                let idx: Vec<usize> = (0..slots.len()).filter(|&i| systems[i] == system).collect();
                let mut batch: Vec<Episode> = idx.iter().filter_map(|&i| slots[i].take()).collect();
                let t = episode::run_with(
                    policy.as_ref(),
                    &mut batch,
                    system,
                    &r.sampling.chat_options(r.seed),
                    Author::Student,
                    r.progress,
                    episode::Pace::Auto,
                    r.tool_workers,
                )
                .await?;
                tokens.0 += t.0;
                tokens.1 += t.1;
                for (i, ep) in idx.into_iter().zip(batch) {
                    slots[i] = Some(ep);
                }
            }
            for (i, ep) in slots.iter().enumerate() {
                if let Some(ep) = ep {
                    out.push(ep.trajectory(policy.name(), i as u32 % samples));
                }
            }
        }
    }
    Ok((out, tokens))
}
