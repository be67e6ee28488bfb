//! Many episodes advanced together. An endpoint policy (requests of their own, bounded by the
//! client's concurrency) and the in-process student (which batches requests continuously,
//! [`crate::continuous`]) advance every episode on its own: each sends its next request as
//! soon as its tool call returns, so a slow reply holds up only its own episode and the
//! batch stays full. A policy that batches only what one call gives it (the student with
//! `SCORCH_BATCHING=rounds`) gets every open episode's chat in one call per round. Either
//! way each reply is parsed into a step, and the step's code runs in the episode's own tool
//! on a blocking thread, at most `tool_workers` at once, never on the async threads. Results
//! do not depend on the path or on timing: each episode keeps its place, each request has
//! its own seed (the episode's stream and the turn), and a deterministic policy gives the
//! same trajectories both ways.

use scorch_agent::answer::is_correct;
use scorch_agent::format::{Message, parse_step, render_messages, turn_limit_for};
use scorch_agent::tool::Tool;
use scorch_api::ProgressSink;
use scorch_tables::{Author, Step, StepKind, StopReason, Task, Trajectory};

use scorch_agent::llm::ChatOptions;

use crate::ModelError;
use crate::policy::{Policy, Request, request_seed};

/// What is kept of an episode that ended: enough to restore it without replaying it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ended {
    /// Its steps.
    pub steps: Vec<Step>,
    /// Why it ended.
    pub stop: StopReason,
    /// Its final answer, if given.
    pub final_answer: Option<String>,
}

/// Where episodes go as they end (a journal that a rerun of the node resumes from).
#[async_trait::async_trait]
pub trait EndedSink: Send + Sync {
    /// Episode `index` (its place in the slice given to [`run_with`]) ended as `ended`.
    async fn ended(&self, index: usize, ended: Ended) -> Result<(), ModelError>;
    /// Several episodes ended together (a round of a batching policy): by default, each.
    async fn ended_many(&self, ended: Vec<(usize, Ended)>) -> Result<(), ModelError> {
        for (index, e) in ended {
            self.ended(index, e).await?;
        }
        Ok(())
    }
}

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
    /// Its random stream (see [`request_seed`]): its place in the node's table, which a
    /// caller that splits a table into several runs sets; else its place in the run.
    pub stream: Option<u64>,
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
            stream: None,
        }
    }

    /// The request for its next turn: its chat, seeded by `base`, its stream (`index`, its
    /// place in the run, unless it has its own) and the turn.
    fn request(&self, system: &str, base: Option<u64>, index: usize) -> Request {
        let stream = self.stream.unwrap_or(index as u64);
        Request {
            messages: self.chat(system),
            seed: request_seed(base.unwrap_or(0), stream, self.steps.len() as u64),
        }
    }

    /// What to keep of it, once it ended.
    pub fn ended(&self) -> Option<Ended> {
        Some(Ended {
            steps: self.steps.clone(),
            stop: self.stop?,
            final_answer: self.final_answer.clone(),
        })
    }

    /// Put it back as it ended (from a journal): it will not be advanced again.
    pub fn restore(&mut self, e: Ended) {
        self.steps = e.steps;
        self.stop = Some(e.stop);
        self.final_answer = e.final_answer;
    }

    /// Append `step`, running its code; ends the episode on `final_answer(...)` or at the
    /// turn limit.
    pub fn push(&mut self, step: Step) {
        let out = runs_code(&step).then(|| self.tool.execute(&step.code));
        self.record(step, out);
    }

    /// [`push`](Self::push) with the code run on a blocking thread once a permit of `tools`
    /// is free, so that many episodes' tools run at once and the async threads never wait.
    pub async fn push_off_thread(
        &mut self,
        step: Step,
        tools: &tokio::sync::Semaphore,
    ) -> Result<(), ModelError> {
        if !runs_code(&step) {
            self.record(step, None);
            return Ok(());
        }
        let _permit = tools
            .acquire()
            .await
            .map_err(|e| ModelError::Torch(format!("tool pool: {e}")))?;
        let mut tool = std::mem::replace(&mut self.tool, Box::new(Lent));
        let code = step.code.clone();
        let (tool, out) = tokio::task::spawn_blocking(move || {
            let out = tool.execute(&code);
            (tool, out)
        })
        .await
        .map_err(|e| ModelError::Torch(format!("tool thread: {e}")))?;
        self.tool = tool;
        self.record(step, Some(out));
        Ok(())
    }

    /// Append `step` with what its code gave (`None`: it runs none).
    fn record(&mut self, mut step: Step, out: Option<scorch_agent::tool::ToolOutput>) {
        step.index = self.steps.len() as u32 + 1;
        if let Some(out) = out {
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

/// Whether `step` runs code in the tool.
fn runs_code(step: &Step) -> bool {
    step.kind == StepKind::Step && !step.malformed
}

/// The placeholder of an episode's tool while the tool runs on another thread.
struct Lent;

impl Tool for Lent {
    fn execute(&mut self, _code: &str) -> scorch_agent::tool::ToolOutput {
        scorch_agent::tool::ToolOutput {
            observation: "Error: the tool is busy".into(),
            final_answer: None,
            failed: true,
        }
    }
}

/// Tool calls that run at once by default: the machine's cores.
pub fn default_tool_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How episodes advance: on their own (endpoint policies) or in rounds (batching policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pace {
    /// Whatever suits the policy ([`Policy::independent`]).
    #[default]
    Auto,
    /// Every open episode's chat in one call per round; the round waits for its slowest reply.
    LockStep,
    /// Each episode sends its next request as soon as its last tool call returned.
    Independent,
}

/// How [`run_with`] schedules: the pace, the tool pool, where ended episodes go.
#[derive(Clone, Copy, Default)]
pub struct Schedule<'a> {
    /// Independent or in rounds.
    pub pace: Pace,
    /// Tool calls at once (`None`: [`default_tool_workers`]).
    pub tool_workers: Option<usize>,
    /// Told of each episode as it ends, before it counts as ended.
    pub ended: Option<&'a dyn EndedSink>,
}

impl std::fmt::Debug for Schedule<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schedule")
            .field("pace", &self.pace)
            .field("tool_workers", &self.tool_workers)
            .field("ended", &self.ended.is_some())
            .finish()
    }
}

/// Advance every unfinished episode until each ends (final answer or its turn limit), at
/// the policy's pace, with at most [`default_tool_workers`] tool calls at once. Each episode
/// that ends advances `progress` by one. Returns the policy's token counts (prompt,
/// completion).
pub async fn run(
    policy: &dyn Policy,
    episodes: &mut [Episode],
    system: &str,
    options: &ChatOptions,
    author: Author,
    progress: &dyn ProgressSink,
) -> Result<(u64, u64), ModelError> {
    run_with(
        policy,
        episodes,
        system,
        options,
        author,
        progress,
        Schedule::default(),
    )
    .await
}

/// [`run`] as `schedule` says. Episodes that already ended are left as they are.
pub async fn run_with(
    policy: &dyn Policy,
    episodes: &mut [Episode],
    system: &str,
    options: &ChatOptions,
    author: Author,
    progress: &dyn ProgressSink,
    schedule: Schedule<'_>,
) -> Result<(u64, u64), ModelError> {
    let workers = schedule.tool_workers.unwrap_or_else(default_tool_workers);
    let tools = tokio::sync::Semaphore::new(workers.max(1));
    let sink = schedule.ended;
    let independent = match schedule.pace {
        Pace::Auto => policy.independent(),
        Pace::LockStep => false,
        Pace::Independent => true,
    };
    let tally = Tally::new(episodes, progress);
    if independent {
        let runs = episodes
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| e.stop.is_none())
            .map(|(i, ep)| {
                advance_alone(
                    policy,
                    (i, ep),
                    system,
                    options,
                    author,
                    (&tools, sink),
                    &tally,
                )
            });
        // The first failure ends the others (their requests are dropped).
        let all = futures::future::try_join_all(runs).await?;
        return Ok(all
            .into_iter()
            .fold((0, 0), |(p, c), (dp, dc)| (p + dp, c + dc)));
    }
    let (mut prompt, mut completion) = (0u64, 0u64);
    loop {
        let mut active: Vec<(usize, &mut Episode)> = episodes
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| e.stop.is_none())
            .collect();
        if active.is_empty() {
            break;
        }
        let requests: Vec<Request> = active
            .iter()
            .map(|(i, e)| e.request(system, options.seed, *i))
            .collect();
        let replies = policy.complete_many(requests, options).await?;
        let pushes = active.iter_mut().zip(replies).map(|((_, ep), r)| {
            prompt += r.prompt_tokens;
            completion += r.completion_tokens;
            let step = reply_step(&r, ep.steps.len() as u32 + 1, author);
            let tools = &tools;
            async move { ep.push_off_thread(step, tools).await }
        });
        futures::future::try_join_all(pushes).await?;
        // The round's ended episodes go to the sink in one call (one write, not one per
        // episode), before they count as ended.
        if let Some(sink) = sink {
            let ended: Vec<(usize, Ended)> = active
                .iter()
                .filter_map(|(i, ep)| ep.ended().map(|e| (*i, e)))
                .collect();
            if !ended.is_empty() {
                sink.ended_many(ended).await?;
            }
        }
        for (_, ep) in &active {
            tally.turn(ep);
        }
    }
    Ok((prompt, completion))
}

/// The step a reply gives, with its token counts.
fn reply_step(r: &crate::openai::ChatResult, index: u32, author: Author) -> Step {
    let mut step = parse_step(&r.text, index, author);
    step.prompt_tokens = u32::try_from(r.prompt_tokens).unwrap_or(u32::MAX);
    step.completion_tokens = u32::try_from(r.completion_tokens).unwrap_or(u32::MAX);
    step
}

/// One episode to its end, a request at a time; its token counts.
async fn advance_alone(
    policy: &dyn Policy,
    (index, ep): (usize, &mut Episode),
    system: &str,
    options: &ChatOptions,
    author: Author,
    (tools, sink): (&tokio::sync::Semaphore, Option<&dyn EndedSink>),
    tally: &Tally<'_>,
) -> Result<(u64, u64), ModelError> {
    let mut tokens = (0, 0);
    while ep.stop.is_none() {
        let reply = policy
            .complete_many(vec![ep.request(system, options.seed, index)], options)
            .await?
            .pop()
            .ok_or_else(|| ModelError::Config("the policy gave no reply".into()))?;
        tokens.0 += reply.prompt_tokens;
        tokens.1 += reply.completion_tokens;
        let step = reply_step(&reply, ep.steps.len() as u32 + 1, author);
        ep.push_off_thread(step, tools).await?;
        // Told before it counts as ended. (What to send is taken before the wait: an
        // episode is not shared across threads.)
        if let Some((sink, ended)) = sink.and_then(|s| Some((s, ep.ended()?))) {
            sink.ended(index, ended).await?;
        }
        tally.turn(ep);
    }
    Ok(tokens)
}

/// What the progress line says: episodes ended, right so far, and how many turns the open
/// ones have taken. Said at most every [`Tally::EVERY`], and when the last episode ends: a
/// line per turn cost a node of 300 episodes hundreds of lines through the worker's pipe.
struct Tally<'a> {
    progress: &'a dyn ProgressSink,
    /// (ended, right, open per number of steps taken, when the last line was said).
    state: std::sync::Mutex<TallyState>,
    total: usize,
}

/// Episodes ended, right, open per number of steps taken, and when the last line was said.
type TallyState = (
    usize,
    usize,
    std::collections::BTreeMap<usize, usize>,
    Option<std::time::Instant>,
);

impl<'a> Tally<'a> {
    fn new(episodes: &[Episode], progress: &'a dyn ProgressSink) -> Self {
        let mut open = std::collections::BTreeMap::new();
        for e in episodes.iter().filter(|e| e.stop.is_none()) {
            *open.entry(e.steps.len()).or_insert(0) += 1;
        }
        Self {
            progress,
            state: std::sync::Mutex::new((0, 0, open, None)),
            total: episodes.iter().filter(|e| e.stop.is_none()).count(),
        }
    }

    /// The least time between two progress lines.
    const EVERY: std::time::Duration = std::time::Duration::from_millis(500);

    /// `ep` took a turn (and may have ended).
    fn turn(&self, ep: &Episode) {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let steps = ep.steps.len();
        if let Some(n) = s.2.get_mut(&steps.saturating_sub(1)) {
            *n = n.saturating_sub(1);
        }
        s.2.retain(|_, n| *n > 0);
        let ended = ep.stop.is_some();
        if ended {
            s.0 += 1;
            s.1 += usize::from(is_correct(&ep.task, ep.final_answer.as_deref()));
            self.progress.advance(1);
        } else {
            *s.2.entry(steps).or_insert(0) += 1;
        }
        let now = std::time::Instant::now();
        let last = s.0 == self.total;
        if !last && s.3.is_some_and(|t| now.duration_since(t) < Self::EVERY) {
            return;
        }
        s.3 = Some(now);
        let open: Vec<String> = s.2.iter().map(|(t, n)| format!("{n}@{t}")).collect();
        let right = match s.0 {
            0 => String::new(),
            n => format!(", {:.0}% right", 100.0 * s.1 as f64 / n as f64),
        };
        self.progress.message(&format!(
            "{} of {} ended{right}; open by turns taken: {}",
            s.0,
            self.total,
            if open.is_empty() {
                "none".into()
            } else {
                open.join(" ")
            }
        ));
    }
}
