//! The `correct` node (stage 1, mentored solving): the student rolls out; the teacher judges;
//! at the earliest wrong step the student's later steps are discarded, the teacher's one
//! replacement step is executed, and the student continues; at most `max_repairs` times. A
//! failure the judge cannot locate is a hard sample. Counts teacher and student tokens.
#![deny(missing_docs)]

use std::sync::Arc;

use scorch_agent::format::{CALC_SYSTEM, PYTHON_SYSTEM};
use scorch_agent::llm::{LlmTeacher, Prompts};
use scorch_agent::oracle::Oracle;
use scorch_agent::python::Sandbox;
use scorch_agent::teacher::{Cost, Teacher, TeacherError, Verdict};
use scorch_api::reexports::async_trait;
use scorch_api::resume::Journal;
use scorch_api::{DeclaredPlugin, NodeContext, PluginError, ProgressSink};
use scorch_kinds::correct::{CorrectParams, Mode, TeacherSpec};
use scorch_model::episode::{self, Episode};
use scorch_model::openai::OpenAiClient;
use scorch_model::policy::Policy;
use scorch_model::spec::{chat_policy, system_for, tool_for};
use scorch_tables::{Author, Repair, RepairRecord, StepKind, Task, Trajectory};

pub mod dagger;

/// The `correct` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Correct;

fn teacher_of(
    spec: &TeacherSpec,
    turn_limit: Option<u32>,
    calc: bool,
    sandbox: Sandbox,
) -> Result<Arc<dyn Teacher>, TeacherError> {
    Ok(match spec {
        TeacherSpec::Oracle => Arc::new(Oracle),
        TeacherSpec::Endpoint(e) => {
            let client = Arc::new(OpenAiClient::new(e.clone())?);
            let system = if calc { CALC_SYSTEM } else { PYTHON_SYSTEM };
            Arc::new(LlmTeacher::new(
                client,
                Prompts::default(),
                system,
                move || {
                    let task = Task {
                        task_id: String::new(),
                        suite: if calc {
                            "builtin".into()
                        } else {
                            String::new()
                        },
                        split: String::new(),
                        question: String::new(),
                        answer: String::new(),
                        metadata: "{}".into(),
                    };
                    tool_for(&task, sandbox).map_err(|e| TeacherError(e.to_string()))
                },
                turn_limit,
            ))
        }
    })
}

/// What the journal keeps of a task once it settled.
#[derive(serde::Serialize, serde::Deserialize)]
struct Settled {
    task_id: String,
    ended: episode::Ended,
    repairs: Vec<Repair>,
    hard_sample: bool,
    teacher: Cost,
    student_tokens: u64,
}

/// The student of `p` (the checkpoint in `dirs`, or an endpoint) and a fresh episode per
/// task, each with its task's place as its stream (a round plays only some of them).
pub(crate) fn student_and_episodes(
    p: &CorrectParams,
    tasks: &[Task],
    (model_dir, base_dir): (Option<&std::path::Path>, Option<&std::path::Path>),
) -> Result<(Arc<dyn Policy>, Vec<Episode>), PluginError> {
    let student = chat_policy(&p.student, model_dir, base_dir, &p.device)?.ok_or_else(|| {
        PluginError::failed(
            "the student must be a chat policy (student or endpoint), not the oracle",
        )
    })?;
    let eps = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut ep = Episode::new(t.clone(), tool_for(t, p.sandbox)?, p.turn_limit);
            ep.stream = Some(i as u64);
            Ok(ep)
        })
        .collect::<Result<_, PluginError>>()?;
    Ok((student, eps))
}

/// Mentored solving of `tasks` by the student at `model_dir` (an adapter: on its base, the
/// second folder). Returns trajectories, repair
/// records, and (teacher cost, student tokens).
/// `progress` counts the tasks settled (solved, out of repairs, or a hard sample). Each task
/// is written to `journal` as it settles, and a task the journal already holds is not
/// mentored again (a rerun of a node that was killed resumes).
pub async fn mentor(
    p: &CorrectParams,
    tasks: &[Task],
    dirs: (Option<&std::path::Path>, Option<&std::path::Path>),
    seed: u64,
    progress: &dyn ProgressSink,
    journal: Option<&Journal>,
) -> Result<(Vec<Trajectory>, Vec<RepairRecord>, Cost, u64), PluginError> {
    let calc = tasks.iter().all(|t| t.suite == "builtin");
    let teacher = teacher_of(&p.teacher, p.turn_limit, calc, p.sandbox)?;
    mentor_with(p, teacher, tasks, dirs, seed, progress, journal).await
}

/// [`mentor`] with `teacher` in place of the params' own.
pub async fn mentor_with(
    p: &CorrectParams,
    teacher: Arc<dyn Teacher>,
    tasks: &[Task],
    (model_dir, base_dir): (Option<&std::path::Path>, Option<&std::path::Path>),
    seed: u64,
    progress: &dyn ProgressSink,
    journal: Option<&Journal>,
) -> Result<(Vec<Trajectory>, Vec<RepairRecord>, Cost, u64), PluginError> {
    let (student, mut eps) = student_and_episodes(p, tasks, (model_dir, base_dir))?;
    let mut repairs: Vec<Vec<Repair>> = vec![Vec::new(); eps.len()];
    let mut hard = vec![false; eps.len()];
    let mut settled = vec![false; eps.len()];
    // Per task, so that a task settled in an earlier attempt brings its own.
    let mut costs = vec![Cost::default(); eps.len()];
    let mut student_tokens = vec![0u64; eps.len()];
    let system = system_for(tasks.first().map_or("", |t| t.task_id.as_str()));
    progress.set_total(tasks.len() as u64);
    if let Some(journal) = journal {
        for (name, bytes) in journal.entries().await? {
            let Some(i) = name
                .strip_suffix(".json")
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|&i| i < eps.len())
            else {
                continue;
            };
            let Ok(e) = serde_json::from_slice::<Settled>(&bytes) else {
                tracing::warn!(entry = %name, "a journal entry does not parse; its task is mentored again");
                continue;
            };
            if e.task_id != tasks[i].task_id {
                continue;
            }
            eps[i].restore(e.ended);
            repairs[i] = e.repairs;
            hard[i] = e.hard_sample;
            costs[i] = e.teacher;
            student_tokens[i] = e.student_tokens;
            settled[i] = true;
        }
        let kept = settled.iter().filter(|&&s| s).count();
        if kept > 0 {
            progress.message(&format!("{kept} tasks settled in an earlier attempt, kept"));
        }
    }
    let mut reported = 0;
    for round in 0..=p.max_repairs {
        let open: Vec<usize> = (0..eps.len()).filter(|&i| !settled[i]).collect();
        progress.advance((eps.len() - open.len() - reported) as u64);
        reported = eps.len() - open.len();
        if open.is_empty() {
            break;
        }
        progress.message(&format!("round {round}, {} tasks open", open.len()));
        let mut batch: Vec<Episode> = open
            .iter()
            .map(|&i| {
                std::mem::replace(
                    &mut eps[i],
                    Episode::new(
                        tasks[i].clone(),
                        Box::new(scorch_agent::tool::CalcTool),
                        p.turn_limit,
                    ),
                )
            })
            .collect();
        let options = p.sampling.seeded(seed.wrapping_add(u64::from(round)));
        let before: Vec<usize> = batch.iter().map(|e| e.steps.len()).collect();
        episode::run_with(
            student.as_ref(),
            &mut batch,
            system,
            &options,
            Author::Student,
            &scorch_api::NoProgress,
            episode::Schedule {
                tool_workers: p.tool_workers,
                ..Default::default()
            },
        )
        .await?;
        for ((&i, ep), from) in open.iter().zip(batch).zip(before) {
            student_tokens[i] += ep.steps[from.min(ep.steps.len())..]
                .iter()
                .map(|s| u64::from(s.completion_tokens))
                .sum::<u64>();
            eps[i] = ep;
        }
        // Every open task is judged (and repaired) at once: an endpoint teacher's requests
        // overlap up to its concurrency. The answers are applied in task order.
        let asked = futures::future::try_join_all(open.iter().map(|&i| {
            let steps = eps[i].steps.clone();
            let (task, teacher, done) = (&tasks[i], &teacher, repairs[i].len() as u32);
            async move {
                let (verdict, c) = teacher.judge(task, &steps).await?;
                let fix = match &verdict {
                    Verdict::Wrong { step, analysis }
                        if done < p.max_repairs && *step != 0 && *step as usize <= steps.len() =>
                    {
                        let k = *step as usize;
                        let prefix = &steps[..k - 1];
                        Some(
                            teacher
                                .repair(task, prefix, &steps[k - 1], analysis)
                                .await?,
                        )
                    }
                    _ => None,
                };
                Ok::<_, TeacherError>((verdict, c, fix))
            }
        }))
        .await?;
        for (&i, (verdict, c, fix)) in open.iter().zip(asked) {
            costs[i] += c;
            match verdict {
                Verdict::Correct => settled[i] = true,
                Verdict::CannotLocate { .. } => {
                    hard[i] = true;
                    settled[i] = true;
                }
                Verdict::Wrong { step, analysis } => {
                    // A repair was asked for exactly when one is allowed.
                    if let Some((mut fix, c)) = fix {
                        let k = step as usize;
                        let student_steps = eps[i].steps[k - 1..].to_vec();
                        costs[i] += c;
                        fix.author = Author::Teacher;
                        fix.kind = if k == 1 {
                            StepKind::Plan
                        } else {
                            StepKind::Step
                        };
                        let fresh = tool_for(&tasks[i], p.sandbox)?;
                        eps[i].truncate(step, fresh);
                        eps[i].push(fix);
                        let teacher_step = eps[i].steps[k - 1].clone();
                        repairs[i].push(Repair {
                            step_index: step,
                            student_steps,
                            teacher_step,
                            analysis,
                            context: None,
                            valid: true,
                        });
                    } else {
                        settled[i] = true;
                    }
                }
            }
            if settled[i]
                && let Some(journal) = journal
            {
                let entry = Settled {
                    task_id: tasks[i].task_id.clone(),
                    ended: eps[i].ended().unwrap_or_else(|| episode::Ended {
                        steps: eps[i].steps.clone(),
                        stop: scorch_tables::StopReason::TurnLimit,
                        final_answer: None,
                    }),
                    repairs: repairs[i].clone(),
                    hard_sample: hard[i],
                    teacher: costs[i],
                    student_tokens: student_tokens[i],
                };
                let bytes = serde_json::to_vec(&entry).map_err(|e| {
                    PluginError::failed(format!("a journal entry does not serialize: {e}"))
                })?;
                journal.put(&format!("{i:08}.json"), bytes).await?;
            }
        }
    }
    progress.advance((eps.len() - reported) as u64);
    let mut cost = Cost::default();
    for c in &costs {
        cost += *c;
    }
    let student_tokens = student_tokens.iter().sum();
    let mut trajectories = Vec::with_capacity(eps.len());
    let mut records = Vec::with_capacity(eps.len());
    for (i, ep) in eps.iter().enumerate() {
        let t = ep.trajectory("student+teacher", 0);
        records.push(RepairRecord {
            trajectory_id: t.trajectory_id.clone(),
            task_id: t.task_id.clone(),
            repairs: repairs[i].clone(),
            hard_sample: hard[i],
            metadata: "{}".into(),
        });
        trajectories.push(t);
    }
    Ok((trajectories, records, cost, student_tokens))
}

#[async_trait]
impl DeclaredPlugin for Correct {
    type Declared = scorch_kinds::Correct;
    async fn run(&self, p: CorrectParams, ctx: &NodeContext) -> Result<(), PluginError> {
        scorch_model::spec::record_sandbox(ctx, p.sandbox);
        let tasks: Vec<Task> = ctx.read_rows("tasks").await?;
        let model = ctx.optional_blobs("model")?;
        let base = ctx.optional_blobs("base")?;
        if p.mode == Mode::Dagger {
            let budget = if ctx.has_input("spent") {
                let spent: Vec<Trajectory> = ctx.read_rows("spent").await?;
                Some(spent.iter().map(Trajectory::teacher_steps).sum())
            } else {
                None
            };
            let calc = tasks.iter().all(|t| t.suite == "builtin");
            let teacher = teacher_of(&p.teacher, p.turn_limit, calc, p.sandbox)?;
            let out = dagger::dagger(
                &p,
                teacher.as_ref(),
                &tasks,
                (model.as_deref(), base.as_deref()),
                ctx.seed(),
                ctx.progress(),
                budget,
            )
            .await?;
            ctx.check_cancelled()?;
            if budget.is_some_and(|b| out.trajectories.len() < b) {
                tracing::warn!(
                    labels = out.trajectories.len(),
                    budget,
                    "the student's states ran out before the teacher's budget"
                );
            }
            ctx.metric("labels", out.trajectories.len() as f64);
            record_cost(ctx, out.trajectories.len(), out.cost, out.student_tokens);
            ctx.write_rows("trajectories", &out.trajectories)?;
            return ctx.write_rows("repairs", &out.records);
        }
        let (trajectories, records, cost, student_tokens) = mentor(
            &p,
            &tasks,
            (model.as_deref(), base.as_deref()),
            ctx.seed(),
            ctx.progress(),
            ctx.state_store().map(|s| s.journal()).as_ref(),
        )
        .await?;
        ctx.check_cancelled()?;
        let teacher_steps: usize = records.iter().map(|r| r.repairs.len()).sum();
        ctx.metric(
            "success",
            trajectories.iter().filter(|t| t.correct).count() as f64
                / trajectories.len().max(1) as f64,
        );
        ctx.metric("repairs", teacher_steps as f64);
        ctx.metric(
            "hard_samples",
            records.iter().filter(|r| r.hard_sample).count() as f64,
        );
        record_cost(ctx, teacher_steps, cost, student_tokens);
        ctx.write_rows("trajectories", &trajectories)?;
        ctx.write_rows("repairs", &records)
    }
}

/// The node's cost metrics: the teacher's steps, calls and tokens, the student's tokens.
fn record_cost(ctx: &NodeContext, teacher_steps: usize, cost: Cost, student_tokens: u64) {
    ctx.metric("teacher_steps", teacher_steps as f64);
    ctx.metric("teacher_calls", cost.calls as f64);
    ctx.metric("teacher_prompt_tokens", cost.prompt_tokens as f64);
    ctx.metric("teacher_completion_tokens", cost.completion_tokens as f64);
    ctx.metric("student_tokens", student_tokens as f64);
}
