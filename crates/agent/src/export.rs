//! Export of trajectories to the multi-turn chat JSON that trainers take, one object per
//! line: the OpenAI/TRL `messages` form (`{"messages": [{"role", "content"}...]}`,
//! observations as user turns), LLaMA-Factory's sharegpt form (`{"system", "conversations":
//! [{"from", "value"}...]}`, the question from `human`, tool output from `observation`), both
//! in scorch's own text (`Plan: `, `Thought: `, `Code: `), or the reference code's own
//! LLaMA-Factory layout ([`reference_record`]).
//!
//! The turn rule of `messages` and `sharegpt`: each step is an assistant turn in the
//! renderer's text; a step's observation, when it has one, is the next turn (user / observation);
//! assistant turns that follow each other are joined with a newline. A plan has an observation
//! where the trajectory records one: imported reference data does (`None`, what the reference's
//! agent answers a plan with), so there the plan is a turn of its own; scorch's own episodes
//! give a plan none, so there it shares its turn with the first step, as the student saw it.

use scorch_tables::Trajectory;
use serde_json::{Value, json};

use scorch_tables::StepKind;

use crate::format::{Message, Role, render_messages};

/// One trajectory as a chat record whose turns alternate, as LLaMA-Factory's converter (its
/// "Invalid role tag" and "Invalid message count" checks) and most chat templates require:
/// after the system turn, user and assistant take turns, starting with the user and ending
/// with the assistant. Turns of one role that follow each other (the plan, then the first
/// step) are joined with a newline; the observation after the last step (the final answer
/// echoed) is left out, since nothing answers it.
pub fn chat_record(t: &Trajectory, system: &str) -> Value {
    let mut turns: Vec<Message> = Vec::new();
    for m in render_messages(system, &t.question, &t.steps) {
        match turns.last_mut() {
            Some(last) if last.role == m.role && m.role != Role::System => {
                last.content.push('\n');
                last.content.push_str(&m.content);
            }
            _ => turns.push(m),
        }
    }
    if turns.iter().any(|m| m.role == Role::Assistant) {
        while turns.last().is_some_and(|m| m.role != Role::Assistant) {
            turns.pop();
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
        .collect();
    json!({"id": t.trajectory_id, "messages": messages})
}

/// The chat file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChatExport {
    /// OpenAI/TRL: `{"messages": [{"role", "content"}...]}`.
    #[default]
    Messages,
    /// LLaMA-Factory's sharegpt: `{"system", "conversations": [{"from", "value"}...]}` with
    /// `human` (the question), `gpt` and `observation` (what a tool returned) turns.
    Sharegpt,
    /// LLaMA-Factory's sharegpt in the reference code's own layout ([`reference_record`]):
    /// what its SFT recipe trains on.
    Reference,
}

/// One trajectory as the reference code's LLaMA-Factory converter lays it out: no system
/// field; `human` the question; the plan as a `gpt` turn `<first_thought>PLAN</first_thought>`
/// answered by `human` `Observation: None` (always); each step as `gpt`
/// `<thought>THOUGHT</thought><code>CODE</code>` answered by `human` `Observation: OUTPUT`
/// (trimmed); error records left out; the last observation dropped, so it ends on `gpt`.
/// Texts are the imported fields, which carry no labels.
pub fn reference_record(t: &Trajectory) -> Value {
    let mut conversations = vec![json!({"from": "human", "value": t.question})];
    for s in t.steps.iter().filter(|s| !s.malformed) {
        let value = match s.kind {
            StepKind::Plan => format!("<first_thought>{}</first_thought>", s.thought.trim()),
            StepKind::Step => format!("<thought>{}</thought><code>{}</code>", s.thought, s.code),
        };
        conversations.push(json!({"from": "gpt", "value": value}));
        // The converter answers every plan with `None`, whatever the record says (some
        // mentored-solving records say `No Code Executed.`).
        let output = match s.kind {
            StepKind::Plan => "None",
            StepKind::Step => s.observation.as_deref().unwrap_or("None"),
        };
        let observation = format!("Observation: {output}");
        conversations.push(json!({"from": "human", "value": observation.trim()}));
    }
    if conversations.len() > 1 {
        conversations.pop();
    }
    json!({"id": t.trajectory_id, "conversations": conversations})
}

/// One trajectory as a LLaMA-Factory sharegpt record: the turns of [`chat_record`], the
/// system prompt as its own field, the question as `human`, every later user turn (a tool's
/// output) as `observation`, the policy's turns as `gpt`. LLaMA-Factory's converter wants
/// `human`/`observation` at even places and `gpt`/`function_call` at odd ones, and an even
/// count; these records keep both.
pub fn sharegpt_record(t: &Trajectory, system: &str) -> Value {
    let messages = chat_record(t, system);
    let mut conversations = Vec::new();
    let mut asked = false;
    for m in messages["messages"].as_array().into_iter().flatten() {
        let from = match m["role"].as_str() {
            Some("system") => continue,
            Some("user") if !asked => {
                asked = true;
                "human"
            }
            Some("user") => "observation",
            _ => "gpt",
        };
        conversations.push(json!({"from": from, "value": m["content"]}));
    }
    json!({"id": t.trajectory_id, "system": system, "conversations": conversations})
}

/// Trajectories as JSON lines in `format`.
pub fn chat_jsonl(trajectories: &[Trajectory], system: &str, format: ChatExport) -> String {
    trajectories
        .iter()
        .map(|t| {
            let record = match format {
                ChatExport::Messages => chat_record(t, system),
                ChatExport::Sharegpt => sharegpt_record(t, system),
                ChatExport::Reference => reference_record(t),
            };
            record.to_string() + "\n"
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::oracle::demonstration_rows;
    use crate::suite::{Split, tasks};

    #[test]
    fn a_demonstration_exports_as_alternating_turns_that_end_on_the_answer() {
        let demos = demonstration_rows(&tasks(0, Split::Train, 0, 20));
        for t in &demos {
            let r = chat_record(t, "Solve it.");
            let m = r["messages"].as_array().unwrap();
            let roles: Vec<&str> = m.iter().map(|x| x["role"].as_str().unwrap()).collect();
            assert_eq!(roles[0], "system");
            for (i, role) in roles[1..].iter().enumerate() {
                assert_eq!(
                    *role,
                    if i % 2 == 0 { "user" } else { "assistant" },
                    "{roles:?}"
                );
            }
            assert_eq!(roles.last(), Some(&"assistant"));
            // Plan and first step in one turn; every step kept; the last is the answer.
            let assistant: Vec<&str> = m
                .iter()
                .filter(|x| x["role"] == "assistant")
                .map(|x| x["content"].as_str().unwrap())
                .collect();
            assert!(assistant[0].starts_with("Plan: ") && assistant[0].contains("\nThought: "));
            assert_eq!(assistant.len(), t.steps.len() - 1);
            assert!(assistant.last().unwrap().contains("final_answer("));
        }
    }

    #[test]
    fn a_sharegpt_record_puts_the_question_first_and_tool_output_as_observations() {
        let demos = demonstration_rows(&tasks(0, Split::Train, 0, 5));
        for t in &demos {
            let r = sharegpt_record(t, "Solve it.");
            assert_eq!(r["system"], "Solve it.");
            let c = r["conversations"].as_array().unwrap();
            let from: Vec<&str> = c.iter().map(|x| x["from"].as_str().unwrap()).collect();
            assert_eq!(from[0], "human");
            assert_eq!(c[0]["value"], t.question.as_str());
            for (i, f) in from.iter().enumerate().skip(1) {
                assert_eq!(
                    *f,
                    if i % 2 == 0 { "observation" } else { "gpt" },
                    "{from:?}"
                );
            }
            assert_eq!(from.len() % 2, 0);
            let messages = chat_record(t, "Solve it.");
            assert_eq!(c.len() + 1, messages["messages"].as_array().unwrap().len());
        }
    }
}
