//! Loaders that turn each benchmark file (`id`, `question`, `true_answer`, extra fields)
//! into a tasks table.

use std::path::Path;

use scorch_tables::Task;
use serde_json::{Map, Value};

/// How a benchmark is scored.
pub fn kind_of(suite: &str) -> &'static str {
    match suite {
        "aime24" | "aime25" | "math_500" | "olymmath" => "math",
        "hqa" | "2wiki" | "musiq" | "bamboo" => "qa",
        _ => "search",
    }
}

/// A benchmark file that cannot be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct LoadError {
    /// The file.
    pub file: String,
    /// 1-based line (0: the whole file).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Load one benchmark file; the suite is the file name without `.jsonl`.
pub fn load(path: &Path) -> Result<Vec<Task>, LoadError> {
    let file = path.display().to_string();
    let suite = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let body = std::fs::read_to_string(path).map_err(|e| LoadError {
        file: file.clone(),
        line: 0,
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, line) in body
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let err = |message: String| LoadError {
            file: file.clone(),
            line: i + 1,
            message,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| err(format!("not JSON: {e}")))?;
        let Value::Object(mut o) = v else {
            return Err(err("not a JSON object".into()));
        };
        let id = o.remove("id").ok_or_else(|| err("no `id`".into()))?;
        let question = o
            .remove("question")
            .ok_or_else(|| err("no `question`".into()))?;
        let gold = o
            .remove("true_answer")
            .ok_or_else(|| err("no `true_answer`".into()))?;
        let answers: Vec<String> = match &gold {
            Value::Array(items) => items.iter().map(scalar).collect(),
            other => vec![scalar(other)],
        };
        let answer = answers
            .first()
            .cloned()
            .ok_or_else(|| err("empty `true_answer` list".into()))?;
        let mut meta = Map::new();
        meta.insert("kind".into(), Value::String(kind_of(&suite).into()));
        meta.insert(
            "answers".into(),
            Value::Array(answers.into_iter().map(Value::String).collect()),
        );
        meta.insert("extra".into(), Value::Object(o));
        out.push(Task {
            task_id: format!("{suite}-{}", scalar(&id)),
            suite: suite.clone(),
            split: "test".into(),
            question: scalar(&question),
            answer,
            metadata: Value::Object(meta).to_string(),
        });
    }
    Ok(out)
}

/// Every acceptable answer of a task (the list of a QA benchmark, else the one answer).
pub fn answers(task: &Task) -> Vec<String> {
    serde_json::from_str::<Value>(&task.metadata)
        .ok()
        .and_then(|m| {
            m.get("answers")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(scalar).collect())
        })
        .filter(|v: &Vec<String>| !v.is_empty())
        .unwrap_or_else(|| vec![task.answer.clone()])
}
