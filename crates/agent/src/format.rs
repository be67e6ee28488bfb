//! The trajectory format (as in the method's reference code): turn 1 is a plan (thought
//! only); every later turn is a thought plus code, whose tool output comes back as an
//! observation; the episode ends at `final_answer(...)` or at the turn limit.
//!
//! This module renders trajectories into chat messages and parses model text back into
//! steps. Text that does not parse becomes a step marked malformed with its raw text kept.

use scorch_tables::{Author, Step, StepKind, Task};
use serde::{Deserialize, Serialize};

/// The turn limit of a task that sets none of its own (suites other than the built-in one).
pub const DEFAULT_TURN_LIMIT: u32 = 8;

/// Turns a built-in task gets beyond its op count: the plan, the final answer, one to spare.
pub const BUILTIN_SPARE_TURNS: u32 = 3;

/// The turn limit of an episode on `task`: `fixed` where a node sets one; else the task's
/// own: a built-in task's op count + [`BUILTIN_SPARE_TURNS`] (so every task of every split
/// can be solved under it), [`DEFAULT_TURN_LIMIT`] for other suites.
pub fn turn_limit_for(task: &Task, fixed: Option<u32>) -> u32 {
    fixed.unwrap_or_else(|| {
        crate::suite::world_of(task).map_or(DEFAULT_TURN_LIMIT, |w| w.ops + BUILTIN_SPARE_TURNS)
    })
}

/// A chat role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// The question and the observations.
    User,
    /// The policy's turns.
    Assistant,
}

impl Role {
    /// The role's name in chat APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// The system prompt of the built-in suite's agent.
pub const CALC_SYSTEM: &str = "Solve the problem with the calculator. First write a plan. Then, each turn, write a thought and one calculator expression. Finish with final_answer(VALUE).";

/// The system prompt of a Python-tool agent.
pub const PYTHON_SYSTEM: &str = "Solve the task step by step. First write a plan. Then, each turn, write a thought and Python code; the output of the code comes back as an observation and variables persist between turns. Finish by calling final_answer(answer).";

/// The text of one step as the policy writes it.
pub fn render_step(step: &Step) -> String {
    if step.malformed
        && let Some(raw) = &step.raw
    {
        return raw.clone();
    }
    match step.kind {
        StepKind::Plan => format!("Plan: {}", step.thought.trim()),
        StepKind::Step if step.code.contains('\n') => {
            format!(
                "Thought: {}\nCode:\n```py\n{}\n```",
                step.thought.trim(),
                step.code.trim_end()
            )
        }
        StepKind::Step => format!(
            "Thought: {}\nCode: {}",
            step.thought.trim(),
            step.code.trim()
        ),
    }
}

/// The observation message of a step.
pub fn render_observation(observation: &str) -> String {
    format!("Observation: {observation}")
}

/// The chat of a trajectory so far: system, question, then each step and its observation.
pub fn render_messages(system: &str, question: &str, steps: &[Step]) -> Vec<Message> {
    let mut out = Vec::with_capacity(2 + steps.len() * 2);
    if !system.is_empty() {
        out.push(Message::new(Role::System, system));
    }
    out.push(Message::new(Role::User, question));
    for step in steps {
        out.push(Message::new(Role::Assistant, render_step(step)));
        if let Some(obs) = &step.observation {
            out.push(Message::new(Role::User, render_observation(obs)));
        }
    }
    out
}

/// The labels a plan's text may begin with: the renderer's (`Plan:`) and those the reference
/// code's prompts make models write (`First Thought:`, `First-thought:`, ...), longest first.
pub const PLAN_LABELS: [&str; 5] = [
    "First-thought prefix:",
    "First-thought:",
    "First Thought:",
    "Plan:",
    "Thought:",
];
/// The label of a step's thought.
pub const THOUGHT_LABELS: [&str; 1] = ["Thought:"];
/// The label of a step's code.
pub const CODE_LABELS: [&str; 1] = ["Code:"];
/// The label of an observation.
pub const OBSERVATION_LABELS: [&str; 1] = ["Observation:"];

/// `text` without the first of `labels` it begins with (ignoring case, after leading
/// whitespace), and the exact prefix removed (whitespace, label and the spaces after it);
/// `text` unchanged and `None` when it begins with none. The renderer writes these labels
/// itself, so a field that already has one would be written with it twice.
pub fn strip_label(text: &str, labels: &[&str]) -> (String, Option<String>) {
    let start = text.len() - text.trim_start().len();
    for label in labels {
        let rest = &text[start..];
        if rest.len() >= label.len()
            && rest.is_char_boundary(label.len())
            && rest[..label.len()].eq_ignore_ascii_case(label)
        {
            let after = &rest[label.len()..];
            let body = after.trim_start_matches([' ', '\t']);
            let cut = text.len() - body.len();
            return (body.to_owned(), Some(text[..cut].to_owned()));
        }
    }
    (text.to_owned(), None)
}

/// The text between `<tag>` and `</tag>`, if `text` has the opening tag; `Err(())` when the
/// closing tag is missing.
fn tagged<'a>(text: &'a str, tag: &str) -> Option<Result<&'a str, ()>> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let at = text.find(&open)? + open.len();
    Some(
        text[at..]
            .find(&close)
            .map(|end| &text[at..at + end])
            .ok_or(()),
    )
}

fn after_label<'a>(text: &'a str, label: &str) -> Option<(usize, &'a str)> {
    let lower = text.to_ascii_lowercase();
    let i = lower.find(&label.to_ascii_lowercase())?;
    Some((i, &text[i + label.len()..]))
}

/// Parse what a policy wrote for step `index` (1 = the plan). Never fails: text that does
/// not parse gives a step marked malformed that keeps the raw text.
pub fn parse_step(text: &str, index: u32, author: Author) -> Step {
    let raw = text.to_owned();
    let text = text.trim().trim_end_matches("<end_code>").trim();
    let malformed = |thought: &str| {
        let mut s = Step::new(
            index,
            if index == 1 {
                StepKind::Plan
            } else {
                StepKind::Step
            },
            author,
            thought,
            "",
        );
        s.malformed = true;
        s.raw = Some(raw.clone());
        s
    };
    if index == 1 {
        // The reference code's layout: `<first_thought>...</first_thought>`.
        if let Some(inner) = tagged(text, "first_thought") {
            let Ok(inner) = inner else {
                return malformed(text);
            };
            let thought = strip_label(inner.trim(), &PLAN_LABELS).0;
            if thought.trim().is_empty() {
                return malformed(text);
            }
            return Step::new(index, StepKind::Plan, author, thought.trim(), "");
        }
        let thought = match after_label(text, "plan:") {
            Some((0, rest)) => rest.trim(),
            _ => text,
        };
        if thought.is_empty() || after_label(text, "code:").is_some() {
            return malformed(thought);
        }
        return Step::new(index, StepKind::Plan, author, thought, "");
    }
    // The reference code's layout: `<thought>...</thought><code>...</code>`.
    if let Some(code) = tagged(text, "code") {
        let Ok(code) = code else {
            return malformed(text);
        };
        let thought = match tagged(text, "thought") {
            Some(Ok(t)) => t,
            Some(Err(())) => return malformed(text),
            None => text.split("<code>").next().unwrap_or(""),
        };
        let thought = strip_label(thought.trim(), &THOUGHT_LABELS).0;
        let code = code.trim_matches('\n').trim_end();
        if code.trim().is_empty() {
            return malformed(thought.trim());
        }
        return Step::new(index, StepKind::Step, author, thought.trim(), code);
    }
    let Some((code_at, rest)) = after_label(text, "code:") else {
        return malformed(text);
    };
    let head = &text[..code_at];
    let thought = match after_label(head, "thought:") {
        Some((_, t)) => t.trim(),
        None => head.trim(),
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    let code = if let Some(fenced) = rest.trim_start().strip_prefix("```") {
        let body = fenced.split_once('\n').map_or("", |(_, b)| b);
        match body.find("```") {
            Some(end) => body[..end].trim_end().to_owned(),
            None => return malformed(thought),
        }
    } else {
        rest.lines().next().unwrap_or("").trim().to_owned()
    };
    if code.is_empty() {
        return malformed(thought);
    }
    Step::new(index, StepKind::Step, author, thought, &code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_text() {
        let plan = Step::new(1, StepKind::Plan, Author::Teacher, "use 12 3 5", "");
        assert_eq!(parse_step(&render_step(&plan), 1, Author::Teacher), plan);
        let s = Step::new(2, StepKind::Step, Author::Student, "buys", "3 * 5");
        assert_eq!(render_step(&s), "Thought: buys\nCode: 3 * 5");
        assert_eq!(parse_step(&render_step(&s), 2, Author::Student), s);
        let multi = Step::new(
            3,
            StepKind::Step,
            Author::Student,
            "compute",
            "x = 1\nprint(x + 1)",
        );
        assert_eq!(parse_step(&render_step(&multi), 3, Author::Student), multi);
    }

    #[test]
    fn reference_style_text_parses() {
        let text = "Thought: I will add.\nCode:\n```py\nprint(1 + 1)\n```<end_code>";
        let s = parse_step(text, 2, Author::Student);
        assert!(!s.malformed);
        assert_eq!(
            (s.thought.as_str(), s.code.as_str()),
            ("I will add.", "print(1 + 1)")
        );
    }

    #[test]
    fn the_reference_codes_tagged_layout_parses() {
        let plan = parse_step(
            "<first_thought>First Thought: add them</first_thought>",
            1,
            Author::Teacher,
        );
        assert_eq!(
            (plan.kind, plan.thought.as_str()),
            (StepKind::Plan, "add them")
        );
        let s = parse_step(
            "<thought>Thought: I add.</thought><code>x = 1\nprint(x + 1)</code>",
            2,
            Author::Teacher,
        );
        assert!(!s.malformed);
        assert_eq!(
            (s.thought.as_str(), s.code.as_str()),
            ("I add.", "x = 1\nprint(x + 1)")
        );
        for bad in [
            "<thought>x</thought><code>1 + 1",
            "<thought>x<code>1</code>",
        ] {
            assert!(parse_step(bad, 2, Author::Teacher).malformed, "{bad}");
        }
        assert!(parse_step("<first_thought>plan", 1, Author::Teacher).malformed);
    }

    #[test]
    fn labels_come_off_once_and_say_what_came_off() {
        assert_eq!(
            strip_label("Thought: Thought: x", &THOUGHT_LABELS),
            ("Thought: x".to_owned(), Some("Thought: ".to_owned()))
        );
        assert_eq!(
            strip_label("  first thought:\tplan", &PLAN_LABELS),
            ("plan".to_owned(), Some("  first thought:\t".to_owned()))
        );
        assert_eq!(
            strip_label("Thoughts matter", &THOUGHT_LABELS),
            ("Thoughts matter".to_owned(), None)
        );
        assert_eq!(strip_label("é", &CODE_LABELS), ("é".to_owned(), None));
    }

    #[test]
    fn garbage_is_kept_as_a_malformed_step() {
        for (text, index) in [
            ("", 2),
            ("just words", 2),
            ("Thought: x\nCode:", 3),
            ("Code:\n```py\nx = 1", 2),
            ("", 1),
            ("Plan: a\nCode: 1", 1),
        ] {
            let s = parse_step(text, index, Author::Student);
            assert!(s.malformed, "{text:?}");
            assert_eq!(s.raw.as_deref(), Some(text));
            assert_eq!(s.index, index);
            assert_eq!(render_step(&s), text, "the raw text renders back");
        }
    }

    #[test]
    fn messages_alternate_with_observations_as_user_turns() {
        let mut s = Step::new(2, StepKind::Step, Author::Student, "add", "1 + 2");
        s.observation = Some("3".into());
        let plan = Step::new(1, StepKind::Plan, Author::Student, "use 1 2", "");
        let m = render_messages(CALC_SYSTEM, "q?", &[plan, s]);
        let roles: Vec<Role> = m.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            vec![
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Assistant,
                Role::User
            ]
        );
        assert_eq!(m[4].content, "Observation: 3");
    }
}
