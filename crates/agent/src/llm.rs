//! The LLM teacher: the same three calls through an OpenAI-compatible chat endpoint, with
//! prompt templates (Jinja) in files a user can replace.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use minijinja::{Environment, context};
use scorch_tables::{Author, Step, StepKind, Task};
use serde::{Deserialize, Serialize};

use crate::format::{Message, Role, parse_step, render_messages, render_step};
use crate::judge::parse_reply;
use crate::teacher::{Cost, Demonstration, Teacher, TeacherError, Verdict};
use crate::tool::Tool;

/// Sampling settings: the one sampling type of scorch, for every chat (to a teacher, an
/// endpoint or the local student) and in node params (`sampling:`, where `temperature`,
/// `top_p`, `top_k` and `max_tokens` can be written; the stop strings and the seed are the
/// caller's). One set of defaults, a student's turn: temperature 1, no nucleus or top-k cut,
/// 96 tokens. Callers narrow it where they need to: [`ChatOptions::greedy`] for judges and
/// teachers, [`ChatOptions::seeded`] for a node's sampler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatOptions {
    /// Sampling temperature (0: greedy).
    #[serde(default = "one")]
    pub temperature: f64,
    /// Nucleus sampling (1: off).
    #[serde(default = "one")]
    pub top_p: f64,
    /// Keep the k most likely tokens (0: off; endpoints get it only when set, as vLLM's and
    /// SGLang's `top_k`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub top_k: usize,
    /// Most tokens per turn.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: usize,
    /// Stop strings (cut from the text).
    #[serde(skip)]
    pub stop: Vec<String>,
    /// The sampler's seed (none: the server's choice; the local student then uses 0).
    #[serde(skip)]
    pub seed: Option<u64>,
}

fn one() -> f64 {
    1.0
}
fn default_max_tokens() -> usize {
    96
}
fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Default for ChatOptions {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            max_tokens: default_max_tokens(),
            stop: Vec::new(),
            seed: None,
        }
    }
}

impl ChatOptions {
    /// Greedy, up to `max_tokens`: a judge's or a teacher's call.
    pub fn greedy(max_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            max_tokens,
            ..Self::default()
        }
    }

    /// These settings with the sampler's seed `seed`.
    pub fn seeded(&self, seed: u64) -> Self {
        Self {
            seed: Some(seed),
            ..self.clone()
        }
    }
}

/// Most tokens of a teacher's or judge's reply.
const JUDGE_TOKENS: usize = 1024;

/// One chat completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatReply {
    /// The assistant's text.
    pub text: String,
    /// Tokens read.
    pub prompt_tokens: u64,
    /// Tokens written.
    pub completion_tokens: u64,
}

/// A chat endpoint (an OpenAI-compatible server, or a model in process).
#[async_trait]
pub trait ChatClient: Send + Sync {
    /// The model name, for records.
    fn model(&self) -> &str;
    /// Complete a chat.
    async fn chat(
        &self,
        messages: &[Message],
        options: &ChatOptions,
    ) -> Result<ChatReply, TeacherError>;
}

/// The teacher's prompt templates.
#[derive(Debug, Clone)]
pub struct Prompts {
    /// Judge: `question`, `gold_answer`, `steps` (index, text, observation).
    pub judge: String,
    /// Repair: `question`, `prefix`, `wrong`, `analysis`, `index`.
    pub repair: String,
    /// Equivalence: `question`, `a`, `b`.
    pub equivalent: String,
    /// Answer check: `question`, `predicted`, `gold`.
    pub answer: String,
}

impl Default for Prompts {
    fn default() -> Self {
        Self {
            judge: include_str!("../prompts/judge.j2").to_owned(),
            repair: include_str!("../prompts/repair.j2").to_owned(),
            equivalent: include_str!("../prompts/equivalent.j2").to_owned(),
            answer: include_str!("../prompts/answer.j2").to_owned(),
        }
    }
}

impl Prompts {
    /// The built-in templates, with any of `judge.j2`, `repair.j2`, `equivalent.j2` found in
    /// `dir` taking their place.
    pub fn from_dir(dir: &Path) -> Result<Self, TeacherError> {
        let mut p = Self::default();
        for (name, slot) in [
            ("judge.j2", &mut p.judge),
            ("repair.j2", &mut p.repair),
            ("equivalent.j2", &mut p.equivalent),
        ] {
            let path = dir.join(name);
            if path.exists() {
                *slot = std::fs::read_to_string(&path)
                    .map_err(|e| TeacherError(format!("{}: {e}", path.display())))?;
            }
        }
        let env = Environment::new();
        for (name, t) in [
            ("judge.j2", &p.judge),
            ("repair.j2", &p.repair),
            ("equivalent.j2", &p.equivalent),
        ] {
            env.template_from_str(t)
                .map_err(|e| TeacherError(format!("{}: {e}", dir.join(name).display())))?;
        }
        Ok(p)
    }
}

#[derive(Serialize)]
struct StepView {
    index: u32,
    text: String,
    observation: Option<String>,
}

fn views(steps: &[Step]) -> Vec<StepView> {
    steps
        .iter()
        .map(|s| StepView {
            index: s.index,
            text: render_step(s),
            observation: s.observation.clone(),
        })
        .collect()
}

fn render(template: &str, ctx: minijinja::Value) -> Result<String, TeacherError> {
    let env = Environment::new();
    env.render_str(template, ctx)
        .map_err(|e| TeacherError(format!("prompt template: {e}")))
}

/// The judge prompt for `steps`.
pub fn judge_prompt(
    prompts: &Prompts,
    task: &Task,
    steps: &[Step],
) -> Result<String, TeacherError> {
    render(
        &prompts.judge,
        context! { question => task.question.clone(), gold_answer => task.answer.clone(), steps => minijinja::Value::from(minijinja::value::Serde(views(steps))) },
    )
}

/// The repair prompt.
pub fn repair_prompt(
    prompts: &Prompts,
    task: &Task,
    prefix: &[Step],
    wrong: &Step,
    analysis: &str,
) -> Result<String, TeacherError> {
    render(
        &prompts.repair,
        context! { question => task.question.clone(), prefix => minijinja::Value::from(minijinja::value::Serde(views(prefix))), wrong => render_step(wrong), analysis => analysis, index => prefix.len() as u32 + 1 },
    )
}

fn says_yes(text: &str) -> bool {
    let first = text
        .trim()
        .trim_start_matches(['*', '"', '\''])
        .to_ascii_lowercase();
    first.starts_with("yes")
        || first.starts_with("equivalent")
        || first.contains("\"equivalent\": true")
}

/// The optional judge-model answer check: asks `client` whether `predicted` answers
/// `question` as `gold` does (for answers that normalisation cannot compare).
pub async fn answers_match(
    client: &dyn ChatClient,
    prompts: &Prompts,
    question: &str,
    predicted: &str,
    gold: &str,
) -> Result<(bool, Cost), TeacherError> {
    let prompt = render(
        &prompts.answer,
        context! { question => question, predicted => predicted, gold => gold },
    )?;
    let reply = client
        .chat(
            &[Message::new(Role::User, prompt)],
            &ChatOptions::greedy(JUDGE_TOKENS),
        )
        .await?;
    Ok((
        says_yes(&reply.text),
        Cost {
            calls: 1,
            prompt_tokens: reply.prompt_tokens,
            completion_tokens: reply.completion_tokens,
        },
    ))
}

/// A teacher behind a chat endpoint.
pub struct LlmTeacher {
    client: Arc<dyn ChatClient>,
    prompts: Prompts,
    system: String,
    tool: Box<dyn Fn() -> Result<Box<dyn Tool>, TeacherError> + Send + Sync>,
    turn_limit: Option<u32>,
    options: ChatOptions,
}

impl std::fmt::Debug for LlmTeacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmTeacher")
            .field("model", &self.client.model())
            .finish_non_exhaustive()
    }
}

impl LlmTeacher {
    /// A teacher that solves with tools made by `tool`, within `turn_limit` turns (`None`:
    /// each task's own limit).
    pub fn new(
        client: Arc<dyn ChatClient>,
        prompts: Prompts,
        system: &str,
        tool: impl Fn() -> Result<Box<dyn Tool>, TeacherError> + Send + Sync + 'static,
        turn_limit: Option<u32>,
    ) -> Self {
        Self {
            client,
            prompts,
            system: system.to_owned(),
            tool: Box::new(tool),
            turn_limit,
            options: ChatOptions::greedy(JUDGE_TOKENS),
        }
    }

    async fn ask(&self, prompt: String) -> Result<(String, Cost), TeacherError> {
        let reply = self
            .client
            .chat(&[Message::new(Role::User, prompt)], &self.options)
            .await?;
        Ok((
            reply.text,
            Cost {
                calls: 1,
                prompt_tokens: reply.prompt_tokens,
                completion_tokens: reply.completion_tokens,
            },
        ))
    }
}

#[async_trait]
impl Teacher for LlmTeacher {
    fn name(&self) -> &str {
        self.client.model()
    }

    async fn demonstrate(&self, task: &Task) -> Result<(Demonstration, Cost), TeacherError> {
        let mut tool = (self.tool)()?;
        let mut steps: Vec<Step> = Vec::new();
        let mut cost = Cost::default();
        for index in 1..=crate::format::turn_limit_for(task, self.turn_limit) {
            let messages = render_messages(&self.system, &task.question, &steps);
            let reply = self.client.chat(&messages, &self.options).await?;
            cost += Cost {
                calls: 1,
                prompt_tokens: reply.prompt_tokens,
                completion_tokens: reply.completion_tokens,
            };
            let mut step = parse_step(&reply.text, index, Author::Teacher);
            step.prompt_tokens = u32::try_from(reply.prompt_tokens).unwrap_or(u32::MAX);
            step.completion_tokens = u32::try_from(reply.completion_tokens).unwrap_or(u32::MAX);
            if step.kind == StepKind::Step && !step.malformed {
                let out = tool.execute(&step.code);
                step.observation = Some(out.observation);
                if let Some(answer) = out.final_answer {
                    steps.push(step);
                    return Ok((
                        Demonstration {
                            steps,
                            final_answer: Some(answer),
                        },
                        cost,
                    ));
                }
            } else if step.malformed {
                step.observation =
                    Some("Error: write a thought and code, as `Thought: ...` then `Code:`.".into());
            }
            steps.push(step);
        }
        Ok((
            Demonstration {
                steps,
                final_answer: None,
            },
            cost,
        ))
    }

    async fn judge(&self, task: &Task, steps: &[Step]) -> Result<(Verdict, Cost), TeacherError> {
        let (text, cost) = self.ask(judge_prompt(&self.prompts, task, steps)?).await?;
        let verdict = match parse_reply(&text) {
            Verdict::Wrong { step, .. } if step as usize > steps.len() => {
                Verdict::CannotLocate { analysis: text }
            }
            v => v,
        };
        Ok((verdict, cost))
    }

    async fn repair(
        &self,
        task: &Task,
        prefix: &[Step],
        wrong: &Step,
        analysis: &str,
    ) -> Result<(Step, Cost), TeacherError> {
        let (text, cost) = self
            .ask(repair_prompt(&self.prompts, task, prefix, wrong, analysis)?)
            .await?;
        let mut step = parse_step(&text, prefix.len() as u32 + 1, Author::Teacher);
        step.completion_tokens = u32::try_from(cost.completion_tokens).unwrap_or(u32::MAX);
        Ok((step, cost))
    }

    async fn equivalent(
        &self,
        task: &Task,
        _prefix: &[Step],
        a: &Step,
        b: &Step,
    ) -> Result<(bool, Cost), TeacherError> {
        let prompt = render(
            &self.prompts.equivalent,
            context! { question => task.question.clone(), a => render_step(a), b => render_step(b) },
        )?;
        let (text, cost) = self.ask(prompt).await?;
        Ok((says_yes(&text), cost))
    }
}
