//! The `filter` node: from mentored solving, the SFT half (correct trajectories; those that
//! needed no repair kept with probability 0.5) and the RL half (`rl_prompts` from the *last*
//! repair — the verified prefix, chosen = the teacher's step, rejected = the student's — plus
//! unrepaired tasks with an empty prefix: hard ones with probability 0.5, easy ones 0.1).
//! In warm-start mode it keeps correct teacher demonstrations for a share of the tasks; in
//! `count` and `budget` modes it picks baseline demonstrations of equal size or equal teacher
//! cost.
#![deny(missing_docs)]

use std::collections::BTreeMap;

use scorch_api::reexports::async_trait;
use scorch_api::reexports::schemars::{self, JsonSchema};
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, Signature};
use scorch_tables::{RepairRecord, RlPrompt, TableRow, Task, Trajectory};
use serde::{Deserialize, Serialize};

/// The `filter` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter;

/// What the filter makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// SCoRe: an SFT half and an RL half from mentored solving.
    Score,
    /// Warm start: a share of the teacher's correct demonstrations.
    WarmStart,
    /// A baseline of equal size: the first correct demonstrations, as many as the `like`
    /// table has rows (BC+: as many trajectories as SCoRe kept).
    Count,
    /// A baseline of equal teacher cost: the first correct demonstrations while their
    /// teacher-written steps stay within those of the `spent` table (BC at the teacher cost
    /// of mentored solving).
    Budget,
}

/// Params of `filter`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterParams {
    /// What to make.
    #[serde(default = "score")]
    pub mode: Mode,
    /// Score mode: the share of tasks that go to the RL half.
    #[serde(default = "half")]
    pub rl_share: f64,
    /// Score mode: keep a trajectory that needed no repair with this probability.
    #[serde(default = "half")]
    pub keep_unrepaired: f64,
    /// Score mode: an unrepaired failed task becomes an RL prompt with this probability.
    #[serde(default = "half")]
    pub hard_prompt: f64,
    /// Score mode: an unrepaired solved task becomes an RL prompt with this probability.
    #[serde(default = "tenth")]
    pub easy_prompt: f64,
    /// Warm-start mode: the share of tasks whose demonstrations are kept.
    #[serde(default = "fifth")]
    pub warm_share: f64,
}

fn score() -> Mode {
    Mode::Score
}
fn half() -> f64 {
    0.5
}
fn tenth() -> f64 {
    0.1
}
fn fifth() -> f64 {
    0.2
}

/// A uniform number in [0, 1) from the seed, a salt and a task id: the same inputs give the
/// same draw, whatever the order of the rows.
pub fn draw(seed: u64, salt: &str, task_id: &str) -> f64 {
    let h = blake3_like(seed, salt, task_id);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn blake3_like(seed: u64, salt: &str, id: &str) -> u64 {
    // FNV-1a over the bytes, then a splitmix64 finish: stable across platforms and versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in salt.bytes().chain([0u8]).chain(id.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Split mentored-solving output into SFT trajectories and RL prompts.
pub fn score_split(
    p: &FilterParams,
    seed: u64,
    tasks: &[Task],
    trajectories: &[Trajectory],
    repairs: &[RepairRecord],
) -> (Vec<Trajectory>, Vec<RlPrompt>) {
    let gold: BTreeMap<&str, &Task> = tasks.iter().map(|t| (t.task_id.as_str(), t)).collect();
    let by_traj: BTreeMap<&str, &RepairRecord> = repairs
        .iter()
        .map(|r| (r.trajectory_id.as_str(), r))
        .collect();
    let (mut sft, mut rl) = (Vec::new(), Vec::new());
    for t in trajectories {
        let record = by_traj.get(t.trajectory_id.as_str());
        let fixes = record.map_or(&[][..], |r| r.repairs.as_slice());
        if draw(seed, "half", &t.task_id) >= p.rl_share {
            if t.correct
                && (!fixes.is_empty() || draw(seed, "keep", &t.task_id) < p.keep_unrepaired)
            {
                sft.push(t.clone());
            }
            continue;
        }
        let answer = gold
            .get(t.task_id.as_str())
            .map(|g| g.answer.clone())
            .unwrap_or_default();
        let base = RlPrompt {
            prompt_id: format!("{}/rl", t.task_id),
            task_id: t.task_id.clone(),
            question: t.question.clone(),
            gold_answer: answer,
            prefix: Vec::new(),
            chosen: None,
            rejected: None,
            source: String::new(),
        };
        match fixes.last() {
            Some(last) => {
                let k = last.step_index as usize;
                rl.push(RlPrompt {
                    prefix: t.steps[..k.saturating_sub(1).min(t.steps.len())].to_vec(),
                    chosen: Some(last.teacher_step.clone()),
                    rejected: last.student_steps.first().cloned(),
                    source: "repaired".into(),
                    ..base
                });
            }
            None if !t.correct && draw(seed, "hard", &t.task_id) < p.hard_prompt => {
                rl.push(RlPrompt {
                    source: "hard".into(),
                    ..base
                })
            }
            None if t.correct && draw(seed, "easy", &t.task_id) < p.easy_prompt => {
                rl.push(RlPrompt {
                    source: "easy".into(),
                    ..base
                })
            }
            None => {}
        }
    }
    (sft, rl)
}

/// Steps the teacher wrote in `trajectories` (demonstrations and repairs).
pub fn teacher_steps(trajectories: &[Trajectory]) -> usize {
    trajectories.iter().map(Trajectory::teacher_steps).sum()
}

/// The first correct demonstrations whose teacher-written steps add up to at most `budget`.
pub fn within_budget(demos: Vec<Trajectory>, budget: usize) -> Vec<Trajectory> {
    let mut used = 0;
    let mut keep = Vec::new();
    for t in demos.into_iter().filter(|t| t.correct) {
        let cost = t.teacher_steps();
        if used + cost > budget {
            break;
        }
        used += cost;
        keep.push(t);
    }
    keep
}

#[async_trait]
impl Plugin for Filter {
    type Params = FilterParams;
    fn kind(&self) -> &'static str {
        "filter"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "SFT trajectories and RL start states from mentored solving; or a warm-start share of demonstrations"
    }
    fn signature(&self, p: &FilterParams) -> Result<Signature, ParamError> {
        for (name, v) in [
            ("rl_share", p.rl_share),
            ("keep_unrepaired", p.keep_unrepaired),
            ("hard_prompt", p.hard_prompt),
            ("easy_prompt", p.easy_prompt),
            ("warm_share", p.warm_share),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ParamError::new(name, format!("{v} is not a probability")));
            }
        }
        Ok(match p.mode {
            Mode::Score => Signature::new()
                .input("tasks", Task::port())
                .input("trajectories", Trajectory::port())
                .input("repairs", RepairRecord::port())
                .output("sft", Trajectory::port())
                .output("rl_prompts", RlPrompt::port()),
            Mode::WarmStart => Signature::new()
                .input("trajectories", Trajectory::port())
                .output("sft", Trajectory::port()),
            Mode::Count => Signature::new()
                .input("trajectories", Trajectory::port())
                .input("like", Trajectory::port())
                .output("sft", Trajectory::port()),
            Mode::Budget => Signature::new()
                .input("trajectories", Trajectory::port())
                .input("spent", Trajectory::port())
                .output("sft", Trajectory::port()),
        })
    }
    async fn run(&self, p: FilterParams, ctx: &NodeContext) -> Result<(), PluginError> {
        let trajectories: Vec<Trajectory> = ctx.read_rows("trajectories").await?;
        match p.mode {
            Mode::WarmStart => {
                let keep: Vec<Trajectory> = trajectories
                    .into_iter()
                    .filter(|t| t.correct && draw(ctx.seed(), "warm", &t.task_id) < p.warm_share)
                    .collect();
                ctx.metric("kept", keep.len() as f64);
                ctx.write_rows("sft", &keep)
            }
            Mode::Count => {
                let like: Vec<Trajectory> = ctx.read_rows("like").await?;
                let keep: Vec<Trajectory> = trajectories
                    .into_iter()
                    .filter(|t| t.correct)
                    .take(like.len())
                    .collect();
                // Fewer than wanted when the demonstrations run out: the metrics tell.
                ctx.metric("wanted", like.len() as f64);
                ctx.metric("kept", keep.len() as f64);
                ctx.metric("teacher_steps", teacher_steps(&keep) as f64);
                ctx.write_rows("sft", &keep)
            }
            Mode::Budget => {
                let spent: Vec<Trajectory> = ctx.read_rows("spent").await?;
                let keep = within_budget(trajectories, teacher_steps(&spent));
                ctx.metric("kept", keep.len() as f64);
                ctx.metric("teacher_steps", teacher_steps(&keep) as f64);
                ctx.write_rows("sft", &keep)
            }
            Mode::Score => {
                let tasks: Vec<Task> = ctx.read_rows("tasks").await?;
                let repairs: Vec<RepairRecord> = ctx.read_rows("repairs").await?;
                let (sft, rl) = score_split(&p, ctx.seed(), &tasks, &trajectories, &repairs);
                ctx.metric("sft", sft.len() as f64);
                ctx.metric("rl_prompts", rl.len() as f64);
                ctx.write_rows("sft", &sft)?;
                ctx.write_rows("rl_prompts", &rl)
            }
        }
    }
}
