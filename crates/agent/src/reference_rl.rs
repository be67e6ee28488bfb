//! Import of the reference code's RL prompt file (`math_mps_rl.json`, what its verl recipe
//! reads): a JSON array of `{prompt: [{role, content}], chosen, chosen_observation, rejected,
//! rejected_observation, correct_step, gt_answer}`, where `prompt` is the question and the
//! verified prefix as chat turns in the reference's tagged layout (`<first_thought>`,
//! `<thought>`, `<code>`, `Observation: ...`), `chosen` the teacher's step at the repair point
//! and `rejected` the student's. The steps are read with the step parser, which takes the
//! labels off (every `chosen` of the file begins `<thought>Thought: `), so the prompts hold
//! the same label-free steps as everything imported or generated here.

use std::path::Path;

use scorch_tables::{Author, RlPrompt, Step, Task};
use serde_json::Value;

use crate::answer::extract_boxed;
use crate::format::{OBSERVATION_LABELS, parse_step, strip_label};
use crate::reference::ImportError;

/// Whether `path` looks like an RL prompt file (a JSON array) rather than JSON lines.
pub fn is_rl_file(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| {
        bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'[')
    })
}

fn observation(text: &str) -> String {
    strip_label(text, &OBSERVATION_LABELS).0.trim().to_owned()
}

/// One step of the prompt file: `text` parsed as step `index`, with its observation.
fn step(text: &str, index: u32, author: Author, observation_text: Option<&str>) -> Step {
    let mut s = parse_step(text, index, author);
    s.observation = observation_text.map(observation);
    s
}

/// The tasks and RL prompts of an RL prompt file; the tasks' suite is the file's stem.
pub fn import_rl_file(path: &Path) -> Result<(Vec<Task>, Vec<RlPrompt>), ImportError> {
    let file = path.display().to_string();
    let err = |line: usize, message: String| ImportError {
        file: file.clone(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(0, e.to_string()))?;
    let records: Vec<Value> =
        serde_json::from_str(&text).map_err(|e| err(e.line(), format!("not a JSON array: {e}")))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (mut tasks, mut prompts) = (Vec::new(), Vec::new());
    for (i, r) in records.iter().enumerate() {
        let at = |m: String| err(0, format!("record {}: {m}", i + 1));
        let turns = r["prompt"]
            .as_array()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| at("no `prompt` list".into()))?;
        let content = |t: &Value| t["content"].as_str().unwrap_or("").to_owned();
        if turns[0]["role"] != "user" {
            return Err(at("the prompt does not begin with the question".into()));
        }
        let question = content(&turns[0]);
        // The prefix: assistant turns, each answered by a user turn with its observation.
        let mut prefix = Vec::new();
        let mut rest = turns[1..].iter().peekable();
        while let Some(t) = rest.next() {
            if t["role"] != "assistant" {
                return Err(at(format!(
                    "turn {} is `{}` where a step was expected",
                    prefix.len() * 2 + 2,
                    t["role"]
                )));
            }
            let answer = rest.next_if(|u| u["role"] == "user").map(content);
            let index = prefix.len() as u32 + 1;
            prefix.push(step(&content(t), index, Author::Student, answer.as_deref()));
        }
        let key_step = |field: &str, author: Author| {
            let text = r[field].as_str().unwrap_or("");
            (!text.trim().is_empty()).then(|| {
                let obs = r[format!("{field}_observation")]
                    .as_str()
                    .filter(|o| !o.is_empty());
                step(text, prefix.len() as u32 + 1, author, obs)
            })
        };
        let (chosen, rejected) = (
            key_step("chosen", Author::Teacher),
            key_step("rejected", Author::Student),
        );
        let gold = r["gt_answer"].as_str().unwrap_or("");
        let task_id = format!("{stem}:{}", i + 1);
        tasks.push(Task {
            task_id: task_id.clone(),
            suite: stem.clone(),
            split: "train".into(),
            question: question.clone(),
            answer: extract_boxed(gold).unwrap_or_else(|| gold.to_owned()),
            metadata: serde_json::json!({"gt_answer": gold, "correct_step": r["correct_step"]})
                .to_string(),
        });
        prompts.push(RlPrompt {
            prompt_id: format!("{task_id}/rl"),
            task_id,
            question,
            gold_answer: extract_boxed(gold).unwrap_or_else(|| gold.to_owned()),
            source: if chosen.is_some() {
                "repaired"
            } else {
                "fresh"
            }
            .into(),
            prefix,
            chosen,
            rejected,
        });
    }
    Ok((tasks, prompts))
}
