//! DAgger, the classical way to train a student on its own states (Ross et al., 2011): the
//! student solves each task, and the teacher labels every state it visited with the step it
//! would take there. One round of it, as the baseline SCoRe is measured against at equal
//! teacher cost: SCoRe asks the teacher for one step at the earliest error only.

use scorch_agent::teacher::{Cost, Teacher};
use scorch_api::{PluginError, ProgressSink};
use scorch_kinds::correct::CorrectParams;
use scorch_model::episode;
use scorch_model::spec::system_for;
use scorch_tables::{Author, Repair, RepairRecord, Step, StepKind, StopReason, Task, Trajectory};

/// What DAgger gives: one training trajectory per label (the student's steps up to the
/// state, then the teacher's step), one repair record per label, the teacher's cost and the
/// student's tokens.
#[derive(Debug)]
pub struct Labelled {
    /// The labels as trajectories.
    pub trajectories: Vec<Trajectory>,
    /// Each label as a repair of the student's step at that state.
    pub records: Vec<RepairRecord>,
    /// What the teacher spent.
    pub cost: Cost,
    /// Tokens the student wrote.
    pub student_tokens: u64,
}

/// The student at `dirs` (checkpoint, base) solves `tasks`; `teacher` labels the states of
/// each episode in task order, each state before a step the student took, until it wrote
/// `budget` steps (unbounded: every state).
pub async fn dagger(
    p: &CorrectParams,
    teacher: &dyn Teacher,
    tasks: &[Task],
    dirs: (Option<&std::path::Path>, Option<&std::path::Path>),
    seed: u64,
    progress: &dyn ProgressSink,
    budget: Option<usize>,
) -> Result<Labelled, PluginError> {
    let (student, mut eps) = crate::student_and_episodes(p, tasks, dirs)?;
    progress.set_total(tasks.len() as u64);
    progress.message("the student solves every task");
    let system = system_for(tasks.first().map_or("", |t| t.task_id.as_str()));
    let (_, student_tokens) = episode::run_with(
        student.as_ref(),
        &mut eps,
        system,
        &p.sampling.seeded(seed),
        Author::Student,
        &scorch_api::NoProgress,
        episode::Schedule {
            tool_workers: p.tool_workers,
            ..Default::default()
        },
    )
    .await?;
    // The states visited (an episode's tool is not shared across the teacher's awaits).
    let visited: Vec<Vec<Step>> = eps.into_iter().map(|e| e.steps).collect();
    let budget = budget.unwrap_or(usize::MAX);
    let mut out = Labelled {
        trajectories: Vec::new(),
        records: Vec::new(),
        cost: Cost::default(),
        student_tokens,
    };
    'tasks: for (task, steps) in tasks.iter().zip(&visited) {
        for k in 0..steps.len() {
            if out.trajectories.len() >= budget {
                break 'tasks;
            }
            let prefix = &steps[..k];
            let (mut label, c) = teacher.repair(task, prefix, &steps[k], "").await?;
            out.cost += c;
            label.author = Author::Teacher;
            label.kind = if k == 0 {
                StepKind::Plan
            } else {
                StepKind::Step
            };
            label.index = k as u32 + 1;
            let mut steps = prefix.to_vec();
            steps.push(label.clone());
            let trajectory_id = format!("{}/dagger/{k}", task.task_id);
            out.records.push(RepairRecord {
                trajectory_id: trajectory_id.clone(),
                task_id: task.task_id.clone(),
                repairs: vec![Repair {
                    step_index: k as u32 + 1,
                    student_steps: vec![steps[k].clone()],
                    teacher_step: label,
                    analysis: String::new(),
                    context: None,
                    valid: true,
                }],
                hard_sample: false,
                metadata: "{}".into(),
            });
            out.trajectories.push(Trajectory {
                trajectory_id,
                task_id: task.task_id.clone(),
                policy: "student+teacher".into(),
                sample: k as u32,
                question: task.question.clone(),
                turns: steps.len() as u32,
                steps,
                // A label ends no episode: it is a state and the teacher's step there.
                final_answer: None,
                correct: false,
                stop_reason: StopReason::TurnLimit,
                metadata: "{}".into(),
            });
        }
        progress.advance(1);
    }
    Ok(out)
}
