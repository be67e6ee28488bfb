//! Import of the method's reference JSONL files (teacher trajectories and mentored-solving
//! records with their repairs) into trajectory and repair rows, and the exact way back.

use std::path::Path;

use scorch_tables::{Author, Repair, RepairRecord, Step, StepKind, StopReason, Trajectory};
use serde_json::{Map, Value, json};

use crate::answer::extract_boxed;
use crate::format::{CODE_LABELS, OBSERVATION_LABELS, PLAN_LABELS, THOUGHT_LABELS, strip_label};

/// A reference file that cannot be imported: which line, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ImportError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// What is wrong in one reference record (or in an imported trajectory's metadata), and
/// where in it (`repair_steps[2]: steps[0]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{problem}", if .at.is_empty() { String::new() } else { format!("{}: ", .at) })]
pub struct BadRecord {
    /// Where in the record (empty: the record itself).
    pub at: String,
    /// What is wrong.
    pub problem: String,
}

impl BadRecord {
    fn new(problem: impl Into<String>) -> Self {
        Self::at(String::new(), problem)
    }
    fn at(at: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            at: at.into(),
            problem: problem.into(),
        }
    }
    /// The same problem, seen from the field `outer` that holds where it is.
    fn within(mut self, outer: impl std::fmt::Display) -> Self {
        self.at = if self.at.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.at)
        };
        self
    }
}

/// Rows imported from one file.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// One per record.
    pub trajectories: Vec<Trajectory>,
    /// One per mentored-solving record (none for plain trajectories).
    pub repairs: Vec<RepairRecord>,
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn observation(v: Option<&Value>) -> Result<Option<String>, BadRecord> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(BadRecord::new(format!("observation is not text: {other}"))),
    }
}

/// The labels taken off one imported step's fields, by field (`thought`, `code`,
/// `observation`): the exact prefixes, so that the way back writes the field as it was.
type Labels = Vec<(&'static str, String)>;

/// A reference step object to a step row. The labels the renderer writes itself (`Thought:`,
/// `Plan:` and the reference's plan labels, `Code:`, `Observation:`) come off the fields, once:
/// the reference's thoughts often begin with `Thought: `, which rendered would read
/// `Thought: Thought: ...`.
fn step(
    v: &Value,
    index: u32,
    kind: StepKind,
    author: Author,
) -> Result<(Step, Labels), BadRecord> {
    let Value::Object(o) = v else {
        return Err(BadRecord::new(format!("step {index} is not an object")));
    };
    let known = ["thought", "code", "observation", "is_finished"];
    if !o.contains_key("thought") || o.keys().any(|k| !known.contains(&k.as_str())) {
        // Not a step: an error record of the reference pipeline. Kept whole, as text.
        let mut s = Step::new(index, kind, author, "", "");
        s.malformed = true;
        s.raw = Some(v.to_string());
        return Ok((s, Labels::new()));
    }
    let mut labels = Labels::new();
    let mut field = |name: &'static str, text: String, names: &[&str]| {
        let (body, label) = strip_label(&text, names);
        if let Some(l) = label {
            labels.push((name, l));
        }
        body
    };
    let thought_labels: &[&str] = if kind == StepKind::Plan {
        &PLAN_LABELS
    } else {
        &THOUGHT_LABELS
    };
    let thought = field("thought", text(o.get("thought")), thought_labels);
    let code = field("code", text(o.get("code")), &CODE_LABELS);
    let observation = observation(o.get("observation"))?
        .map(|obs| field("observation", obs, &OBSERVATION_LABELS));
    let mut s = Step::new(index, kind, author, &thought, &code);
    s.observation = observation;
    Ok((s, labels))
}

/// A step row back to a reference step object, with the labels its import took off.
fn step_json(s: &Step, is_finished: Option<&Value>, labels: Option<&Value>) -> Value {
    if s.malformed
        && let Some(v) = s
            .raw
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
    {
        return v;
    }
    let labelled = |name: &str, body: &str| -> String {
        let label = labels
            .and_then(|l| l.get(name))
            .and_then(Value::as_str)
            .unwrap_or("");
        format!("{label}{body}")
    };
    let mut o = Map::new();
    o.insert(
        "thought".into(),
        Value::String(labelled("thought", &s.thought)),
    );
    o.insert("code".into(), Value::String(labelled("code", &s.code)));
    o.insert(
        "observation".into(),
        s.observation.as_deref().map_or(Value::Null, |obs| {
            Value::String(labelled("observation", obs))
        }),
    );
    if let Some(f) = is_finished {
        o.insert("is_finished".into(), f.clone());
    }
    Value::Object(o)
}

/// Labels as the JSON object the metadata keeps (`{"thought": "Thought: "}`), or nothing.
fn labels_json(labels: &Labels) -> Option<Value> {
    (!labels.is_empty()).then(|| {
        Value::Object(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
                .collect(),
        )
    })
}

fn correct_of(eval: Option<&Value>) -> bool {
    match eval {
        Some(Value::Object(o)) => o
            .get("is_correct")
            .or_else(|| o.get("equivalent"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s)
            .ok()
            .is_some_and(|v| correct_of(Some(&v))),
        _ => false,
    }
}

/// Import one record (line `line` of `source`).
pub fn import_record(
    record: &Value,
    source: &str,
    line: usize,
) -> Result<(Trajectory, Option<RepairRecord>), BadRecord> {
    let Value::Object(o) = record else {
        return Err(BadRecord::new("a record is not a JSON object"));
    };
    let info = o
        .get("original_task_info")
        .and_then(Value::as_object)
        .ok_or_else(|| BadRecord::new("no `original_task_info`"))?;
    let task_id = text(info.get("id"));
    let question = text(info.get("question"));
    let raw_steps = o
        .get("steps")
        .and_then(Value::as_array)
        .ok_or_else(|| BadRecord::new("no `steps` list"))?;
    let mentored = o.contains_key("repair_steps");
    let trajectory_id = format!("{source}:{line}");

    // Teacher-written steps of a mentored record are its repairs' steps (compared as written).
    let teacher_steps: Vec<(String, String)> = o
        .get("repair_steps")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r.get("teacher_guided_step"))
                .map(|s| (text(s.get("thought")), text(s.get("code"))))
                .collect()
        })
        .unwrap_or_default();
    // Labels taken off, by where they were (`steps.3`, `repair_steps.0.teacher_guided_step`).
    let mut labels = Map::new();
    let mut steps = Vec::new();
    let mut flags = Vec::new();
    if let Some(first) = o.get("first_thought") {
        // The way back writes `first_thought` as the metadata keeps it.
        let (plan, _) = strip_label(&text(Some(first)), &PLAN_LABELS);
        let mut s = Step::new(1, StepKind::Plan, Author::Teacher, &plan, "");
        // The reference's agent answers a plan (no code) with the observation `None`, as its
        // mentored-solving records write it.
        s.observation = Some("None".into());
        steps.push(s);
    }
    let base_author = if mentored {
        Author::Student
    } else {
        Author::Teacher
    };
    for (i, s) in raw_steps.iter().enumerate() {
        let index = steps.len() as u32 + 1;
        let kind = if index == 1 {
            StepKind::Plan
        } else {
            StepKind::Step
        };
        let pair = (text(s.get("thought")), text(s.get("code")));
        let author = if teacher_steps.contains(&pair) {
            Author::Teacher
        } else {
            base_author
        };
        let (row, taken) =
            step(s, index, kind, author).map_err(|e| e.within(format!("steps[{i}]")))?;
        if let Some(l) = labels_json(&taken) {
            labels.insert(format!("steps.{i}"), l);
        }
        steps.push(row);
        flags.push(s.get("is_finished").cloned().unwrap_or(Value::Null));
    }
    let finished = raw_steps
        .iter()
        .rposition(|s| s.get("is_finished").and_then(Value::as_bool) == Some(true));
    let final_answer = finished.map(|i| {
        let obs = text(raw_steps[i].get("observation"));
        extract_boxed(&obs).unwrap_or(obs)
    });
    let stop_reason = if finished.is_some() {
        StopReason::FinalAnswer
    } else if steps.iter().any(|s| s.malformed) {
        StopReason::Error
    } else {
        StopReason::TurnLimit
    };
    let mut rest = o.clone();
    rest.remove("steps");
    rest.remove("repair_steps");
    let mut metadata =
        json!({"source": source, "line": line, "reference": rest, "is_finished": flags});
    let repairs = if mentored {
        Some(import_repairs(o, &mut labels)?)
    } else {
        None
    };
    if !labels.is_empty() {
        metadata["labels"] = Value::Object(labels);
    }
    let metadata = metadata.to_string();
    let trajectory = Trajectory {
        trajectory_id: trajectory_id.clone(),
        task_id: task_id.clone(),
        policy: if mentored {
            "student+teacher".into()
        } else {
            "teacher".into()
        },
        sample: 0,
        question,
        turns: steps.len() as u32,
        steps,
        final_answer,
        correct: correct_of(o.get("evaluation_result")),
        stop_reason,
        metadata,
    };
    let record = repairs.map(|repairs| RepairRecord {
        trajectory_id,
        task_id,
        repairs,
        hard_sample: o
            .get("is_hard_sample")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        metadata: "{}".into(),
    });
    Ok((trajectory, record))
}

/// The repairs of a mentored-solving record, with the labels taken off their steps put in
/// `labels` (under `repair_steps.R.teacher_guided_step`, `repair_steps.R.student_mistake.J`).
fn import_repairs(
    o: &Map<String, Value>,
    labels: &mut Map<String, Value>,
) -> Result<Vec<Repair>, BadRecord> {
    let mut repairs = Vec::new();
    for (i, r) in o
        .get("repair_steps")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = r
            .get("mistake_step_index")
            .and_then(Value::as_u64)
            .ok_or_else(|| BadRecord::at(format!("repair_steps[{i}]"), "no mistake_step_index"))?
            as u32
            + 1;
        let kind = |index: u32| {
            if index == 1 {
                StepKind::Plan
            } else {
                StepKind::Step
            }
        };
        let mut student = Vec::new();
        for (j, s) in r
            .get("student_mistake")
            .and_then(Value::as_array)
            .ok_or_else(|| BadRecord::at(format!("repair_steps[{i}]"), "no student_mistake list"))?
            .iter()
            .enumerate()
        {
            let index = at + j as u32;
            let (row, taken) = step(s, index, kind(index), Author::Student)
                .map_err(|e| e.within(format!("repair_steps[{i}]")))?;
            if let Some(l) = labels_json(&taken) {
                labels.insert(format!("repair_steps.{i}.student_mistake.{j}"), l);
            }
            student.push(row);
        }
        let (teacher, taken) = step(
            r.get("teacher_guided_step").ok_or_else(|| {
                BadRecord::at(format!("repair_steps[{i}]"), "no teacher_guided_step")
            })?,
            at,
            kind(at),
            Author::Teacher,
        )
        .map_err(|e| e.within(format!("repair_steps[{i}]")))?;
        if let Some(l) = labels_json(&taken) {
            labels.insert(format!("repair_steps.{i}.teacher_guided_step"), l);
        }
        repairs.push(Repair {
            step_index: at,
            student_steps: student,
            teacher_step: teacher,
            analysis: text(r.get("correction_suggestion")),
            context: r
                .get("context_before_intervention")
                .and_then(Value::as_str)
                .map(str::to_owned),
            valid: r.get("is_valid").and_then(Value::as_bool).unwrap_or(true),
        });
    }
    Ok(repairs)
}

/// Import a reference JSONL file into memory.
pub fn import_file(path: &Path) -> Result<Imported, ImportError> {
    let mut out = Imported::default();
    for record in records(path)? {
        let (t, r) = record?;
        out.trajectories.push(t);
        out.repairs.extend(r);
    }
    Ok(out)
}

/// The records of a reference JSONL file, imported one line at a time (a file of any size
/// is read with one line in memory).
pub fn records(
    path: &Path,
) -> Result<
    impl Iterator<Item = Result<(Trajectory, Option<RepairRecord>), ImportError>>,
    ImportError,
> {
    let file = path.display().to_string();
    let source = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let opened = std::fs::File::open(path).map_err(|e| ImportError {
        file: file.clone(),
        line: 0,
        message: e.to_string(),
    })?;
    let lines = std::io::BufRead::lines(std::io::BufReader::with_capacity(1 << 20, opened));
    Ok(lines.enumerate().filter_map(move |(i, line)| {
        let err = |message: String| ImportError {
            file: file.clone(),
            line: i + 1,
            message,
        };
        let line = match line {
            Ok(line) if line.trim().is_empty() => return None,
            Ok(line) => line,
            Err(e) => return Some(Err(err(e.to_string()))),
        };
        Some(
            serde_json::from_str::<Value>(&line)
                .map_err(|e| err(format!("not JSON: {e}")))
                .and_then(|v| import_record(&v, &source, i + 1).map_err(|e| err(e.to_string()))),
        )
    }))
}

/// Rebuild the reference record of an imported trajectory (and its repairs).
pub fn export_record(t: &Trajectory, repairs: Option<&RepairRecord>) -> Result<Value, BadRecord> {
    let meta: Value =
        serde_json::from_str(&t.metadata).map_err(|e| BadRecord::at("metadata", e.to_string()))?;
    let mut o = meta
        .get("reference")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| BadRecord::new("not an imported trajectory"))?;
    let flags = meta
        .get("is_finished")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let labels = meta.get("labels");
    let at = |path: String| labels.and_then(|l| l.get(path));
    let has_first = o.contains_key("first_thought");
    let steps: Vec<Value> = t
        .steps
        .iter()
        .skip(usize::from(has_first))
        .enumerate()
        .map(|(i, s)| {
            step_json(
                s,
                flags.get(i).filter(|f| !f.is_null()),
                at(format!("steps.{i}")),
            )
        })
        .collect();
    o.insert("steps".into(), Value::Array(steps));
    if let Some(r) = repairs {
        let list: Vec<Value> = r
            .repairs
            .iter()
            .enumerate()
            .map(|(i, rp)| {
                let teacher = at(format!("repair_steps.{i}.teacher_guided_step"));
                let student: Vec<Value> = rp
                    .student_steps
                    .iter()
                    .enumerate()
                    .map(|(j, s)| {
                        step_json(s, None, at(format!("repair_steps.{i}.student_mistake.{j}")))
                    })
                    .collect();
                json!({
                    "teacher_guided_step": step_json(&rp.teacher_step, None, teacher),
                    "student_mistake": student,
                    "mistake_step_index": rp.step_index - 1,
                    "correction_suggestion": rp.analysis,
                    "context_before_intervention": rp.context,
                    "is_valid": rp.valid,
                })
            })
            .collect();
        o.insert("repair_steps".into(), Value::Array(list));
    }
    Ok(Value::Object(o))
}
