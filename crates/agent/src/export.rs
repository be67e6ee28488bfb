//! Export of trajectories to the multi-turn chat JSON that LLaMA-Factory and TRL take:
//! one `{"messages": [{"role", "content"}...]}` object per line, observations as user turns.

use scorch_api::tables::Trajectory;
use serde_json::{Value, json};

use crate::format::render_messages;

/// One trajectory as a chat record.
pub fn chat_record(t: &Trajectory, system: &str) -> Value {
    let messages: Vec<Value> = render_messages(system, &t.question, &t.steps)
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
