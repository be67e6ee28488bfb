//! Whether an RL node's training reward rose: the mean reward of its last steps against its
//! first, as a paired difference with a t interval.
//!
//! Two pairings of the same two windows (the first `WINDOW` steps and the last `WINDOW`):
//! - **by prompt** (decides "rose" when the node wrote its `groups` table): each prompt that
//!   both windows trained on gives one difference, its group's mean reward in the last window
//!   minus that in the first (a prompt seen twice in one window counts with the mean of its
//!   visits). The prompts' difficulty, the largest part of a step's variance, cancels.
//! - **by position**: step `k` of the last window minus step `k` of the first. The steps of a
//!   pair see different prompts, so this pairing removes no variance; it is what a run without
//!   a `groups` table (rl version < 4) can be judged by.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use scorch_engine::error::EngineError;
use scorch_engine::record::RunRecord;
use scorch_engine::store::Store;
use scorch_tables::{RlGroup, TrainStep};

use crate::rows::collect_rows;
use crate::stats::{Interval, mean_t};

/// Steps per window: the mean of the last this many steps against the first this many.
pub const WINDOW: usize = 10;

/// How an RL node's mean reward per step moved from its first steps to its last.
#[derive(Debug, Clone, PartialEq)]
pub struct RewardTrend {
    /// The `rl` node.
    pub node: String,
    /// Steps in its log.
    pub steps: usize,
    /// Steps per window (`WINDOW`, or half the steps of a shorter run).
    pub window: usize,
    /// Mean reward of the first window.
    pub first: f64,
    /// Mean reward of the last window.
    pub last: f64,
    /// Last minus first, paired by position, with its 95% t interval.
    pub difference: Interval,
    /// Last minus first on the prompts both windows trained on, with its 95% t interval.
    pub by_prompt: Option<PromptPaired>,
}

/// The by-prompt pairing of the two windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromptPaired {
    /// Prompts trained on in both windows.
    pub prompts: usize,
    /// Their mean difference, last minus first, with its 95% t interval.
    pub difference: Interval,
}

impl RewardTrend {
    /// Whether the interval of the decisive pairing (by prompt where there is one, else by
    /// position) lies wholly above 0.
    pub fn rose(&self) -> bool {
        self.decisive().lo > 0.0
    }

    /// The interval that decides [`rose`](Self::rose).
    pub fn decisive(&self) -> Interval {
        self.by_prompt.map_or(self.difference, |p| p.difference)
    }
}

/// The trend of `rewards` (the mean reward of each step, in step order 0, 1, …): windows of
/// `WINDOW` steps, or of half the steps when there are fewer than `2 * WINDOW`; `None` below 4
/// steps (a window of one step has no interval). `groups` (the node's `groups` table; may be
/// empty) gives the by-prompt pairing.
pub fn reward_trend(node: &str, rewards: &[f64], groups: &[RlGroup]) -> Option<RewardTrend> {
    let n = rewards.len();
    let window = WINDOW.min(n / 2);
    if window < 2 {
        return None;
    }
    let first = &rewards[..window];
    let last = &rewards[n - window..];
    let diffs: Vec<f64> = last.iter().zip(first).map(|(b, a)| b - a).collect();
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    Some(RewardTrend {
        node: node.to_owned(),
        steps: n,
        window,
        first: mean(first),
        last: mean(last),
        difference: mean_t(&diffs, 0.95),
        by_prompt: by_prompt(groups, window, n),
    })
}

/// The by-prompt pairing of the windows `[0, window)` and `[n - window, n)`; `None` with
/// fewer than 2 prompts in both.
fn by_prompt(groups: &[RlGroup], window: usize, n: usize) -> Option<PromptPaired> {
    let means = |range: std::ops::Range<usize>| {
        let mut sums: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
        for g in groups.iter().filter(|g| range.contains(&(g.step as usize))) {
            let e = sums.entry(g.task_id.as_str()).or_default();
            (e.0, e.1) = (e.0 + g.mean(), e.1 + 1.0);
        }
        sums.into_iter()
            .map(|(k, (sum, count))| (k, sum / count))
            .collect::<BTreeMap<_, _>>()
    };
    let (early, late) = (means(0..window), means(n - window..n));
    let diffs: Vec<f64> = late
        .iter()
        .filter_map(|(k, b)| early.get(k).map(|a| b - a))
        .collect();
    (diffs.len() >= 2).then(|| PromptPaired {
        prompts: diffs.len(),
        difference: mean_t(&diffs, 0.95),
    })
}

/// The reward trend of every `rl` node of a run that ran at least 4 steps (its `metrics`
/// table, and its `groups` table where it wrote one), in node order.
pub async fn collect_reward_trends(
    store: &Store,
    record: &RunRecord,
) -> Result<Vec<RewardTrend>, EngineError> {
    let mut groups: BTreeMap<String, Vec<RlGroup>> =
        collect_rows::<RlGroup>(store, record, "groups", Some("rl"))
            .await?
            .into_iter()
            .collect();
    Ok(
        collect_rows::<TrainStep>(store, record, "metrics", Some("rl"))
            .await?
            .into_iter()
            .filter_map(|(node, mut rows)| {
                rows.sort_by_key(|r| r.step);
                let rewards: Vec<f64> = rows.iter().map(|r| r.reward).collect();
                let groups = groups.remove(&node).unwrap_or_default();
                reward_trend(&node, &rewards, &groups)
            })
            .collect(),
    )
}

/// The trends as a Markdown table.
pub fn trends_markdown(trends: &[RewardTrend]) -> String {
    let mut s = String::from(
        "| rl node | steps | mean reward, first steps | last steps | last − first, same prompts [95% t] | last − first, by position [95% t] | rose |\n|---|---|---|---|---|---|---|\n",
    );
    for t in trends {
        let d = &t.difference;
        let prompts = t.by_prompt.map_or_else(
            || "— (no groups table)".to_owned(),
            |p| {
                let d = p.difference;
                format!(
                    "{:+.3} [{:+.3}, {:+.3}] ({} prompts)",
                    d.estimate, d.lo, d.hi, p.prompts
                )
            },
        );
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} (first {w}) | {:.3} (last {w}) | {prompts} | {:+.3} [{:+.3}, {:+.3}] | {} |",
            t.node,
            t.steps,
            t.first,
            t.last,
            d.estimate,
            d.lo,
            d.hi,
            if t.rose() { "yes" } else { "no" },
            w = t.window,
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_rise_is_seen_and_flat_noise_is_not() {
        // 30 steps rising by 0.01 each, with a wobble: the last 10 sit 0.2 above the first 10.
        let rising: Vec<f64> = (0..30)
            .map(|i| 0.3 + 0.01 * f64::from(i) + if i % 2 == 0 { 0.02 } else { -0.02 })
            .collect();
        let t = reward_trend("rl", &rising, &[]).unwrap();
        assert_eq!((t.steps, t.window), (30, 10));
        assert!((t.difference.estimate - 0.2).abs() < 1e-9, "{t:?}");
        assert!((t.last - t.first - 0.2).abs() < 1e-9);
        assert!(t.rose());
        // The same values in an order that ends where it began: no rise.
        let mut flat = rising[..10].to_vec();
        flat.extend(&rising[10..20]);
        flat.extend(&rising[..10]);
        let t = reward_trend("rl", &flat, &[]).unwrap();
        assert_eq!(t.difference.estimate, 0.0);
        assert!(!t.rose());
    }

    #[test]
    fn short_runs_use_half_their_steps_and_tiny_ones_none() {
        let t = reward_trend("rl", &[0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.9, 1.0], &[]).unwrap();
        assert_eq!(t.window, 4);
        assert!((t.first - 0.275).abs() < 1e-12 && (t.last - 0.8).abs() < 1e-12);
        assert!(reward_trend("rl", &[0.1, 0.2, 0.3], &[]).is_none());
    }

    #[test]
    fn the_interval_matches_a_t_interval_by_hand() {
        // Differences 0.1, 0.3 (window 2): mean 0.2, sd 0.1414, t(1) = 12.706.
        let t = reward_trend("rl", &[0.0, 0.0, 0.1, 0.3], &[]).unwrap();
        let half = 12.706_204_736 * (0.02f64).sqrt() / 2f64.sqrt();
        assert!((t.difference.lo - (0.2 - half)).abs() < 1e-6, "{t:?}");
        assert!((t.difference.hi - (0.2 + half)).abs() < 1e-6, "{t:?}");
    }

    fn group(step: u32, task: &str, reward: f64) -> RlGroup {
        RlGroup {
            step,
            task_id: task.to_owned(),
            prefix_len: 0,
            rewards: vec![reward],
        }
    }

    #[test]
    fn pairing_by_prompt_sees_a_rise_that_prompt_difficulty_hides_by_position() {
        // Ten prompts of difficulty 0.0, 0.1, …, 0.9; 20 steps of one prompt each. Every
        // prompt earns 0.1 more in the last window than in the first (±0.01), but the last
        // window visits them in another order, so by position the steps' rewards swing.
        let difficulty = |i: usize| i as f64 / 10.0;
        let mut groups = Vec::new();
        let mut rewards = Vec::new();
        for step in 0..20u32 {
            let i = if step < 10 {
                step as usize
            } else {
                (step as usize * 7) % 10
            };
            let wobble = if step % 3 == 0 { 0.01 } else { -0.005 };
            let r = difficulty(i) + if step >= 10 { 0.1 } else { 0.0 } + wobble;
            groups.push(group(step, &format!("p{i}"), r));
            rewards.push(r);
        }
        let t = reward_trend("rl", &rewards, &groups).unwrap();
        let p = t.by_prompt.unwrap();
        assert_eq!(p.prompts, 10);
        assert!((p.difference.estimate - 0.1).abs() < 0.01, "{p:?}");
        assert!(p.difference.lo > 0.05, "{p:?}");
        assert!(t.rose());
        assert!(
            t.difference.lo < 0.0,
            "by position the rise is hidden: {:?}",
            t.difference
        );
        assert_eq!(t.decisive(), p.difference);
    }

    #[test]
    fn prompts_in_one_window_only_are_left_out_and_repeated_visits_averaged() {
        // Window 2 of 4 steps: a is seen in both windows (twice in the last), b only first,
        // c only last, d in both.
        let groups = [
            group(0, "a", 0.2),
            group(0, "b", 0.9),
            group(1, "d", 0.5),
            group(2, "a", 0.4),
            group(2, "c", 0.0),
            group(3, "a", 0.6),
            group(3, "d", 0.7),
        ];
        let t = reward_trend("rl", &[0.55, 0.5, 0.2, 0.65], &groups).unwrap();
        let p = t.by_prompt.unwrap();
        // a: 0.5 − 0.2 = 0.3; d: 0.7 − 0.5 = 0.2.
        assert_eq!(p.prompts, 2);
        assert!((p.difference.estimate - 0.25).abs() < 1e-12, "{p:?}");
        // One shared prompt is no interval: the position pairing decides.
        let t = reward_trend("rl", &[0.55, 0.5, 0.2, 0.65], &groups[..5]).unwrap();
        assert!(t.by_prompt.is_none());
        assert_eq!(t.decisive(), t.difference);
    }
}
