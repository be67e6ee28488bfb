//! Export of trajectories to the multi-turn chat JSON that LLaMA-Factory and TRL take:
//! one `{"messages": [{"role", "content"}...]}` object per line, observations as user turns.

use scorch_api::tables::Trajectory;
use serde_json::{Value, json};

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

/// Trajectories as JSON lines.
pub fn chat_jsonl(trajectories: &[Trajectory], system: &str) -> String {
    trajectories
        .iter()
        .map(|t| chat_record(t, system).to_string() + "\n")
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
}
