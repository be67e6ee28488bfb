//! The LLM teacher's three calls, driven by recorded replies: the real judge texts of the
//! reference data (a 72B judge cannot run here), and model-style steps.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use scorch_agent::format::{CALC_SYSTEM, Message};
use scorch_agent::llm::{ChatClient, ChatOptions, ChatReply, LlmTeacher, Prompts, judge_prompt};
use scorch_agent::reference::import_file;
use scorch_agent::teacher::{Teacher, TeacherError, Verdict};
use scorch_agent::tool::{CalcTool, Tool};
use scorch_tables::{StepKind, Task};

/// Replies recorded in advance, served in order; every prompt is kept.
struct Recorded {
    replies: Mutex<VecDeque<String>>,
    prompts: Mutex<Vec<Vec<Message>>>,
}

impl Recorded {
    fn new(replies: &[&str]) -> Arc<Self> {
        Arc::new(Self {
            replies: Mutex::new(replies.iter().map(|s| (*s).to_owned()).collect()),
            prompts: Mutex::new(Vec::new()),
        })
    }
}

#[scorch_api::reexports::async_trait]
impl ChatClient for Recorded {
    fn model(&self) -> &str {
        "recorded"
    }
    async fn chat(&self, messages: &[Message], _: &ChatOptions) -> Result<ChatReply, TeacherError> {
        self.prompts.lock().unwrap().push(messages.to_vec());
        let text = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| TeacherError("no more recorded replies".into()))?;
        Ok(ChatReply {
            completion_tokens: text.split_whitespace().count() as u64,
            prompt_tokens: 100,
            text,
        })
    }
}

fn teacher(client: Arc<Recorded>) -> LlmTeacher {
    LlmTeacher::new(
        client,
        Prompts::default(),
        CALC_SYSTEM,
        || Ok(Box::new(CalcTool) as Box<dyn Tool>),
        Some(8),
    )
}

fn task(question: &str, answer: &str) -> Task {
    Task {
        task_id: "t".into(),
        suite: "s".into(),
        split: "test".into(),
        question: question.into(),
        answer: answer.into(),
        metadata: "{}".into(),
    }
}

#[tokio::test]
async fn the_judge_call_returns_the_recorded_judges_verdicts() {
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/reference/math_mps_trajectories.jsonl");
    assert!(shared.exists(), "needs ../shared (see shared/README.md)");
    let imported = import_file(&shared).unwrap();
    let mut checked = 0;
    for record in imported.repairs.iter().filter(|r| !r.repairs.is_empty()) {
        let t = imported
            .trajectories
            .iter()
            .find(|t| t.trajectory_id == record.trajectory_id)
            .unwrap();
        let repair = &record.repairs[0];
        let client = Recorded::new(&[&repair.analysis]);
        let steps = &t.steps;
        let (verdict, cost) = teacher(client.clone())
            .judge(&task(&t.question, "x"), steps)
            .await
            .unwrap();
        if (repair.step_index as usize) <= steps.len() {
            assert!(
                matches!(verdict, Verdict::Wrong { step, .. } if step == repair.step_index),
                "{verdict:?}"
            );
        }
        assert_eq!(cost.calls, 1);
        let prompt = &client.prompts.lock().unwrap()[0][0].content;
        assert!(
            prompt.contains(&t.question)
                && prompt.contains("Step 1:")
                && prompt.contains("Correction Start Step: N")
        );
        checked += 1;
    }
    assert!(checked >= 10);
}

#[tokio::test]
async fn demonstrate_runs_the_model_with_the_tool_until_the_final_answer() {
    let client = Recorded::new(&[
        "Plan: use 12 3 5",
        "Thought: bags\nCode: 3 * 5",
        "Thought: add\nCode: 12 + 15",
        "Thought: done\nCode: final_answer(27)",
    ]);
    let (demo, cost) = teacher(client.clone())
        .demonstrate(&task("Tom has 12. He buys 3 bags of 5.", "27"))
        .await
        .unwrap();
    assert_eq!(demo.final_answer.as_deref(), Some("27"));
    assert_eq!(demo.steps.len(), 4);
    assert_eq!(demo.steps[0].kind, StepKind::Plan);
    assert_eq!(demo.steps[2].observation.as_deref(), Some("27"));
    assert_eq!(cost.calls, 4);
    // The third call saw the plan, the first step and its observation.
    let third = &client.prompts.lock().unwrap()[2];
    assert_eq!(third.last().unwrap().content, "Observation: 15");
}

#[tokio::test]
async fn repair_writes_one_step_and_equivalence_reads_yes_or_no() {
    let client = Recorded::new(&[
        "Thought: multiply first\nCode:\n```py\n3 * 5\n```<end_code>",
        "Yes.",
        "no",
    ]);
    let t = teacher(client.clone());
    let q = task("Tom has 12. He buys 3 bags of 5.", "27");
    let plan = scorch_tables::Step::new(
        1,
        StepKind::Plan,
        scorch_tables::Author::Student,
        "use 12 3 5",
        "",
    );
    let wrong = scorch_tables::Step::new(
        2,
        StepKind::Step,
        scorch_tables::Author::Student,
        "add",
        "12 + 3",
    );
    let (step, _) = t
        .repair(
            &q,
            std::slice::from_ref(&plan),
            &wrong,
            "Step 2 adds the bag count.",
        )
        .await
        .unwrap();
    assert_eq!(
        (step.index, step.code.as_str(), step.malformed),
        (2, "3 * 5", false)
    );
    assert!(t.equivalent(&q, &[], &step, &wrong).await.unwrap().0);
    assert!(!t.equivalent(&q, &[], &step, &wrong).await.unwrap().0);
    let prompt = &client.prompts.lock().unwrap()[0][0].content;
    assert!(
        prompt.contains("Step 2 adds the bag count.")
            && prompt.contains("Code: 12 + 3")
            && prompt.contains("ONE replacement for Step 2")
    );
}

#[tokio::test]
async fn the_optional_judge_model_answer_check() {
    let client = Recorded::new(&["Yes, both are one half.", "No."]);
    let p = Prompts::default();
    let (same, cost) =
        scorch_agent::llm::answers_match(client.as_ref(), &p, "Half of 1?", "0.5", "\\frac{1}{2}")
            .await
            .unwrap();
    assert!(same && cost.calls == 1);
    assert!(
        !scorch_agent::llm::answers_match(client.as_ref(), &p, "Half of 1?", "2", "\\frac{1}{2}")
            .await
            .unwrap()
            .0
    );
    let prompt = &client.prompts.lock().unwrap()[0][0].content;
    assert!(
        prompt.contains("Candidate answer: 0.5")
            && prompt.contains("Reference answer: \\frac{1}{2}")
    );
}

#[test]
fn templates_in_a_folder_replace_the_built_in_ones_and_bad_ones_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("judge.j2"),
        "Q={{ question }} N={{ steps | length }}",
    )
    .unwrap();
    let p = Prompts::from_dir(dir.path()).unwrap();
    let steps = vec![scorch_tables::Step::new(
        1,
        StepKind::Plan,
        scorch_tables::Author::Student,
        "p",
        "",
    )];
    assert_eq!(
        judge_prompt(&p, &task("why", "1"), &steps).unwrap(),
        "Q=why N=1"
    );
    assert!(
        p.repair.contains("ONE replacement"),
        "the others stay built in"
    );
    std::fs::write(dir.path().join("repair.j2"), "{% for x in %}").unwrap();
    let err = Prompts::from_dir(dir.path()).unwrap_err();
    assert!(err.0.contains("repair.j2"), "{err}");
}
