//! Arrow arrays for the tables that grow large (tasks, trajectories), built column by column
//! instead of through serde.
//!
//! `serde_arrow` goes through serde's data model value by value; for a trajectory's list of
//! steps that took as long as encoding the whole table (`cargo bench -p scorch-agent --bench
//! parquet`, BENCHMARKS.md). The schema is still the one traced from the row type
//! ([`TableRow::fields`]): each column is looked up by the traced field's name and built with
//! the traced type, and a test checks that both paths give the same batch.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, BooleanArray, ListArray, RecordBatch, StructArray, UInt32Array};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, FieldRef, Fields, Schema};
use serde::Serialize;

use crate::{Step, TableRow, Task, Trajectory};
use scorch_api::{PluginError, PluginErrorKind};

fn unknown(kind: &str, column: &str) -> PluginError {
    PluginError::new(
        PluginErrorKind::Output,
        format!("{kind} rows to Arrow: no builder for column `{column}`"),
    )
}

fn arrow_error(kind: &str, e: &arrow_schema::ArrowError) -> PluginError {
    PluginError::new(
        PluginErrorKind::Output,
        format!("{kind} rows to Arrow: {e}"),
    )
}

fn strings<R>(rows: &[R], get: impl Fn(&R) -> &str) -> ArrayRef {
    let bytes = rows.iter().map(|r| get(r).len()).sum();
    let mut b = StringBuilder::with_capacity(rows.len(), bytes);
    for r in rows {
        b.append_value(get(r));
    }
    Arc::new(b.finish())
}

fn optional_strings<R>(rows: &[R], get: impl Fn(&R) -> Option<&str>) -> ArrayRef {
    let bytes = rows.iter().map(|r| get(r).map_or(0, str::len)).sum();
    let mut b = StringBuilder::with_capacity(rows.len(), bytes);
    for r in rows {
        b.append_option(get(r));
    }
    Arc::new(b.finish())
}

fn numbers<R>(rows: &[R], get: impl Fn(&R) -> u32) -> ArrayRef {
    Arc::new(UInt32Array::from_iter_values(rows.iter().map(get)))
}

fn flags<R>(rows: &[R], get: impl Fn(&R) -> bool) -> ArrayRef {
    Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(get(r)))))
}

/// A unit enum's serde name (its column value), looked up once per variant.
fn names<E: Copy + PartialEq + Serialize, R>(
    kind: &str,
    rows: &[R],
    get: impl Fn(&R) -> E,
) -> Result<ArrayRef, PluginError> {
    let mut known: Vec<(E, String)> = Vec::new();
    let mut b = StringBuilder::with_capacity(rows.len(), rows.len() * 8);
    for r in rows {
        let e = get(r);
        let at = match known.iter().position(|(k, _)| *k == e) {
            Some(at) => at,
            None => {
                let name = match serde_json::to_value(e) {
                    Ok(serde_json::Value::String(s)) => s,
                    _ => {
                        return Err(PluginError::new(
                            PluginErrorKind::Output,
                            format!("{kind} rows to Arrow: an enum value is not a name"),
                        ));
                    }
                };
                known.push((e, name));
                known.len() - 1
            }
        };
        b.append_value(&known[at].1);
    }
    Ok(Arc::new(b.finish()))
}

fn batch(
    kind: &str,
    fields: &[FieldRef],
    columns: Vec<ArrayRef>,
) -> Result<RecordBatch, PluginError> {
    RecordBatch::try_new(Arc::new(Schema::new(fields.to_vec())), columns)
        .map_err(|e| arrow_error(kind, &e))
}

/// Tasks as a record batch with the traced `fields`.
pub(crate) fn tasks(fields: &[FieldRef], rows: &[Task]) -> Result<RecordBatch, PluginError> {
    let columns = fields
        .iter()
        .map(|f| {
            Ok(match f.name().as_str() {
                "task_id" => strings(rows, |r| &r.task_id),
                "suite" => strings(rows, |r| &r.suite),
                "split" => strings(rows, |r| &r.split),
                "question" => strings(rows, |r| &r.question),
                "answer" => strings(rows, |r| &r.answer),
                "metadata" => strings(rows, |r| &r.metadata),
                other => return Err(unknown(Task::KIND, other)),
            })
        })
        .collect::<Result<Vec<_>, PluginError>>()?;
    batch(Task::KIND, fields, columns)
}

/// Trajectories as a record batch with the traced `fields`.
pub(crate) fn trajectories(
    fields: &[FieldRef],
    rows: &[Trajectory],
) -> Result<RecordBatch, PluginError> {
    let kind = Trajectory::KIND;
    let columns = fields
        .iter()
        .map(|f| {
            Ok(match f.name().as_str() {
                "trajectory_id" => strings(rows, |r| &r.trajectory_id),
                "task_id" => strings(rows, |r| &r.task_id),
                "policy" => strings(rows, |r| &r.policy),
                "sample" => numbers(rows, |r| r.sample),
                "question" => strings(rows, |r| &r.question),
                "steps" => step_lists(kind, f.data_type(), rows.iter().map(|r| &r.steps[..]))?,
                "final_answer" => optional_strings(rows, |r| r.final_answer.as_deref()),
                "correct" => flags(rows, |r| r.correct),
                "stop_reason" => names(kind, rows, |r| r.stop_reason)?,
                "turns" => numbers(rows, |r| r.turns),
                "metadata" => strings(rows, |r| &r.metadata),
                other => return Err(unknown(kind, other)),
            })
        })
        .collect::<Result<Vec<_>, PluginError>>()?;
    batch(kind, fields, columns)
}

/// A `list<struct>` column of steps, one list per row.
fn step_lists<'a>(
    kind: &str,
    ty: &DataType,
    lists: impl Iterator<Item = &'a [Step]> + Clone,
) -> Result<ArrayRef, PluginError> {
    let DataType::List(item) = ty else {
        return Err(unknown(kind, "steps"));
    };
    let DataType::Struct(step_fields) = item.data_type() else {
        return Err(unknown(kind, "steps"));
    };
    let steps: Vec<&Step> = lists.clone().flatten().collect();
    let values = step_struct(kind, step_fields, &steps)?;
    let offsets = OffsetBuffer::from_lengths(lists.map(<[Step]>::len));
    ListArray::try_new(item.clone(), offsets, values, None)
        .map(|a| Arc::new(a) as ArrayRef)
        .map_err(|e| arrow_error(kind, &e))
}

fn step_struct(kind: &str, fields: &Fields, steps: &[&Step]) -> Result<ArrayRef, PluginError> {
    let columns = fields
        .iter()
        .map(|f| {
            Ok(match f.name().as_str() {
                "index" => numbers(steps, |s| s.index),
                "kind" => names(kind, steps, |s| s.kind)?,
                "author" => names(kind, steps, |s| s.author)?,
                "thought" => strings(steps, |s| &s.thought),
                "code" => strings(steps, |s| &s.code),
                "observation" => optional_strings(steps, |s| s.observation.as_deref()),
                "prompt_tokens" => numbers(steps, |s| s.prompt_tokens),
                "completion_tokens" => numbers(steps, |s| s.completion_tokens),
                "malformed" => flags(steps, |s| s.malformed),
                "raw" => optional_strings(steps, |s| s.raw.as_deref()),
                other => return Err(unknown(kind, other)),
            })
        })
        .collect::<Result<Vec<_>, PluginError>>()?;
    StructArray::try_new(fields.clone(), columns, None)
        .map(|a| Arc::new(a) as ArrayRef)
        .map_err(|e| arrow_error(kind, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Author, StepKind, StopReason};

    fn serde_batch<T: TableRow>(rows: &[T]) -> RecordBatch {
        serde_arrow::to_record_batch(&T::fields(), &rows).unwrap()
    }

    fn step(i: u32) -> Step {
        Step {
            index: i,
            kind: if i == 1 {
                StepKind::Plan
            } else {
                StepKind::Step
            },
            author: if i.is_multiple_of(2) {
                Author::Teacher
            } else {
                Author::Student
            },
            thought: format!("thought {i} ünïcode"),
            code: if i == 1 {
                String::new()
            } else {
                format!("{i} * 2")
            },
            observation: (!i.is_multiple_of(3)).then(|| format!("{}", i * 2)),
            prompt_tokens: i * 10,
            completion_tokens: i,
            malformed: i == 4,
            raw: (i == 4).then(|| "garbled".to_owned()),
        }
    }

    #[test]
    fn columns_equal_serde_arrows_for_every_variant() {
        let reasons = [
            StopReason::FinalAnswer,
            StopReason::TurnLimit,
            StopReason::Error,
        ];
        let rows: Vec<Trajectory> = (0..12u32)
            .map(|i| Trajectory {
                trajectory_id: format!("r{i}"),
                task_id: format!("t{i}"),
                policy: "student".into(),
                sample: i % 3,
                question: format!("q{i}"),
                // Lists of 0 to 5 steps, an empty one among them.
                steps: (1..=i % 6).map(step).collect(),
                final_answer: (!i.is_multiple_of(4)).then(|| i.to_string()),
                correct: i.is_multiple_of(2),
                stop_reason: reasons[i as usize % reasons.len()],
                turns: i % 6,
                metadata: "{}".into(),
            })
            .collect();
        let ours = trajectories(&Trajectory::fields(), &rows).unwrap();
        assert_eq!(ours, serde_batch(&rows));
        assert_eq!(Trajectory::from_batch(&ours).unwrap(), rows);

        let tasks_rows: Vec<Task> = (0..5)
            .map(|i| Task {
                task_id: format!("t{i}"),
                suite: "builtin".into(),
                split: "train".into(),
                question: format!("q{i}"),
                answer: i.to_string(),
                metadata: "{}".into(),
            })
            .collect();
        assert_eq!(
            tasks(&Task::fields(), &tasks_rows).unwrap(),
            serde_batch(&tasks_rows)
        );
        // No rows: the same empty columns.
        assert_eq!(
            trajectories(&Trajectory::fields(), &[]).unwrap(),
            serde_batch::<Trajectory>(&[])
        );
    }
}
