//! `scorch compare RUN`: the experiment's answer. Eval nodes are grouped into arms (their
//! `label`) and seeds (their `seed` matrix value); per arm and split: the mean success across
//! seeds with a 95% t interval, each run's Wilson interval, the paired difference against a
//! baseline arm on the same tasks (paired bootstrap) with McNemar's exact test per seed and
//! the smallest difference the design detects at 80% power (its minimum detectable effect), and
//! the teacher's cost (teacher-written steps and tokens in the data the arm was trained on,
//! plus every repair of the mentored solving behind it).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use scorch_tables::{Author, EvalResult, Task, Trajectory};

use crate::rows::collect_rows;
use crate::stats::{
    Interval, mcnemar_exact, mean_t, minimum_detectable_effect, paired_bootstrap, sample_sd, wilson,
};
use scorch_engine::error::EngineError;
use scorch_engine::record::RunRecord;
use scorch_engine::store::Store;

pub use scorch_engine::dag::Graph;

/// One evaluated run of an arm.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The eval node.
    pub node: String,
    /// The `seed` matrix value ("-" without one).
    pub seed: String,
    /// Per task: solved (first sample).
    pub solved: BTreeMap<String, bool>,
    /// Solved share with its Wilson interval.
    pub success: Interval,
    /// Teacher-written steps behind the arm's model (None: no training upstream).
    pub teacher_steps: Option<u64>,
    /// Tokens of those steps.
    pub teacher_tokens: Option<u64>,
}

/// One arm on one split.
#[derive(Debug, Clone)]
pub struct ArmSummary {
    /// The arm (the eval's `label`).
    pub arm: String,
    /// The split (or benchmark file).
    pub split: String,
    /// Its runs, one per seed.
    pub runs: Vec<RunOutcome>,
    /// Mean success across seeds with a t interval.
    pub mean: Interval,
    /// Difference against the baseline on the same (seed, task) pairs, bootstrap interval.
    pub vs_baseline: Option<Interval>,
    /// McNemar exact p-value per seed against the baseline.
    pub mcnemar: Vec<(String, f64)>,
    /// The smallest true difference from the baseline this design detects (two-sided, 5%
    /// level, 80% power), from the spread of the observed paired differences.
    pub mde: Option<f64>,
    /// Success by number of operations (built-in tasks): ops → (solved, n) over all seeds.
    pub by_ops: BTreeMap<u32, (u64, u64)>,
    /// The share of the gap between two arms this arm closes (`gap_closed`), from the means.
    pub gap_closed: Option<f64>,
}

/// An arm `--gap` names that the run does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--gap: no arm `{name}` in this run (arms: {known})")]
pub struct UnknownArm {
    /// The arm named.
    pub name: String,
    /// The run's arms, comma-separated.
    pub known: String,
}

/// Set each arm's share of the gap from arm `from` to arm `to` on its split that it closes:
/// `(arm - from) / (to - from)` of the means across seeds (0 at `from`, 1 at `to`). A split
/// where the two arms have the same mean gets none; an arm missing from every split is an error.
pub fn gap_closed(arms: &mut [ArmSummary], from: &str, to: &str) -> Result<(), UnknownArm> {
    for name in [from, to] {
        if !arms.iter().any(|a| a.arm == name) {
            let known: BTreeSet<&str> = arms.iter().map(|a| a.arm.as_str()).collect();
            return Err(UnknownArm {
                name: name.to_owned(),
                known: known.into_iter().collect::<Vec<_>>().join(", "),
            });
        }
    }
    let mean_of = |arms: &[ArmSummary], arm: &str, split: &str| {
        arms.iter()
            .find(|a| a.arm == arm && a.split == split)
            .map(|a| a.mean.estimate)
    };
    let shares: Vec<Option<f64>> = arms
        .iter()
        .map(|a| {
            let lo = mean_of(arms, from, &a.split)?;
            let hi = mean_of(arms, to, &a.split)?;
            ((hi - lo).abs() > f64::EPSILON).then(|| (a.mean.estimate - lo) / (hi - lo))
        })
        .collect();
    for (a, share) in arms.iter_mut().zip(shares) {
        a.gap_closed = share;
    }
    Ok(())
}

/// Matrix values in a node id `name[k=v,k=v]`.
fn matrix_of(id: &str) -> BTreeMap<String, String> {
    let Some(inner) = id.split_once('[').and_then(|(_, r)| r.strip_suffix(']')) else {
        return BTreeMap::new();
    };
    inner
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Inputs that only size a baseline (`filter` in `count` and `budget` modes): what flows in
/// through them is not the arm's data, so its cost is not the arm's.
const REFERENCE_INPUTS: [&str; 2] = ["like", "spent"];

/// The nodes whose data reaches node `start`.
fn upstream(graph: &Graph, start: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start];
    while let Some(i) = todo.pop() {
        for (p, _, input) in graph.inputs.get(i).into_iter().flatten() {
            if REFERENCE_INPUTS.contains(&input.as_str()) {
                continue;
            }
            if seen.insert(*p) {
                todo.push(*p);
            }
        }
    }
    seen
}

/// Compare the arms of `record`; `baseline` names the arm differences are taken against.
pub async fn compare(
    store: &Store,
    record: &RunRecord,
    graph: &Graph,
    baseline: Option<&str>,
) -> Result<Vec<ArmSummary>, EngineError> {
    let results: BTreeMap<String, Vec<EvalResult>> =
        collect_rows::<EvalResult>(store, record, "results", Some("eval"))
            .await?
            .into_iter()
            .collect();
    // Trajectory tables by (node, output): eval and rollout outputs, and filters' selections.
    let mut trajectories: BTreeMap<(String, String), Vec<Trajectory>> = BTreeMap::new();
    for port in ["trajectories", "sft"] {
        for (node, rows) in collect_rows::<Trajectory>(store, record, port, None).await? {
            trajectories.insert((node, port.to_owned()), rows);
        }
    }
    let tasks: BTreeMap<String, Vec<Task>> = collect_rows::<Task>(store, record, "tasks", None)
        .await?
        .into_iter()
        .collect();
    let index: BTreeMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(i, (id, _))| (id.as_str(), i))
        .collect();
    let ops: BTreeMap<&str, u32> = tasks
        .values()
        .flatten()
        .filter_map(|t| {
            let v: serde_json::Value = serde_json::from_str(&t.metadata).ok()?;
            Some((
                t.task_id.as_str(),
                u32::try_from(v.get("ops")?.as_u64()?).ok()?,
            ))
        })
        .collect();
    let split_of: BTreeMap<&str, &str> = tasks
        .values()
        .flatten()
        .map(|t| (t.task_id.as_str(), t.split.as_str()))
        .collect();

    // (arm, split) → runs.
    let mut groups: BTreeMap<(String, String), Vec<RunOutcome>> = BTreeMap::new();
    for (node, rows) in &results {
        let Some(first) = rows.first() else { continue };
        let Some(trajs) = trajectories.get(&(node.clone(), "trajectories".to_owned())) else {
            continue;
        };
        let (steps, tokens) = match index.get(node.as_str()) {
            Some(&i) => teacher_cost(graph, i, &trajectories),
            None => (None, None),
        };
        let mut by_split: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
        for t in trajs.iter().filter(|t| t.sample == 0) {
            let split = split_of
                .get(t.task_id.as_str())
                .map_or(first.split.clone(), |s| (*s).to_owned());
            by_split
                .entry(split)
                .or_default()
                .insert(t.task_id.clone(), t.correct);
        }
        let seed = matrix_of(node)
            .remove("seed")
            .unwrap_or_else(|| "-".to_owned());
        for (split, solved) in by_split {
            let k = solved.values().filter(|c| **c).count() as u64;
            let success = wilson(k, solved.len() as u64, 0.95);
            groups
                .entry((first.label.clone(), split))
                .or_default()
                .push(RunOutcome {
                    node: node.clone(),
                    seed: seed.clone(),
                    solved,
                    success,
                    teacher_steps: steps,
                    teacher_tokens: tokens,
                });
        }
    }
    let mut out = Vec::new();
    // The baseline's runs by split (the only ones a difference needs beside the arm's own).
    let baseline_runs: BTreeMap<String, Vec<RunOutcome>> = groups
        .iter()
        .filter(|((arm, _), _)| Some(arm.as_str()) == baseline)
        .map(|((_, split), runs)| (split.clone(), runs.clone()))
        .collect();
    for ((arm, split), mut runs) in groups {
        runs.sort_by(|a, b| a.seed.cmp(&b.seed));
        // A t interval of a share can cross 0 or 1; the share cannot.
        let mut mean = mean_t(
            &runs.iter().map(|r| r.success.estimate).collect::<Vec<_>>(),
            0.95,
        );
        mean.lo = mean.lo.max(0.0);
        mean.hi = mean.hi.min(1.0);
        let base = baseline
            .filter(|b| *b != arm)
            .and_then(|_| baseline_runs.get(&split));
        let (mut xs, mut ys, mut mcnemar) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(base) = base {
            for r in &runs {
                // The same seed of the baseline, else its only run (e.g. the teacher).
                let other = base
                    .iter()
                    .find(|b| b.seed == r.seed)
                    .or_else(|| (base.len() == 1).then(|| &base[0]));
                let Some(other) = other else { continue };
                let (mut only_a, mut only_b) = (0u64, 0u64);
                for (task, &a) in &r.solved {
                    if let Some(&b) = other.solved.get(task) {
                        xs.push(f64::from(u8::from(a)));
                        ys.push(f64::from(u8::from(b)));
                        only_a += u64::from(a && !b);
                        only_b += u64::from(b && !a);
                    }
                }
                mcnemar.push((r.seed.clone(), mcnemar_exact(only_a, only_b)));
            }
        }
        let vs_baseline = (!xs.is_empty()).then(|| paired_bootstrap(&xs, &ys, 10_000, 0.95, 0));
        let diffs: Vec<f64> = xs.iter().zip(&ys).map(|(a, b)| a - b).collect();
        let mde = (diffs.len() >= 2)
            .then(|| minimum_detectable_effect(sample_sd(&diffs), diffs.len(), 0.05, 0.8))
            .filter(|m| m.is_finite());
        let mut by_ops: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for r in &runs {
            for (task, &ok) in &r.solved {
                if let Some(&o) = ops.get(task.as_str()) {
                    let e = by_ops.entry(o).or_default();
                    e.0 += u64::from(ok);
                    e.1 += 1;
                }
            }
        }
        out.push(ArmSummary {
            arm,
            split,
            runs,
            mean,
            vs_baseline,
            mcnemar,
            mde,
            by_ops,
            gap_closed: None,
        });
    }
    Ok(out)
}

/// Teacher-written steps and tokens behind eval node `i`: the trajectories its upstream `sft`
/// nodes trained on and every trajectory of its upstream `correct` nodes (their repairs),
/// each trajectory counted once.
fn teacher_cost(
    graph: &Graph,
    i: usize,
    trajectories: &BTreeMap<(String, String), Vec<Trajectory>>,
) -> (Option<u64>, Option<u64>) {
    let up = upstream(graph, i);
    let mut any = false;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let (mut steps, mut tokens) = (0u64, 0u64);
    let mut count = |ts: &[Trajectory], only_kept: bool| {
        for t in ts {
            if only_kept && !t.correct {
                continue;
            }
            if !seen.insert(t.trajectory_id.clone()) {
                continue;
            }
            for s in t.steps.iter().filter(|s| s.author == Author::Teacher) {
                steps += 1;
                tokens += u64::from(s.completion_tokens);
            }
        }
    };
    for &n in &up {
        let kind = graph.nodes.get(n).map_or("", |x| x.1.as_str());
        match kind {
            "sft" => {
                any = true;
                for (p, output, _) in graph.inputs.get(n).into_iter().flatten() {
                    let producer = graph.nodes.get(*p).map_or(String::new(), |x| x.0.clone());
                    if let Some(ts) = trajectories.get(&(producer, output.clone())) {
                        // sft trains on correct trajectories only (its default).
                        count(ts, true);
                    }
                }
            }
            "correct" => {
                any = true;
                if let Some(ts) =
                    trajectories.get(&(graph.nodes[n].0.clone(), "trajectories".to_owned()))
                {
                    count(ts, false);
                }
            }
            _ => {}
        }
    }
    if any {
        (Some(steps), Some(tokens))
    } else {
        (None, None)
    }
}

/// The comparison as Markdown.
pub fn markdown(arms: &[ArmSummary], baseline: Option<&str>) -> String {
    let gap = arms.iter().any(|a| a.gap_closed.is_some());
    let mut s = format!(
        "| arm | split | seeds | success (mean, 95% CI across seeds) | per-seed success [Wilson 95%] | vs {} (paired bootstrap 95%) | detectable at 80% power | McNemar p per seed | teacher steps (mean) | teacher tokens (mean) |{}\n|---|---|---|---|---|---|---|---|---|---|{}\n",
        baseline.unwrap_or("baseline"),
        if gap {
            " share of the gap closed |"
        } else {
            ""
        },
        if gap { "---|" } else { "" },
    );
    for a in arms {
        let per_seed: Vec<String> = a
            .runs
            .iter()
            .map(|r| {
                format!(
                    "{}: {:.1}% [{:.1}, {:.1}]",
                    r.seed,
                    100.0 * r.success.estimate,
                    100.0 * r.success.lo,
                    100.0 * r.success.hi
                )
            })
            .collect();
        let diff = a.vs_baseline.map_or("—".to_owned(), |d| {
            format!(
                "{:+.1} pts [{:+.1}, {:+.1}]",
                100.0 * d.estimate,
                100.0 * d.lo,
                100.0 * d.hi
            )
        });
        let p: Vec<String> = a
            .mcnemar
            .iter()
            .map(|(seed, p)| format!("{seed}: {p:.3}"))
            .collect();
        let mean_cost = |f: fn(&RunOutcome) -> Option<u64>| {
            let v: Vec<u64> = a.runs.iter().filter_map(f).collect();
            if v.is_empty() {
                "—".to_owned()
            } else {
                format!("{:.0}", v.iter().sum::<u64>() as f64 / v.len() as f64)
            }
        };
        let gap_cell = if gap {
            a.gap_closed
                .map_or(" — |".to_owned(), |g| format!(" {:.0}% |", 100.0 * g))
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1}% [{:.1}, {:.1}] | {} | {} | {} | {} | {} | {} |{gap_cell}",
            a.arm,
            a.split,
            a.runs.len(),
            100.0 * a.mean.estimate,
            100.0 * a.mean.lo,
            100.0 * a.mean.hi,
            per_seed.join("; "),
            diff,
            a.mde
                .map_or("—".to_owned(), |m| format!("±{:.1} pts", 100.0 * m)),
            if p.is_empty() {
                "—".to_owned()
            } else {
                p.join("; ")
            },
            mean_cost(|r| r.teacher_steps),
            mean_cost(|r| r.teacher_tokens),
        );
    }
    s
}

/// Write `compare.md`, `compare.json` and the figures (success vs teacher cost, success by
/// number of operations) into `dir`.
pub fn write(arms: &[ArmSummary], baseline: Option<&str>, dir: &Path) -> Result<(), EngineError> {
    let io = |e: std::io::Error| EngineError::io(format!("writing {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::write(dir.join("compare.md"), markdown(arms, baseline)).map_err(io)?;
    let json: Vec<serde_json::Value> = arms
        .iter()
        .map(|a| {
            serde_json::json!({
                "arm": a.arm, "split": a.split,
                "mean": a.mean.estimate, "ci": [a.mean.lo, a.mean.hi],
                "vs_baseline": a.vs_baseline.map(|d| serde_json::json!({"diff": d.estimate, "ci": [d.lo, d.hi]})),
                "mde": a.mde,
                "gap_closed": a.gap_closed,
                "mcnemar_p": a.mcnemar.iter().map(|(s, p)| serde_json::json!({"seed": s, "p": p})).collect::<Vec<_>>(),
                "runs": a.runs.iter().map(|r| serde_json::json!({
                    "node": r.node, "seed": r.seed, "n": r.solved.len(), "success": r.success.estimate,
                    "wilson": [r.success.lo, r.success.hi],
                    "teacher_steps": r.teacher_steps, "teacher_tokens": r.teacher_tokens,
                })).collect::<Vec<_>>(),
                "by_ops": a.by_ops.iter().map(|(o, (k, n))| serde_json::json!({"ops": o, "solved": k, "n": n})).collect::<Vec<_>>(),
            })
        })
        .collect();
    std::fs::write(
        dir.join("compare.json"),
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
    .map_err(io)?;
    let splits: BTreeSet<&str> = arms.iter().map(|a| a.split.as_str()).collect();
    for split in splits {
        let mine: Vec<&ArmSummary> = arms.iter().filter(|a| a.split == split).collect();
        let points: Vec<crate::plots::ArmPoints> = mine
            .iter()
            .filter(|a| a.runs.iter().any(|r| r.teacher_steps.is_some()))
            .map(|a| {
                let pts: Vec<(f64, f64)> = a
                    .runs
                    .iter()
                    .filter_map(|r| r.teacher_steps.map(|c| (c as f64, r.success.estimate)))
                    .collect();
                let cost = pts.iter().map(|p| p.0).sum::<f64>() / pts.len().max(1) as f64;
                (
                    a.arm.clone(),
                    pts,
                    (cost, a.mean.estimate),
                    (a.mean.lo.max(0.0), a.mean.hi.min(1.0)),
                )
            })
            .collect();
        if !points.is_empty() {
            crate::plots::scatter(
                &dir.join(format!("success_vs_cost_{split}.png")),
                &format!("Success vs teacher cost ({split})"),
                "teacher-written steps",
                "success",
                &points,
            )?;
        }
        let ops: BTreeSet<u32> = mine.iter().flat_map(|a| a.by_ops.keys().copied()).collect();
        if !ops.is_empty() {
            let groups: Vec<String> = ops.iter().map(|o| format!("{o} ops")).collect();
            // Each bar's height and 95% Wilson interval, from its (solved, tasks) over all
            // seeds; an arm without tasks of that size gets an empty bar.
            let (series, intervals): (Vec<(String, Vec<f64>)>, crate::plots::Intervals) = mine
                .iter()
                .map(|a| {
                    let (values, bands) = ops
                        .iter()
                        .map(|o| match a.by_ops.get(o) {
                            Some(&(k, n)) => {
                                let w = crate::stats::wilson(k, n, 0.95);
                                (k as f64 / n.max(1) as f64, Some((w.lo, w.hi)))
                            }
                            None => (0.0, None),
                        })
                        .unzip();
                    ((a.arm.clone(), values), bands)
                })
                .unzip();
            crate::plots::bars(
                &dir.join(format!("success_by_ops_{split}.png")),
                &format!("Success by number of operations ({split}; 95% Wilson intervals)"),
                "success",
                &groups,
                &series,
                &intervals,
                1.0,
            )?;
        }
    }
    Ok(())
}
