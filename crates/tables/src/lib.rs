//! The tables SCoRe's nodes exchange: tasks, trajectories, repairs, RL prompts, evaluation
//! results, training steps and GRPO groups; their row types, Arrow schemas and conversions.
//!
//! Lists of steps are Arrow `list<struct>` columns, so pyarrow, DuckDB and polars read them
//! without help. Each table kind has a JSON Schema of its rows under `schemas/tables/`. The
//! row contract ([`TableRow`]) and the generic Parquet I/O are the plugin contract's
//! (`scorch-api`); nothing here is needed to write a node kind of another method.
#![deny(missing_docs)]

mod columns;

use arrow_array::RecordBatch;
use arrow_schema::FieldRef;
use schemars::JsonSchema;
use scorch_api::PluginError;
use serde::{Deserialize, Serialize};

pub use scorch_api::tables::TableRow;

/// One task: a question with a gold answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    /// Unique id.
    pub task_id: String,
    /// The suite (`builtin`, `math_500`, `hqa`...).
    pub suite: String,
    /// The split (`train`, `test`, `hard`).
    pub split: String,
    /// The question.
    pub question: String,
    /// The gold answer.
    pub answer: String,
    /// Suite-specific fields, as a JSON object.
    pub metadata: String,
}

impl TableRow for Task {
    const KIND: &'static str = "tasks";
    fn to_batch_with(fields: &[FieldRef], rows: &[Self]) -> Result<RecordBatch, PluginError> {
        columns::tasks(fields, rows)
    }
}

/// Whether a step is the plan (turn 1) or an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// Thought only.
    Plan,
    /// Thought and code.
    Step,
}

/// Who wrote a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    /// The policy being trained.
    Student,
    /// The teacher (a demonstration or a repair).
    Teacher,
}

/// One turn of a trajectory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Step {
    /// 1-based; the plan is step 1.
    pub index: u32,
    /// Plan or step.
    pub kind: StepKind,
    /// Student or teacher.
    pub author: Author,
    /// The reasoning text.
    pub thought: String,
    /// The code sent to the tool (empty for the plan).
    pub code: String,
    /// What the tool returned, if it ran.
    pub observation: Option<String>,
    /// Prompt tokens of the call that wrote the step.
    pub prompt_tokens: u32,
    /// Tokens of the step itself.
    pub completion_tokens: u32,
    /// The model's text did not parse; `raw` keeps it.
    pub malformed: bool,
    /// The text as the model wrote it, when it differs from the rendering.
    pub raw: Option<String>,
}

impl Step {
    /// A well-formed step.
    pub fn new(index: u32, kind: StepKind, author: Author, thought: &str, code: &str) -> Self {
        Self {
            index,
            kind,
            author,
            thought: thought.to_owned(),
            code: code.to_owned(),
            observation: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            malformed: false,
            raw: None,
        }
    }
}

/// Why an episode ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The code called `final_answer(...)`.
    FinalAnswer,
    /// The turn limit was reached.
    TurnLimit,
    /// The model or a tool failed.
    Error,
}

/// One episode of a policy on a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Trajectory {
    /// Unique id.
    pub trajectory_id: String,
    /// The task.
    pub task_id: String,
    /// The policy that produced it (`student`, `teacher`, a model name).
    pub policy: String,
    /// Sample index among the samples of this task.
    pub sample: u32,
    /// The question (copied from the task, so a table stands alone).
    pub question: String,
    /// The turns, plan first.
    pub steps: Vec<Step>,
    /// The final answer, if one was given.
    pub final_answer: Option<String>,
    /// Whether the final answer matches the gold answer.
    pub correct: bool,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Turns taken.
    pub turns: u32,
    /// Source-specific fields, as a JSON object.
    pub metadata: String,
}

impl Trajectory {
    /// Steps the teacher wrote: what it cost the teacher, counted alike for demonstrations,
    /// SCoRe's repairs and DAgger's labels.
    pub fn teacher_steps(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.author == Author::Teacher)
            .count()
    }
}

impl TableRow for Trajectory {
    const KIND: &'static str = "trajectories";
    fn to_batch_with(fields: &[FieldRef], rows: &[Self]) -> Result<RecordBatch, PluginError> {
        columns::trajectories(fields, rows)
    }
}

/// One teacher intervention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Repair {
    /// 1-based index of the earliest wrong step (the plan is 1).
    pub step_index: u32,
    /// The student's steps from the wrong one on, as discarded (the wrong step first).
    pub student_steps: Vec<Step>,
    /// The teacher's one replacement step.
    pub teacher_step: Step,
    /// The judge's analysis.
    pub analysis: String,
    /// Extra context the teacher saw, if any.
    pub context: Option<String>,
    /// Whether the repair was accepted as valid.
    pub valid: bool,
}

/// The repairs of one mentored trajectory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RepairRecord {
    /// The trajectory the repairs produced.
    pub trajectory_id: String,
    /// The task.
    pub task_id: String,
    /// The repairs in order.
    pub repairs: Vec<Repair>,
    /// The judge could not locate the failure.
    pub hard_sample: bool,
    /// Source-specific fields, as a JSON object.
    pub metadata: String,
}

impl TableRow for RepairRecord {
    const KIND: &'static str = "repairs";
}

/// One GRPO start state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RlPrompt {
    /// Unique id.
    pub prompt_id: String,
    /// The task.
    pub task_id: String,
    /// The question.
    pub question: String,
    /// The gold answer.
    pub gold_answer: String,
    /// The verified prefix (the judge says every step is right); empty for a fresh start.
    pub prefix: Vec<Step>,
    /// The teacher's step at the repair point.
    pub chosen: Option<Step>,
    /// The student's wrong step at the repair point.
    pub rejected: Option<Step>,
    /// `repaired`, `hard` or `easy` (from `filter`), or `fresh` (imported without a key step,
    /// its outcome unknown).
    pub source: String,
}

impl TableRow for RlPrompt {
    const KIND: &'static str = "rl_prompts";
}

/// One evaluated group (a suite and split under one policy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvalResult {
    /// What was evaluated (an arm name: `warm_start`, `score_rl`, `teacher`).
    pub label: String,
    /// The suite.
    pub suite: String,
    /// The split.
    pub split: String,
    /// Trajectories evaluated.
    pub n: u32,
    /// Correct ones.
    pub correct: u32,
    /// correct / n.
    pub accuracy: f64,
    /// pass@k over the samples of each task (k = samples).
    pub pass_at_k: f64,
    /// Mean token F1 (QA suites; 0 elsewhere).
    pub mean_f1: f64,
    /// Mean turns used.
    pub mean_turns: f64,
    /// Mean tokens written by the policy per trajectory.
    pub mean_tokens: f64,
    /// Distinct final answers / trajectories: near 0, the policy answers the same few
    /// values to every question (a collapsed student); near 1, an answer per question.
    pub answer_diversity: f64,
}

impl TableRow for EvalResult {
    const KIND: &'static str = "results";
}

/// One optimiser step of a training node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainStep {
    /// Step (0-based).
    pub step: u32,
    /// Loss (SFT: masked NLL; RL: the surrogate objective).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Mean reward of the step's groups (RL; 0 for SFT).
    pub reward: f64,
}

impl TableRow for TrainStep {
    const KIND: &'static str = "train_steps";
}

/// One encoded training sequence, as an external trainer reads it: its token ids and loss
/// mask. A run's sequences are written once; [`TrainPlanRow`]s say which make each step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainSequence {
    /// Its number (0-based, as the plan names it).
    pub index: u32,
    /// Token ids.
    pub ids: Vec<i64>,
    /// Per token, 1 where it is a target of the loss (the policy's own turns), else 0; the
    /// first token is never a target.
    pub loss_mask: Vec<f32>,
}

impl TableRow for TrainSequence {
    const KIND: &'static str = "train_sequences";
}

/// One sequence's place in a training run: the optimiser step and micro-batch it belongs to
/// (a step's micro-batches, in order, are its rows grouped by `micro`), what the step's loss
/// is divided by, and the step's learning rate. The loss of a step is the sum over its rows
/// of the masked negative log-likelihood divided by `scored`, however the micro-batches are
/// spread over processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainPlanRow {
    /// Optimiser step (0-based).
    pub step: u32,
    /// Micro-batch within the step (0-based): the rows of one forward and backward pass.
    pub micro: u32,
    /// The [`TrainSequence`] (its `index`).
    pub sequence: u32,
    /// Targets the whole step scores (at least 1).
    pub scored: f64,
    /// The step's learning rate (warm-up and cosine, as the embedded trainer's).
    pub lr: f64,
}

impl TableRow for TrainPlanRow {
    const KIND: &'static str = "train_plan";
}

/// One GRPO group of an RL step: the rewards of the episodes sampled from one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RlGroup {
    /// Step (0-based).
    pub step: u32,
    /// The prompt's task.
    pub task_id: String,
    /// Verified steps the episodes started from.
    pub prefix_len: u32,
    /// Each episode's reward, in sampling order.
    pub rewards: Vec<f64>,
}

impl RlGroup {
    /// The group's mean reward.
    pub fn mean(&self) -> f64 {
        self.rewards.iter().sum::<f64>() / self.rewards.len().max(1) as f64
    }
}

impl TableRow for RlGroup {
    const KIND: &'static str = "rl_groups";
}

/// `(kind, JSON Schema of a row)` of every table kind.
pub fn table_schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (Task::KIND, Task::row_schema()),
        (Trajectory::KIND, Trajectory::row_schema()),
        (RepairRecord::KIND, RepairRecord::row_schema()),
        (RlPrompt::KIND, RlPrompt::row_schema()),
        (EvalResult::KIND, EvalResult::row_schema()),
        (TrainStep::KIND, TrainStep::row_schema()),
        (RlGroup::KIND, RlGroup::row_schema()),
        (TrainSequence::KIND, TrainSequence::row_schema()),
        (TrainPlanRow::KIND, TrainPlanRow::row_schema()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::DataType;

    fn traj() -> Trajectory {
        let mut s = Step::new(
            2,
            StepKind::Step,
            Author::Teacher,
            "buys 3 bags of 5",
            "3 * 5",
        );
        s.observation = Some("15".into());
        Trajectory {
            trajectory_id: "t1".into(),
            task_id: "a".into(),
            policy: "teacher".into(),
            sample: 0,
            question: "q".into(),
            steps: vec![Step::new(1, StepKind::Plan, Author::Teacher, "plan", ""), s],
            final_answer: Some("15".into()),
            correct: true,
            stop_reason: StopReason::FinalAnswer,
            turns: 2,
            metadata: "{}".into(),
        }
    }

    #[test]
    fn steps_are_a_list_of_structs_and_rows_round_trip() {
        let schema = Trajectory::schema();
        let steps = schema.field_with_name("steps").unwrap();
        match steps.data_type() {
            DataType::List(item) | DataType::LargeList(item) => {
                assert!(matches!(item.data_type(), DataType::Struct(_)))
            }
            other => panic!("steps is {other}"),
        }
        assert_eq!(
            schema.field_with_name("stop_reason").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(
            schema
                .field_with_name("final_answer")
                .unwrap()
                .is_nullable()
        );
        let rows = vec![traj(), traj()];
        let batch = Trajectory::to_batch(&rows).unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(Trajectory::from_batch(&batch).unwrap(), rows);
    }

    #[test]
    fn every_table_kind_has_a_schema() {
        let kinds: Vec<&str> = table_schemas().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            vec![
                "tasks",
                "trajectories",
                "repairs",
                "rl_prompts",
                "results",
                "train_steps",
                "rl_groups",
                "train_sequences",
                "train_plan"
            ]
        );
        assert!(
            !RlPrompt::fields().is_empty()
                && !RepairRecord::fields().is_empty()
                && !Task::fields().is_empty()
        );
    }
}
