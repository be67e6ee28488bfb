//! The oracle teacher of the built-in suite: exact, from each task's solution structure.
//!
//! A step is right when it parses, uses only numbers from the story's relevant quantities or
//! earlier results, and computes a valid intermediate quantity of *some* valid order of the
//! operations; the final answer must equal the gold answer. Repairs continue from the
//! student's own verified prefix: the oracle reads how far the prefix got and writes the
//! next step from there.

use std::collections::HashSet;

use async_trait::async_trait;
use scorch_tables::{Author, Step, StepKind, StopReason, Task, Trajectory};

use crate::calc::{self, CalcResult};
use crate::format::render_step;
use crate::suite::{World, world_of};
use crate::teacher::{Cost, Demonstration, Teacher, TeacherError, Verdict, count_tokens};

/// The oracle teacher.
#[derive(Debug, Clone, Copy, Default)]
pub struct Oracle;

fn world(task: &Task) -> Result<World, TeacherError> {
    world_of(task).ok_or_else(|| {
        TeacherError(format!(
            "task {} is not a built-in task (no world in its metadata)",
            task.task_id
        ))
    })
}

/// Integers written in `text`.
pub fn numbers_in(text: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut cur: Option<i64> = None;
    for c in text.chars() {
        match (c.to_digit(10), cur) {
            (Some(d), Some(n)) => cur = n.checked_mul(10).and_then(|n| n.checked_add(i64::from(d))),
            (Some(d), None) => cur = Some(i64::from(d)),
            (None, Some(n)) => {
                out.push(n);
                cur = None;
            }
            (None, None) => {}
        }
    }
    out.extend(cur);
    out
}

/// Every value a right step may compute.
pub fn valid_values(w: &World) -> HashSet<i64> {
    let bases = w.bases();
    let mut v = HashSet::new();
    for (j, seg) in w.segments.iter().enumerate() {
        let vals: Vec<i64> = seg.terms.iter().map(|t| t.value()).collect();
        for t in &seg.terms {
            if t.count.is_some() {
                v.insert(t.amount());
            }
        }
        for mask in 0u32..(1 << vals.len()) {
            let picked: Vec<i64> = (0..vals.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| vals[i])
                .collect();
            let sum: i64 = picked.iter().sum();
            v.insert(bases[j] + sum);
            if picked.len() >= 2 {
                v.insert(sum.abs());
            }
        }
        v.insert(bases[j + 1]);
    }
    v.insert(w.start);
    v.insert(w.answer());
    v
}

/// The oracle's judgement of `steps`.
pub fn judge_world(w: &World, steps: &[Step]) -> Verdict {
    let Some(plan) = steps.first() else {
        return Verdict::CannotLocate {
            analysis: "the trajectory has no steps".into(),
        };
    };
    let mut relevant = w.relevant();
    relevant.sort_unstable();
    if plan.malformed || plan.kind != StepKind::Plan {
        return Verdict::Wrong {
            step: 1,
            analysis: "Step 1 must be a plan (a thought without code).".into(),
        };
    }
    let mut planned = numbers_in(&plan.thought);
    planned.sort_unstable();
    if planned != relevant {
        return Verdict::Wrong {
            step: 1,
            analysis: format!(
                "The plan uses the numbers {planned:?}, but the problem needs exactly {relevant:?}."
            ),
        };
    }
    let valid = valid_values(w);
    let mut available: HashSet<i64> = relevant.iter().copied().collect();
    for (i, step) in steps.iter().enumerate().skip(1) {
        let k = i as u32 + 1;
        if step.malformed || step.kind != StepKind::Step {
            return Verdict::Wrong {
                step: k,
                analysis: format!("Step {k} is not a thought with one calculator expression."),
            };
        }
        let result = match calc::run(&step.code) {
            Ok(r) => r,
            Err(e) => {
                return Verdict::Wrong {
                    step: k,
                    analysis: format!("Step {k} does not compute: {}.", e.0),
                };
            }
        };
        let expr = step.code.trim().trim_start_matches("final_answer");
        if let Some(n) = calc::literals(expr)
            .into_iter()
            .find(|n| !available.contains(n))
        {
            return Verdict::Wrong {
                step: k,
                analysis: format!(
                    "Step {k} uses {n}, which is neither a quantity the problem needs nor an earlier result."
                ),
            };
        }
        match result {
            CalcResult::Value(v) if valid.contains(&v) => {
                available.insert(v);
            }
            CalcResult::Value(v) => {
                return Verdict::Wrong {
                    step: k,
                    analysis: format!(
                        "Step {k} computes {v}, which is not a quantity on the way to the answer."
                    ),
                };
            }
            CalcResult::Final(v) if v == w.answer() => return Verdict::Correct,
            CalcResult::Final(v) => {
                return Verdict::Wrong {
                    step: k,
                    analysis: format!("Step {k} answers {v}, but the answer is {}.", w.answer()),
                };
            }
        }
    }
    Verdict::CannotLocate {
        analysis: "Every step is right, but the trajectory never gives a final answer.".into(),
    }
}

fn step(index: u32, thought: &str, code: String) -> Step {
    Step::new(index, StepKind::Step, Author::Teacher, thought, &code)
}

fn sign(v: i64) -> &'static str {
    if v < 0 { "-" } else { "+" }
}

/// The next right step after `prefix` (whose steps are taken as verified).
pub fn next_step(w: &World, prefix: &[Step]) -> Step {
    let index = prefix.len() as u32 + 1;
    if prefix.is_empty() {
        let nums: Vec<String> = w.relevant().iter().map(i64::to_string).collect();
        return Step::new(
            1,
            StepKind::Plan,
            Author::Teacher,
            &format!("use {}", nums.join(" ")),
            "",
        );
    }
    let observed: HashSet<i64> = prefix
        .iter()
        .filter_map(|s| match calc::run(&s.code) {
            Ok(CalcResult::Value(v)) => Some(v),
            _ => None,
        })
        .collect();
    let literals: Vec<i64> = prefix
        .iter()
        .skip(1)
        .flat_map(|s| calc::literals(&s.code))
        .collect();
    // A term counts as applied only if the prefix wrote its amount (or its bag count and
    // size): values that merely coincide do not move the state.
    let written = |t: &crate::suite::Term| {
        literals.contains(&t.amount())
            || t.count
                .is_some_and(|c| literals.contains(&c) && literals.contains(&t.size))
    };
    let bases = w.bases();
    let n = w.segments.len();
    let answer = w.answer();
    // The most advanced state the prefix has reached: (segment, mask of applied terms).
    let mut state: (usize, u32) = (0, 0);
    let mut best: (usize, u32) = (0, 0);
    for (j, seg) in w.segments.iter().enumerate() {
        for mask in 0u32..(1 << seg.terms.len()) {
            let value = bases[j]
                + (0..seg.terms.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| seg.terms[i].value())
                    .sum::<i64>();
            let key = (j, mask.count_ones());
            let plausible = (0..seg.terms.len())
                .filter(|i| mask & (1 << i) != 0)
                .all(|i| written(&seg.terms[i]));
            if observed.contains(&value) && plausible && key >= best {
                best = key;
                state = (j, mask);
            }
        }
    }
    let done_all = observed.contains(&bases[n]) && n > 0;
    let (j, mask) = if done_all
        && (state.0 < n - 1
            || w.segments[n - 1].times.is_some()
            || state.1.count_ones() as usize == w.segments[n - 1].terms.len())
    {
        (n, 0)
    } else {
        state
    };
    if j < n {
        let seg = &w.segments[j];
        let current = bases[j]
            + (0..seg.terms.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| seg.terms[i].value())
                .sum::<i64>();
        if let Some(i) = (0..seg.terms.len()).find(|i| mask & (1 << i) == 0) {
            let t = &seg.terms[i];
            if let Some(c) = t.count
                && !observed.contains(&t.amount())
            {
                return step(index, "bags", format!("{c} * {}", t.size));
            }
            return step(
                index,
                &t.verb,
                format!("{current} {} {}", sign(t.value()), t.amount()),
            );
        }
        if let Some(m) = seg.times {
            return step(index, "times", format!("{current} * {m}"));
        }
    }
    let total = bases[n];
    match w.divide {
        Some(d) => {
            let divided = prefix.iter().any(|s| {
                let lits = calc::literals(&s.code);
                lits.contains(&total)
                    && lits.contains(&d)
                    && calc::run(&s.code) == Ok(CalcResult::Value(answer))
            });
            if divided {
                step(index, "answer", format!("final_answer({answer})"))
            } else {
                step(index, "packs", format!("{total} / {d}"))
            }
        }
        None => step(index, "answer", format!("final_answer({answer})")),
    }
}

/// Execute a calculator step: fill in its observation.
pub fn execute(step: &mut Step) -> Option<i64> {
    match calc::run(&step.code) {
        Ok(CalcResult::Value(v)) => {
            step.observation = Some(v.to_string());
            None
        }
        Ok(CalcResult::Final(v)) => {
            step.observation = Some(v.to_string());
            Some(v)
        }
        Err(e) => {
            step.observation = Some(e.to_string());
            None
        }
    }
}

/// The oracle's demonstration of each built-in task as a trajectory row (policy `oracle`,
/// sample 0), without running a node: for tests and tools. A task without a world (not of
/// the built-in suite) is left out.
pub fn demonstration_rows(tasks: &[Task]) -> Vec<Trajectory> {
    tasks
        .iter()
        .filter_map(|task| {
            let demo = demonstrate_world(&world_of(task)?);
            Some(Trajectory {
                trajectory_id: format!("{}/oracle/0", task.task_id),
                task_id: task.task_id.clone(),
                policy: "oracle".into(),
                sample: 0,
                question: task.question.clone(),
                turns: demo.steps.len() as u32,
                steps: demo.steps,
                correct: demo.final_answer.as_deref() == Some(task.answer.as_str()),
                final_answer: demo.final_answer,
                stop_reason: StopReason::FinalAnswer,
                metadata: "{}".into(),
            })
        })
        .collect()
}

/// The oracle's full solution of a world.
pub fn demonstrate_world(w: &World) -> Demonstration {
    let mut steps: Vec<Step> = Vec::new();
    for _ in 0..32 {
        let mut s = next_step(w, &steps);
        s.completion_tokens = count_tokens(&render_step(&s)) as u32;
        let answer = if s.kind == StepKind::Step {
            execute(&mut s)
        } else {
            None
        };
        steps.push(s);
        if let Some(a) = answer {
            return Demonstration {
                steps,
                final_answer: Some(a.to_string()),
            };
        }
    }
    Demonstration {
        steps,
        final_answer: None,
    }
}

/// Whether two steps are equivalent: both compute the same value from the same numbers.
pub fn equivalent_steps(a: &Step, b: &Step) -> bool {
    if a.malformed || b.malformed || a.kind != b.kind {
        return false;
    }
    if a.kind == StepKind::Plan {
        let (mut x, mut y) = (numbers_in(&a.thought), numbers_in(&b.thought));
        x.sort_unstable();
        y.sort_unstable();
        return x == y;
    }
    let (mut la, mut lb) = (calc::literals(&a.code), calc::literals(&b.code));
    la.sort_unstable();
    lb.sort_unstable();
    la == lb
        && calc::run(&a.code)
            .ok()
            .is_some_and(|r| calc::run(&b.code).ok() == Some(r))
}

fn prompt_cost(task: &Task, steps: &[Step]) -> u64 {
    count_tokens(&task.question)
        + steps
            .iter()
            .map(|s| {
                count_tokens(&render_step(s)) + s.observation.as_deref().map_or(0, count_tokens)
            })
            .sum::<u64>()
}

#[async_trait]
impl Teacher for Oracle {
    fn name(&self) -> &str {
        "oracle"
    }
    async fn demonstrate(&self, task: &Task) -> Result<(Demonstration, Cost), TeacherError> {
        let demo = demonstrate_world(&world(task)?);
        let cost = Cost {
            calls: demo.steps.len() as u64,
            prompt_tokens: (1..=demo.steps.len())
                .map(|k| prompt_cost(task, &demo.steps[..k - 1]))
                .sum(),
            completion_tokens: demo
                .steps
                .iter()
                .map(|s| u64::from(s.completion_tokens))
                .sum(),
        };
        Ok((demo, cost))
    }
    async fn judge(&self, task: &Task, steps: &[Step]) -> Result<(Verdict, Cost), TeacherError> {
        let verdict = judge_world(&world(task)?, steps);
        let analysis = match &verdict {
            Verdict::Correct => "",
            Verdict::Wrong { analysis, .. } | Verdict::CannotLocate { analysis } => analysis,
        };
        Ok((
            verdict.clone(),
            Cost {
                calls: 1,
                prompt_tokens: prompt_cost(task, steps),
                completion_tokens: count_tokens(analysis) + 4,
            },
        ))
    }
    async fn repair(
        &self,
        task: &Task,
        prefix: &[Step],
        _wrong: &Step,
        _analysis: &str,
    ) -> Result<(Step, Cost), TeacherError> {
        let mut s = next_step(&world(task)?, prefix);
        let written = count_tokens(&render_step(&s));
        s.completion_tokens = written as u32;
        Ok((
            s,
            Cost {
                calls: 1,
                prompt_tokens: prompt_cost(task, prefix),
                completion_tokens: written,
            },
        ))
    }
    async fn equivalent(
        &self,
        _task: &Task,
        _prefix: &[Step],
        a: &Step,
        b: &Step,
    ) -> Result<(bool, Cost), TeacherError> {
        Ok((equivalent_steps(a, b), Cost::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{Split, tasks};

    #[test]
    fn demonstrations_are_right_and_judged_correct() {
        for split in [Split::Train, Split::Test, Split::Hard] {
            for t in tasks(3, split, 0, 300) {
                let w = world_of(&t).unwrap();
                let demo = demonstrate_world(&w);
                assert_eq!(
                    demo.final_answer.as_deref(),
                    Some(t.answer.as_str()),
                    "{}\n{:#?}",
                    t.question,
                    demo.steps
                );
                assert_eq!(
                    judge_world(&w, &demo.steps),
                    Verdict::Correct,
                    "{}",
                    t.question
                );
                assert_eq!(
                    demo.steps.len() as u32,
                    w.ops + 2,
                    "plan + ops + final_answer: {}\n{:?}",
                    t.question,
                    demo.steps
                        .iter()
                        .map(|s| s.code.clone())
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn another_valid_order_is_accepted() {
        // 12 + 3*5 - 4: subtracting first, or combining the changes first, is also right.
        let w: World = serde_json::from_value(serde_json::json!({
            "start": 12, "divide": null, "distractors": [9], "ops": 3,
            "segments": [{"times": null, "terms": [
                {"sign": 1, "count": 3, "size": 5, "verb": "buys"},
                {"sign": -1, "count": null, "size": 4, "verb": "gives"}]}]
        }))
        .unwrap();
        let plan = Step::new(1, StepKind::Plan, Author::Student, "use 12 3 5 4", "");
        let s = |i, code: &str| Step::new(i, StepKind::Step, Author::Student, "x", code);
        let order = vec![
            plan.clone(),
            s(2, "12 - 4"),
            s(3, "3 * 5"),
            s(4, "8 + 15"),
            s(5, "final_answer(23)"),
        ];
        assert_eq!(judge_world(&w, &order), Verdict::Correct);
        let combined = vec![
            plan.clone(),
            s(2, "3 * 5"),
            s(3, "15 - 4"),
            s(4, "12 + 11"),
            s(5, "final_answer(23)"),
        ];
        assert_eq!(judge_world(&w, &combined), Verdict::Correct);
        let distractor = vec![plan.clone(), s(2, "12 + 9")];
        assert!(matches!(
            judge_world(&w, &distractor),
            Verdict::Wrong { step: 2, .. }
        ));
        let wrong_op = vec![plan.clone(), s(2, "12 * 4")];
        assert!(matches!(
            judge_world(&w, &wrong_op),
            Verdict::Wrong { step: 2, .. }
        ));
        // A repair after `12 - 4` continues from 8, the student's own progress.
        let next = next_step(&w, &order[..2]);
        assert_eq!(next.code, "3 * 5");
        let next = next_step(&w, &order[..3]);
        assert_eq!(next.code, "8 + 15");
        assert!(equivalent_steps(&s(2, "3 * 5"), &s(7, "5*3")));
        assert!(!equivalent_steps(&s(2, "3 * 5"), &s(2, "15")));
        let stalled = vec![plan, s(2, "3 * 5")];
        assert!(matches!(
            judge_world(&w, &stalled),
            Verdict::CannotLocate { .. }
        ));
    }
}
