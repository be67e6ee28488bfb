//! The first five tasks of each built-in split, printed with their oracle demonstrations
//! (`cargo test -p scorch-agent --test builtin_suite -- --nocapture`).

#![allow(clippy::unwrap_used)]

use scorch_agent::format::render_step;
use scorch_agent::oracle::{demonstrate_world, judge_world};
use scorch_agent::suite::{Split, tasks, world_of};
use scorch_agent::teacher::Verdict;

#[test]
fn print_the_first_five_tasks_of_each_split_with_their_demonstrations() {
    for split in [Split::Train, Split::Test, Split::Hard] {
        println!("=== split {}", split.name());
        for t in tasks(0, split, 0, 5) {
            let w = world_of(&t).unwrap();
            let demo = demonstrate_world(&w);
            println!(
                "\n[{}] {} ops, answer {}\n{}",
                t.task_id, w.ops, t.answer, t.question
            );
            for s in &demo.steps {
                let obs = s
                    .observation
                    .as_deref()
                    .map(|o| format!("   -> {o}"))
                    .unwrap_or_default();
                println!("  {}{obs}", render_step(s).replace('\n', " | "));
            }
            assert_eq!(demo.final_answer.as_deref(), Some(t.answer.as_str()));
            assert_eq!(judge_world(&w, &demo.steps), Verdict::Correct);
        }
    }
}
