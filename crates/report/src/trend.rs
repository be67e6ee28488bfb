//! Whether an RL node's training reward rose: the mean reward of its last steps against its
//! first, as a paired difference with a t interval.
//!
//! Step `k` of the first window is paired with step `k` of the last window (both counted from
//! the window's start), so a run of `n` steps with window `w` gives `w` differences
//! `r[n - w + k] - r[k]`; the interval is the Student-t interval of their mean. The steps of a
//! pair see different prompts, so the pairing removes no prompt-to-prompt variance; it keeps
//! the windows' sizes and positions fixed, and the interval is that of the mean difference.

use std::fmt::Write as _;

use scorch_api::tables::TrainStep;
use scorch_engine::error::EngineError;
use scorch_engine::record::RunRecord;
use scorch_engine::store::Store;

use crate::stats::{Interval, mean_t};
use crate::summary::collect_rows;

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
}

impl RewardTrend {
    /// Whether the interval lies wholly above 0.
    pub fn rose(&self) -> bool {
        self.difference.lo > 0.0
    }
}

/// The trend of `rewards` (the mean reward of each step, in order): windows of `WINDOW` steps,
/// or of half the steps when there are fewer than `2 * WINDOW`; `None` below 4 steps (a
/// window of one step has no interval).
pub fn reward_trend(node: &str, rewards: &[f64]) -> Option<RewardTrend> {
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
    })
}

/// The reward trend of every `rl` node of a run that ran at least 4 steps (its `metrics`
/// table), in node order.
pub async fn collect_reward_trends(
    store: &Store,
    record: &RunRecord,
) -> Result<Vec<RewardTrend>, EngineError> {
    Ok(
        collect_rows::<TrainStep>(store, record, "metrics", Some("rl"))
            .await?
            .into_iter()
            .filter_map(|(node, mut rows)| {
                rows.sort_by_key(|r| r.step);
                let rewards: Vec<f64> = rows.iter().map(|r| r.reward).collect();
                reward_trend(&node, &rewards)
            })
            .collect(),
    )
}

/// The trends as a Markdown table.
pub fn trends_markdown(trends: &[RewardTrend]) -> String {
    let mut s = String::from(
        "| rl node | steps | mean reward, first steps | last steps | last − first, paired by position [95% t] | rose |\n|---|---|---|---|---|---|\n",
    );
    for t in trends {
        let d = &t.difference;
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} (first {w}) | {:.3} (last {w}) | {:+.3} [{:+.3}, {:+.3}] | {} |",
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
        let t = reward_trend("rl", &rising).unwrap();
        assert_eq!((t.steps, t.window), (30, 10));
        assert!((t.difference.estimate - 0.2).abs() < 1e-9, "{t:?}");
        assert!((t.last - t.first - 0.2).abs() < 1e-9);
        assert!(t.rose());
        // The same values in an order that ends where it began: no rise.
        let mut flat = rising[..10].to_vec();
        flat.extend(&rising[10..20]);
        flat.extend(&rising[..10]);
        let t = reward_trend("rl", &flat).unwrap();
        assert_eq!(t.difference.estimate, 0.0);
        assert!(!t.rose());
    }

    #[test]
    fn short_runs_use_half_their_steps_and_tiny_ones_none() {
        let t = reward_trend("rl", &[0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.9, 1.0]).unwrap();
        assert_eq!(t.window, 4);
        assert!((t.first - 0.275).abs() < 1e-12 && (t.last - 0.8).abs() < 1e-12);
        assert!(reward_trend("rl", &[0.1, 0.2, 0.3]).is_none());
    }

    #[test]
    fn the_interval_matches_a_t_interval_by_hand() {
        // Differences 0.1, 0.3 (window 2): mean 0.2, sd 0.1414, t(1) = 12.706.
        let t = reward_trend("rl", &[0.0, 0.0, 0.1, 0.3]).unwrap();
        let half = 12.706_204_736 * (0.02f64).sqrt() / 2f64.sqrt();
        assert!((t.difference.lo - (0.2 - half)).abs() < 1e-6, "{t:?}");
        assert!((t.difference.hi - (0.2 + half)).abs() < 1e-6, "{t:?}");
    }
}
