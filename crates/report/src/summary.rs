//! `scorch report RUN`: one folder with the results table (Markdown and Parquet), wall time
//! per node, teacher cost, PNG figures (accuracy by stage, SFT loss, RL reward, the mix of
//! reward classes, the DAG), the DAG as Mermaid and Graphviz text, and an HTML page tying them
//! together.

use std::fmt::Write as _;
use std::path::Path;

use std::collections::BTreeMap;

use scorch_tables::{EvalResult, TrainStep, Trajectory};

use crate::rows::collect_rows;
use crate::stats::{Interval, paired_bootstrap, wilson};
use crate::trend::{RewardTrend, collect_reward_trends, trends_markdown};
use scorch_engine::dag::Graph;
use scorch_engine::error::{EngineError, EngineErrorKind};
use scorch_engine::record::RunRecord;
use scorch_engine::store::Store;

/// A results row as the tables print it: the node that produced it, its Wilson 95%
/// interval, and its paired difference against the first arm evaluated on the same tasks.
#[derive(Debug, Clone)]
pub struct ResultLine {
    /// The `eval` node.
    pub node: String,
    /// The row.
    pub result: EvalResult,
    /// Wilson 95% interval of the accuracy.
    pub wilson: Interval,
    /// `(baseline label, paired difference with its 95% bootstrap interval)`; `None` for the
    /// baseline itself and for arms with no earlier arm on the same tasks.
    pub vs: Option<(String, Interval)>,
    /// The same against the arm just above it on the same tasks (SCoRe-RL against SCoRe-SFT in
    /// the main job); `None` where that is the baseline or there is none.
    pub vs_previous: Option<(String, Interval)>,
}

/// An arm evaluated on some tasks: what later arms on the same tasks are paired with.
struct Arm {
    suite: String,
    split: String,
    context: Vec<String>,
    /// Task id -> success (the mean over samples).
    outcomes: BTreeMap<String, f64>,
    label: String,
}

/// The matrix values of a node id (`eval[seed=1,split=test]`) other than `split`: arms are
/// paired only within the same seed (or other matrix values).
fn matrix_context(node: &str) -> Vec<&str> {
    node.split_once('[')
        .map(|(_, rest)| rest.trim_end_matches(']'))
        .map(|inner| {
            inner
                .split(',')
                .filter(|kv| !kv.trim_start().starts_with("split="))
                .collect()
        })
        .unwrap_or_default()
}

/// Every `results` row a run's nodes produced (the `eval` nodes), in node order, each with
/// its Wilson interval and, where an earlier arm was evaluated on the same tasks (same suite,
/// split, task ids and matrix values other than the split), the paired difference against
/// the first such arm and against the last (the arm just above): per task, success (the mean
/// over samples) of this arm minus the other's, with a paired-bootstrap 95% interval (10,000
/// resamples).
pub async fn collect_results(
    store: &Store,
    record: &RunRecord,
) -> Result<Vec<ResultLine>, EngineError> {
    let results: Vec<(String, EvalResult)> =
        collect_rows::<EvalResult>(store, record, "results", None)
            .await?
            .into_iter()
            .flat_map(|(node, rows)| rows.into_iter().map(move |r| (node.clone(), r)))
            .collect();
    let trajectories: BTreeMap<String, Vec<Trajectory>> =
        collect_rows::<Trajectory>(store, record, "trajectories", Some("eval"))
            .await?
            .into_iter()
            .collect();
    // Per node: task id -> success, the mean over samples. Trajectories carry no suite or
    // split, so a node with several results rows (suites or splits) is not paired.
    let rows_of_node: Vec<usize> = results
        .iter()
        .map(|(n, _)| results.iter().filter(|(m, _)| m == n).count())
        .collect();
    let outcomes = |node: &str, rows: usize| -> BTreeMap<String, f64> {
        if rows != 1 {
            return BTreeMap::new();
        }
        let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for t in trajectories.get(node).into_iter().flatten() {
            let e = sums.entry(t.task_id.clone()).or_default();
            e.0 += f64::from(u8::from(t.correct));
            e.1 += 1.0;
        }
        sums.into_iter().map(|(k, (c, n))| (k, c / n)).collect()
    };
    let mut arms: Vec<Arm> = Vec::new();
    let mut lines = Vec::with_capacity(results.len());
    for ((node, r), rows) in results.into_iter().zip(rows_of_node) {
        let wilson = wilson(u64::from(r.correct), u64::from(r.n), 0.95);
        let mine = outcomes(&node, rows);
        let context: Vec<String> = matrix_context(&node)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let same: Vec<&Arm> = arms
            .iter()
            .filter(|b| {
                b.suite == r.suite
                    && b.split == r.split
                    && b.context == context
                    && !mine.is_empty()
                    && b.outcomes.keys().eq(mine.keys())
            })
            .collect();
        let x: Vec<f64> = mine.values().copied().collect();
        let against = |b: &Arm| {
            let y: Vec<f64> = b.outcomes.values().copied().collect();
            (b.label.clone(), paired_bootstrap(&x, &y, 10_000, 0.95, 0))
        };
        let vs = same.first().map(|b| against(b));
        let vs_previous = (same.len() > 1).then(|| against(same[same.len() - 1]));
        if !mine.is_empty() {
            arms.push(Arm {
                suite: r.suite.clone(),
                split: r.split.clone(),
                context,
                outcomes: mine,
                label: r.label.clone(),
            });
        }
        lines.push(ResultLine {
            node,
            result: r,
            wilson,
            vs,
            vs_previous,
        });
    }
    Ok(lines)
}

/// A share as a percentage with its interval: `41.3% [35.9, 46.9]`.
fn pct(i: &Interval) -> String {
    format!(
        "{:.1}% [{:.1}, {:.1}]",
        100.0 * i.estimate,
        100.0 * i.lo,
        100.0 * i.hi
    )
}

/// The results as a Markdown table: accuracy with its Wilson 95% interval, the paired
/// difference against the first arm on the same tasks (percentage points, 95% interval),
/// the same against the arm just above it, the share of distinct final answers (a collapsed
/// student answers the same few values).
pub fn results_markdown(lines: &[ResultLine]) -> String {
    let mut s = String::from(
        "| arm | suite | split | n | accuracy [95% CI] | vs first arm, same tasks [95% CI] | vs arm above [95% CI] | pass@k | distinct answers | mean turns | mean tokens | node |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let points = |(base, d): &(String, Interval)| {
        format!(
            "{:+.1} pp [{:+.1}, {:+.1}] vs {base}",
            100.0 * d.estimate,
            100.0 * d.lo,
            100.0 * d.hi
        )
    };
    for l in lines {
        let r = &l.result;
        let vs = l.vs.as_ref().map_or_else(|| "(baseline)".into(), points);
        let above = l.vs_previous.as_ref().map_or_else(String::new, points);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {vs} | {above} | {:.1}% | {:.1}% | {:.2} | {:.1} | {} |",
            r.label,
            r.suite,
            r.split,
            r.n,
            pct(&l.wilson),
            100.0 * r.pass_at_k,
            100.0 * r.answer_diversity,
            r.mean_turns,
            r.mean_tokens,
            l.node
        );
    }
    s
}

/// Wall time, outcome and teacher cost per node, as Markdown.
pub fn nodes_markdown(record: &RunRecord) -> String {
    let mut s = String::from(
        "| node | kind | outcome | wall time | teacher tokens (prompt / completion) |\n|---|---|---|---|---|\n",
    );
    for n in &record.nodes {
        let metric = |name: &str| {
            n.metrics
                .iter()
                .find(|m| m.name == name && m.step.is_none())
                .map(|m| m.value)
        };
        let teacher = match (
            metric("teacher_prompt_tokens"),
            metric("teacher_completion_tokens"),
        ) {
            (Some(p), Some(c)) => format!("{p:.0} / {c:.0}"),
            _ if n.kind == "rollout" => {
                match (metric("prompt_tokens"), metric("completion_tokens")) {
                    (Some(p), Some(c)) => format!("{p:.0} / {c:.0} (the rollout's policy)"),
                    _ => String::new(),
                }
            }
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} s | {} |",
            n.id,
            n.kind,
            n.outcome,
            n.duration_ms as f64 / 1000.0,
            teacher
        );
    }
    s
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn md_table_to_html(md: &str) -> String {
    let mut rows = md
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"));
    let cells = |l: &str| -> Vec<String> {
        l.trim_matches('|')
            .split('|')
            .map(|c| html_escape(c.trim()))
            .collect()
    };
    let mut out = String::from("<table>\n");
    if let Some(h) = rows.next() {
        out.push_str("<tr>");
        for c in cells(h) {
            let _ = write!(out, "<th>{c}</th>");
        }
        out.push_str("</tr>\n");
    }
    for r in rows {
        out.push_str("<tr>");
        for c in cells(r) {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// The top of a share axis zoomed to the data and the intervals' top ends (with room for the
/// labels), so 1.3% and 0.7% are told apart; at most 100%.
fn zoom_with(series: &[(String, Vec<f64>)], intervals: &[Vec<Option<(f64, f64)>>]) -> f64 {
    let top = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .chain(intervals.iter().flatten().flatten().map(|(_, hi)| *hi))
        .fold(0.0f64, f64::max);
    (top * 1.25).clamp(0.02, 1.0)
}

/// The figures of the report, each written as a PNG in `dir`; returns `(file, caption)` of
/// those drawn (a figure without data is left out).
pub async fn figures(
    store: &Store,
    record: &RunRecord,
    results: &[EvalResult],
    dag: Option<&Graph>,
    dir: &Path,
) -> Result<Vec<(String, String)>, EngineError> {
    let mut drawn = Vec::new();
    if !results.is_empty() {
        let mut arms: Vec<String> = Vec::new();
        let mut splits: Vec<String> = Vec::new();
        let suites: std::collections::BTreeSet<&str> =
            results.iter().map(|r| r.suite.as_str()).collect();
        let series_of = |r: &EvalResult| {
            if suites.len() > 1 {
                format!("{}/{}", r.suite, r.split)
            } else {
                r.split.clone()
            }
        };
        for r in results {
            if !arms.contains(&r.label) {
                arms.push(r.label.clone());
            }
            let sname = series_of(r);
            if !splits.contains(&sname) {
                splits.push(sname);
            }
        }
        // Each bar's correct answers and tasks over all its rows: its height and its
        // Wilson interval.
        let counts: Vec<Vec<(u64, u64)>> = splits
            .iter()
            .map(|sp| {
                arms.iter()
                    .map(|arm| {
                        results
                            .iter()
                            .filter(|r| &r.label == arm && &series_of(r) == sp)
                            .fold((0, 0), |(k, n), r| {
                                (k + u64::from(r.correct), n + u64::from(r.n))
                            })
                    })
                    .collect()
            })
            .collect();
        let series: Vec<(String, Vec<f64>)> = splits
            .iter()
            .zip(&counts)
            .map(|(sp, bars)| {
                let values = bars.iter().map(|&(k, n)| k as f64 / n.max(1) as f64);
                (sp.clone(), values.collect())
            })
            .collect();
        let intervals: crate::plots::Intervals = counts
            .iter()
            .map(|bars| {
                bars.iter()
                    .map(|&(k, n)| {
                        (n > 0).then(|| {
                            let w = wilson(k, n, 0.95);
                            (w.lo, w.hi)
                        })
                    })
                    .collect()
            })
            .collect();
        crate::plots::bars(
            &dir.join("accuracy.png"),
            "Accuracy by stage (95% Wilson intervals)",
            "accuracy",
            &arms,
            &series,
            &intervals,
            zoom_with(&series, &intervals),
        )?;
        drawn.push(("accuracy.png".into(), "Accuracy by stage and split".into()));
    }
    let curves = |tables: Vec<(String, Vec<TrainStep>)>, pick: fn(&TrainStep) -> f64| {
        tables
            .into_iter()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(id, rows)| {
                let pts = rows.iter().map(|r| (f64::from(r.step), pick(r))).collect();
                (id, pts)
            })
            .collect::<Vec<(String, Vec<(f64, f64)>)>>()
    };
    let loss = curves(
        collect_rows::<TrainStep>(store, record, "loss", Some("sft")).await?,
        |r| r.loss,
    );
    if !loss.is_empty() {
        crate::plots::lines(
            &dir.join("sft_loss.png"),
            "SFT loss",
            "step",
            "masked NLL",
            &loss,
        )?;
        drawn.push(("sft_loss.png".into(), "SFT loss per step".into()));
    }
    let reward = curves(
        collect_rows::<TrainStep>(store, record, "metrics", Some("rl")).await?,
        |r| r.reward,
    );
    if !reward.is_empty() {
        crate::plots::lines(
            &dir.join("rl_reward.png"),
            "RL reward",
            "step",
            "mean reward",
            &reward,
        )?;
        drawn.push(("rl_reward.png".into(), "Mean RL reward per step".into()));
    }
    // The RL steps' diagnostics, a figure each, a line per rl node.
    for (name, title, axis) in [
        (
            "entropy",
            "RL: entropy of the sampled tokens",
            "mean -log p (nats)",
        ),
        (
            "zero_variance_groups",
            "RL: groups whose rewards are all equal",
            "share of groups",
        ),
        (
            "clip_fraction",
            "RL: tokens whose ratio was clipped",
            "share of tokens",
        ),
        ("kl", "RL: KL to the starting policy", "mean per token"),
    ] {
        let series: Vec<(String, Vec<(f64, f64)>)> = record
            .nodes
            .iter()
            .filter(|n| n.kind == "rl")
            .map(|n| {
                let pts: Vec<(f64, f64)> = n
                    .metrics
                    .iter()
                    .filter(|m| m.name == name)
                    .filter_map(|m| Some((m.step? as f64, m.value)))
                    .collect();
                (n.id.clone(), pts)
            })
            .filter(|(_, pts)| !pts.is_empty())
            .collect();
        if !series.is_empty() {
            let file = format!("rl_{name}.png");
            crate::plots::lines(&dir.join(&file), title, "step", axis, &series)?;
            drawn.push((file, title.to_owned()));
        }
    }
    let mix: Vec<(String, Vec<(String, f64)>)> = record
        .nodes
        .iter()
        .filter(|n| n.kind == "rl")
        .map(|n| {
            let classes: Vec<(String, f64)> = n
                .metrics
                .iter()
                .filter(|m| m.step.is_none())
                .filter_map(|m| {
                    m.name
                        .strip_prefix("reward_class_")
                        .map(|c| (c.to_owned(), m.value))
                })
                .collect();
            (n.id.clone(), classes)
        })
        .filter(|(_, c)| c.iter().any(|x| x.1 > 0.0))
        .collect();
    if !mix.is_empty() {
        let groups: Vec<String> = mix.iter().map(|m| m.0.clone()).collect();
        let mut names: Vec<String> = Vec::new();
        for (_, classes) in &mix {
            for (c, v) in classes {
                if *v > 0.0 && !names.contains(c) {
                    names.push(c.clone());
                }
            }
        }
        let series: Vec<(String, Vec<f64>)> = names
            .iter()
            .map(|c| {
                let values = mix
                    .iter()
                    .map(|(_, classes)| {
                        let total: f64 = classes.iter().map(|x| x.1).sum();
                        classes
                            .iter()
                            .find(|x| &x.0 == c)
                            .map_or(0.0, |x| x.1 / total.max(1.0))
                    })
                    .collect();
                (c.clone(), values)
            })
            .collect();
        crate::plots::bars(
            &dir.join("reward_mix.png"),
            "Reward classes of the RL episodes",
            "share of episodes",
            &groups,
            &series,
            &[],
            1.0,
        )?;
        drawn.push((
            "reward_mix.png".into(),
            "The mix of reward classes (key-step reward)".into(),
        ));
    }
    if let Some(d) = dag {
        crate::plots::dag(
            &dir.join("dag.png"),
            &format!("workflow {}", record.workflow),
            d,
        )?;
        drawn.push(("dag.png".into(), "The workflow's DAG".into()));
    }
    Ok(drawn)
}

/// Write the report of `record` into `dir`. `dag` is the workflow's graph when its file is
/// still there (drawn as a figure, and as Mermaid and dot text).
pub async fn write(
    store: &Store,
    record: &RunRecord,
    dag: Option<Graph>,
    dir: &Path,
) -> Result<(Vec<ResultLine>, Vec<RewardTrend>), EngineError> {
    let io =
        |e: std::io::Error| EngineError::io(format!("writing the report in {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let with_nodes = collect_results(store, record).await?;
    let results_md = results_markdown(&with_nodes);
    let results: Vec<EvalResult> = with_nodes.iter().map(|l| l.result.clone()).collect();
    let nodes_md = nodes_markdown(record);
    let trends = collect_reward_trends(store, record).await?;
    let trends_md = trends_markdown(&trends);
    std::fs::write(dir.join("results.md"), &results_md).map_err(io)?;
    if !trends.is_empty() {
        std::fs::write(dir.join("training.md"), &trends_md).map_err(io)?;
    }
    std::fs::write(dir.join("nodes.md"), &nodes_md).map_err(io)?;
    scorch_api::parquet_io::write_rows(&dir.join("results.parquet"), &results)
        .map_err(|e| EngineError::new(EngineErrorKind::Io, e.to_string()))?;
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>scorch run {id}</title>\n<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}pre{{background:#f4f4f4;padding:1em}}</style></head><body>\n<h1>Run {id}</h1>\n<p>workflow <b>{wf}</b> ({file}), {status:?}, {secs:.1} s, store {store}</p>\n<p>profile: {profile}; vars: {vars}</p>\n<h2>Results</h2>\n{results}{training}<h2>Nodes</h2>\n{nodes}",
        id = html_escape(&record.id),
        wf = html_escape(&record.workflow),
        file = html_escape(&record.file),
        status = record.status,
        secs = record.duration_ms as f64 / 1000.0,
        store = html_escape(&record.store),
        profile = html_escape(record.profile.as_deref().unwrap_or("(none)")),
        vars = html_escape(
            &record
                .vars
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        results = md_table_to_html(&results_md),
        training = if trends.is_empty() {
            String::new()
        } else {
            format!(
                "<h2>RL training reward</h2>\n{}",
                md_table_to_html(&trends_md)
            )
        },
        nodes = md_table_to_html(&nodes_md),
    );
    let drawn = figures(store, record, &results, dag.as_ref(), dir).await?;
    if !drawn.is_empty() {
        html.push_str("<h2>Figures</h2>\n");
        for (file, caption) in &drawn {
            let _ = writeln!(
                html,
                "<figure><img src=\"{file}\" alt=\"{c}\" style=\"max-width:100%\"><figcaption>{c}</figcaption></figure>",
                c = html_escape(caption)
            );
        }
    }
    if let Some(g) = dag {
        let mermaid = g.mermaid();
        std::fs::write(dir.join("dag.mmd"), &mermaid).map_err(io)?;
        std::fs::write(dir.join("dag.dot"), g.dot(&record.workflow)).map_err(io)?;
        let _ = write!(
            html,
            "<h2>DAG</h2>\n<p>dag.mmd (Mermaid) and dag.dot (Graphviz: <code>dot -Tpng dag.dot</code>)</p>\n<pre>{}</pre>\n",
            html_escape(&mermaid)
        );
    }
    html.push_str("</body></html>\n");
    std::fs::write(dir.join("index.html"), html).map_err(io)?;
    Ok((with_nodes, trends))
}
