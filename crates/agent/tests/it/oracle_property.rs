//! Property: corrupt step k of a correct trajectory, and the oracle judge names step k.

#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use scorch_agent::oracle::{demonstrate_world, execute, judge_world, valid_values};
use scorch_agent::suite::{Split, task, world_of};
use scorch_agent::teacher::Verdict;
use scorch_tables::{Author, Step, StepKind};

/// Ways to break a step.
#[derive(Debug, Clone, Copy)]
enum Corruption {
    /// A number from nowhere.
    ForeignNumber,
    /// Text that does not parse.
    Garbage,
    /// A valid expression of available numbers whose value is off the solution's path.
    WrongValue,
}

fn corrupt(
    step: &Step,
    how: Corruption,
    noise: i64,
    valid: &std::collections::HashSet<i64>,
) -> Step {
    let index = step.index;
    if step.kind == StepKind::Plan {
        let mut s = step.clone();
        match how {
            Corruption::Garbage => {
                s.malformed = true;
                s.raw = Some("Code: 1 + 1".into());
            }
            _ => s.thought = format!("{} {}", s.thought, 100_000 + noise),
        }
        return s;
    }
    let mut s = match how {
        Corruption::ForeignNumber => Step::new(
            index,
            StepKind::Step,
            Author::Student,
            "x",
            &format!("{} + 1", 100_003 + 2 * noise),
        ),
        Corruption::Garbage => {
            let mut s = Step::new(index, StepKind::Step, Author::Student, "???", "");
            s.malformed = true;
            s.raw = Some("I am not sure".into());
            s
        }
        // Only an available number (the step's first), combined into a value off the path.
        Corruption::WrongValue => {
            let first = scorch_agent::calc::literals(step.code.trim_start_matches("final_answer"))
                .first()
                .copied()
                .unwrap_or(7);
            let mut code = format!("{first} * {first} + {first}");
            while scorch_agent::calc::eval(&code).is_ok_and(|v| valid.contains(&v)) {
                code.push_str(&format!(" + {first}"));
            }
            Step::new(index, StepKind::Step, Author::Student, "x", &code)
        }
    };
    execute(&mut s);
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn the_judge_names_the_corrupted_step(
        seed in 0u64..1000,
        index in 0u64..50,
        split in prop::sample::select(vec![Split::Train, Split::Hard]),
        pick in 0usize..100,
        how in prop::sample::select(vec![Corruption::ForeignNumber, Corruption::Garbage, Corruption::WrongValue]),
        noise in 0i64..1000,
    ) {
        let t = task(seed, split, index);
        let w = world_of(&t).unwrap();
        let demo = demonstrate_world(&w);
        prop_assert_eq!(judge_world(&w, &demo.steps), Verdict::Correct);
        let k = pick % demo.steps.len();
        let mut steps = demo.steps.clone();
        steps[k] = corrupt(&steps[k], how, noise, &valid_values(&w));
        match judge_world(&w, &steps) {
            Verdict::Wrong { step, .. } => prop_assert_eq!(step, k as u32 + 1, "{:?} at {}: {:?}", how, k + 1, steps[k]),
            other => prop_assert!(false, "{:?} at step {} judged {:?}", how, k + 1, other),
        }
    }
}
