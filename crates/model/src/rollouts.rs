//! Rollouts: a policy (the oracle, the local student or an endpoint) plays every task, each
//! sample an episode, the episodes of one system prompt batched together.

use scorch_agent::oracle::Oracle;
use scorch_agent::python::Sandbox;
use scorch_agent::teacher::Teacher;
use scorch_api::ProgressSink;
use scorch_tables::{Author, StopReason, Task, Trajectory};

use crate::ModelError;
use crate::episode::{self, Ended, EndedSink, Episode};
use scorch_api::resume::Journal;
use scorch_spec::policy::{PolicySpec, SamplingParams};

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
    /// Where ended episodes are kept as they end, and found again by a rerun (which then
    /// plays only the others); `None`: nowhere.
    pub journal: Option<scorch_api::resume::Journal>,
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
                    let mut ep = Episode::new(t.clone(), tool_for(t, r.sandbox)?, r.turn_limit);
                    // Its place in the table: the same whichever batch it is played in.
                    ep.stream = Some(slots.len() as u64);
                    slots.push(Some(ep));
                }
            }
            if let Some(journal) = &r.journal {
                let restored = restore(journal, &mut slots).await?;
                for ep in slots.iter().flatten().filter(|e| e.stop.is_some()) {
                    for s in &ep.steps {
                        tokens.0 += u64::from(s.prompt_tokens);
                        tokens.1 += u64::from(s.completion_tokens);
                    }
                }
                if restored > 0 {
                    r.progress.advance(restored as u64);
                    r.progress.message(&format!(
                        "{restored} episodes ended in an earlier attempt, kept"
                    ));
                }
            }
            // Episodes of one suite share a system prompt; each group is one batch.
            let systems: Vec<&str> = tasks
                .iter()
                .flat_map(|t| std::iter::repeat_n(system_for(&t.task_id), samples as usize))
                .collect();
            let task_ids: Vec<&str> = tasks
                .iter()
                .flat_map(|t| std::iter::repeat_n(t.task_id.as_str(), samples as usize))
                .collect();
            let mut groups = systems.clone();
            groups.sort_unstable();
            groups.dedup();
            for system in groups {
                let idx: Vec<usize> = (0..slots.len()).filter(|&i| systems[i] == system).collect();
                let mut batch: Vec<Episode> = idx.iter().filter_map(|&i| slots[i].take()).collect();
                let sink = r.journal.as_ref().map(|journal| Slots {
                    journal,
                    slots: &idx,
                    task_ids: &task_ids,
                });
                let t = episode::run_with(
                    policy.as_ref(),
                    &mut batch,
                    system,
                    &r.sampling.seeded(r.seed),
                    Author::Student,
                    r.progress,
                    episode::Schedule {
                        tool_workers: r.tool_workers,
                        ended: sink.as_ref().map(|s| s as &dyn EndedSink),
                        ..Default::default()
                    },
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

/// A journal entry: an episode that ended, its slot, and its task (checked when it is read
/// back). Each journal object holds the entries written together (a round's, or one).
#[derive(serde::Serialize, serde::Deserialize)]
struct Entry {
    slot: usize,
    task_id: String,
    ended: Ended,
}

/// Episodes of one batch written to the journal under their slot in the whole table.
struct Slots<'a> {
    journal: &'a Journal,
    /// Batch index → slot.
    slots: &'a [usize],
    /// Slot → its task.
    task_ids: &'a [&'a str],
}

#[async_trait::async_trait]
impl EndedSink for Slots<'_> {
    async fn ended(&self, index: usize, ended: Ended) -> Result<(), ModelError> {
        self.ended_many(vec![(index, ended)]).await
    }
    async fn ended_many(&self, ended: Vec<(usize, Ended)>) -> Result<(), ModelError> {
        let entries: Vec<Entry> = ended
            .into_iter()
            .map(|(index, ended)| {
                let slot = self.slots[index];
                Entry {
                    slot,
                    task_id: self.task_ids[slot].to_owned(),
                    ended,
                }
            })
            .collect();
        // Named by its first slot: each slot ends once per attempt.
        let Some(first) = entries.iter().map(|e| e.slot).min() else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&entries).map_err(|e| {
            ModelError::Journal(scorch_api::PluginError::failed(format!(
                "an entry does not serialize: {e}"
            )))
        })?;
        self.journal
            .put(&format!("{first:08}.json"), bytes)
            .await
            .map_err(ModelError::Journal)
    }
}

/// Put back the episodes the journal holds; how many. An entry that does not read back, or
/// that names another task than its slot's, is left out (its episode is played again).
async fn restore(journal: &Journal, slots: &mut [Option<Episode>]) -> Result<usize, ModelError> {
    let entries = journal.entries().await.map_err(ModelError::Journal)?;
    let mut restored = 0;
    for (name, bytes) in entries {
        let Ok(entries) = serde_json::from_slice::<Vec<Entry>>(&bytes) else {
            tracing::warn!(entry = %name, "a journal entry does not parse; its episodes are played again");
            continue;
        };
        for entry in entries {
            if let Some(Some(ep)) = slots.get_mut(entry.slot)
                && ep.task.task_id == entry.task_id
                && ep.stop.is_none()
            {
                ep.restore(entry.ended);
                restored += 1;
            }
        }
    }
    Ok(restored)
}
