//! The `correct` node kind: its params and ports (the work is in `plugins/correct`).

use schemars::JsonSchema;
use scorch_api::{Declaration, Hardware, ParamError, Signature};
use scorch_tables::{RepairRecord, TableRow, Task, Trajectory};
use serde::{Deserialize, Serialize};

use crate::episodes::episode_params;
use crate::policy::{Endpoint, PolicySpec, SamplingParams};

/// The `correct` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct Correct;

/// Which teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TeacherSpec {
    /// The exact oracle of the built-in suite.
    Oracle,
    /// An LLM behind an OpenAI-compatible endpoint, with optional prompt templates.
    Endpoint(Endpoint),
}

/// What the teacher does with the student's episodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// SCoRe's mentored solving: judge, repair the earliest wrong step, let the student go on.
    #[default]
    Mentor,
    /// DAgger: label every state the student visited with the step the teacher would take
    /// there, one training trajectory per label (the student's steps, then the teacher's),
    /// in task order until the teacher wrote as many steps as the `spent` input's (equal
    /// teacher cost), or for every state without it.
    Dagger,
}

impl Mode {
    /// Whether it is the default.
    pub fn is_mentor(&self) -> bool {
        *self == Self::Mentor
    }
}

episode_params! {
    /// Params of `correct`.
    #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    pub struct CorrectParams {
        /// `mentor` (SCoRe) or `dagger`.
        #[serde(default, skip_serializing_if = "Mode::is_mentor")]
        pub mode: Mode,
        /// The student (default: the checkpoint connected as `model`).
        #[serde(default = "student")]
        pub student: PolicySpec,
        /// The teacher.
        #[serde(default = "oracle")]
        pub teacher: TeacherSpec,
        /// Repairs per trajectory at most.
        #[serde(default = "three")]
        pub max_repairs: u32,
        /// The student's sampling.
        #[serde(default)]
        pub sampling: SamplingParams,
    }
}

fn student() -> PolicySpec {
    PolicySpec::Student
}
fn oracle() -> TeacherSpec {
    TeacherSpec::Oracle
}
fn three() -> u32 {
    3
}

impl Declaration for Correct {
    type Params = CorrectParams;
    fn kind(&self) -> &'static str {
        "correct"
    }
    fn version(&self) -> &'static str {
        // 2: each request samples with a seed of its own (the run's seed, the episode's place,
        // the turn): a sampled policy's outputs no longer depend on its batch, and an endpoint
        // is sent a different seed per sample.
        "2"
    }
    fn description(&self) -> &'static str {
        "Mentored solving: the teacher repairs the student's earliest wrong step, the student continues (or, as DAgger, labels every step it visited)"
    }
    fn signature(&self, p: &CorrectParams) -> Result<Signature, ParamError> {
        if p.student == PolicySpec::Oracle {
            return Err(ParamError::new(
                "student",
                "the oracle is a teacher; the student is `student` or an endpoint",
            ));
        }
        let signature = Signature::new()
            .input("tasks", Task::port())
            .output("trajectories", Trajectory::port())
            .output("repairs", RepairRecord::port());
        let signature = match p.mode {
            Mode::Mentor => signature,
            Mode::Dagger => signature.optional_input("spent", Trajectory::port()),
        };
        Ok(p.student.add_inputs(signature))
    }
    fn settle(&self, p: &mut CorrectParams, hardware: Hardware) {
        if p.student.uses_device() {
            crate::policy::settle_device(&mut p.device, hardware);
        }
    }
}
