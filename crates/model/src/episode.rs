//! Many episodes advanced together: each round, every unfinished episode's chat goes to the
//! policy in one call, each reply is parsed into a step, and the step's code runs in that
//! episode's own tool.

use scorch_agent::answer::is_correct;
use scorch_agent::format::{Message, parse_step, render_messages, turn_limit_for};
use scorch_agent::tool::Tool;
use scorch_api::ProgressSink;
use scorch_api::tables::{Author, Step, StepKind, StopReason, Task, Trajectory};

use scorch_agent::llm::ChatOptions;

use crate::ModelError;
use crate::policy::Policy;

/// One trajectory in progress.
pub struct Episode {
    /// The task.
    pub task: Task,
    /// Steps so far (a verified prefix, teacher repairs, the policy's own steps).
    pub steps: Vec<Step>,
    /// The episode's tool.
    pub tool: Box<dyn Tool>,
    /// Set once it ended.
    pub stop: Option<StopReason>,
    /// The final answer, if given.
    pub final_answer: Option<String>,
    /// Most steps (the plan included): the episode ends at this many.
    pub turn_limit: u32,
}

impl std::fmt::Debug for Episode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Episode")
            .field("task", &self.task.task_id)
            .field("steps", &self.steps.len())
            .field("stop", &self.stop)
            .finish()
    }
}

impl Episode {
    /// A fresh episode, with the turn limit `fixed` or else the task's own
    /// ([`turn_limit_for`]).
    pub fn new(task: Task, tool: Box<dyn Tool>, fixed: Option<u32>) -> Self {
        let turn_limit = turn_limit_for(&task, fixed);
        Self {
            task,
            steps: Vec::new(),
            tool,
            stop: None,
            final_answer: None,
            turn_limit,
        }
    }

    /// Append `step`, running its code; ends the episode on `final_answer(...)` or at the
    /// turn limit.
    pub fn push(&mut self, mut step: Step) {
        step.index = self.steps.len() as u32 + 1;
        if step.kind == StepKind::Step && !step.malformed {
            let out = self.tool.execute(&step.code);
            step.observation = Some(out.observation);
            if let Some(answer) = out.final_answer {
                self.final_answer = Some(answer);
                self.stop = Some(StopReason::FinalAnswer);
            }
        } else if step.malformed && step.index > 1 {
            step.observation = Some("Error: write `Thought: ...` and then `Code: ...`.".into());
        }
        self.steps.push(step);
        if self.stop.is_none() && self.steps.len() as u32 >= self.turn_limit {
            self.stop = Some(StopReason::TurnLimit);
        }
    }

    /// Forget the steps from index `from` (1-based) on, and reopen the episode. The tool is
    /// rebuilt by replaying the kept steps' code.
    pub fn truncate(&mut self, from: u32, fresh_tool: Box<dyn Tool>) {
        self.steps.truncate(from.saturating_sub(1) as usize);
        self.tool = fresh_tool;
        for s in &self.steps {
            if s.kind == StepKind::Step && !s.malformed {
                let _ = self.tool.execute(&s.code);
            }
        }
        self.stop = None;
        self.final_answer = None;
    }

    /// The chat so far.
    pub fn chat(&self, system: &str) -> Vec<Message> {
        render_messages(system, &self.task.question, &self.steps)
    }

    /// The trajectory row of this episode, played by `policy` as sample `sample`.
    pub fn trajectory(&self, policy: &str, sample: u32) -> Trajectory {
        Trajectory {
            trajectory_id: format!("{}/{policy}/{sample}", self.task.task_id),
            task_id: self.task.task_id.clone(),
            policy: policy.to_owned(),
            sample,
            question: self.task.question.clone(),
            steps: self.steps.clone(),
            final_answer: self.final_answer.clone(),
            correct: is_correct(&self.task, self.final_answer.as_deref()),
            stop_reason: self.stop.unwrap_or(StopReason::TurnLimit),
            turns: self.steps.len() as u32,
            metadata: "{}".into(),
        }
    }
}

/// Advance every unfinished episode until each ends (final answer or its turn limit).
/// Each episode that ends advances `progress` by one; each round says its turn and the
/// share of ended episodes that answered right. Returns the policy's token counts (prompt,
/// completion).
pub async fn run(
    policy: &dyn Policy,
    episodes: &mut [Episode],
    system: &str,
    options: &ChatOptions,
    author: Author,
    progress: &dyn ProgressSink,
) -> Result<(u64, u64), ModelError> {
    let (mut prompt, mut completion) = (0u64, 0u64);
    let mut open = episodes.iter().filter(|e| e.stop.is_none()).count();
    for turn in 1.. {
        let active: Vec<usize> = (0..episodes.len())
            .filter(|&i| episodes[i].stop.is_none())
            .collect();
        progress.advance((open - active.len()) as u64);
        open = active.len();
        if active.is_empty() {
            break;
        }
        let (ended, right) =
            episodes
                .iter()
                .filter(|e| e.stop.is_some())
                .fold((0usize, 0usize), |(n, r), e| {
                    (
                        n + 1,
                        r + usize::from(is_correct(&e.task, e.final_answer.as_deref())),
                    )
                });
        let accuracy = match ended {
            0 => String::new(),
            n => format!(
                ", {:.0}% right of {n} ended",
                100.0 * right as f64 / n as f64
            ),
        };
        progress.message(&format!(
            "turn {turn}, {} episodes open{accuracy}",
            active.len()
        ));
        let chats: Vec<Vec<Message>> = active.iter().map(|&i| episodes[i].chat(system)).collect();
        let replies = policy.complete_many(chats, options).await?;
        for (&i, r) in active.iter().zip(replies) {
            prompt += r.prompt_tokens;
            completion += r.completion_tokens;
            let ep = &mut episodes[i];
            let mut step = parse_step(&r.text, ep.steps.len() as u32 + 1, author);
            step.prompt_tokens = u32::try_from(r.prompt_tokens).unwrap_or(u32::MAX);
            step.completion_tokens = u32::try_from(r.completion_tokens).unwrap_or(u32::MAX);
            ep.push(step);
        }
    }
    Ok((prompt, completion))
}
