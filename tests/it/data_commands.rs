//! The data commands through the CLI: import the reference files, export chat JSON, write
//! built-in tasks.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::PathBuf;

use common::{Project, text};
use scorch_api::parquet_io::read_rows;
use scorch_tables::{RepairRecord, Task, Trajectory};

fn shared() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
    assert!(
        dir.join("reference").is_dir(),
        "needs the shared data folder beside the repository: {}",
        dir.display()
    );
    dir
}

#[test]
fn import_then_export_chat() {
    let p = Project::new();
    let refs = shared().join("reference");
    let out = p.scorch(&[
        "import",
        &refs
            .join("math_bc_init_trajectories.jsonl")
            .display()
            .to_string(),
        &refs
            .join("math_mps_trajectories.jsonl")
            .display()
            .to_string(),
        "--out",
        "tables",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let trajectories: Vec<Trajectory> =
        read_rows(&p.path().join("tables/trajectories.parquet")).unwrap();
    let repairs: Vec<RepairRecord> = read_rows(&p.path().join("tables/repairs.parquet")).unwrap();
    assert_eq!((trajectories.len(), repairs.len()), (141, 64));
    // A folder that holds these repairs, imported into from a file without any: no repairs
    // of the earlier input stay beside the new trajectories.
    std::fs::create_dir(p.path().join("again")).unwrap();
    std::fs::copy(
        p.path().join("tables/repairs.parquet"),
        p.path().join("again/repairs.parquet"),
    )
    .unwrap();
    let bc_init = refs.join("math_bc_init_trajectories.jsonl");
    let again = p.scorch(&["import", &bc_init.display().to_string(), "--out", "again"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let alone: Vec<Trajectory> = read_rows(&p.path().join("again/trajectories.parquet")).unwrap();
    let stale: Vec<RepairRecord> = read_rows(&p.path().join("again/repairs.parquet")).unwrap();
    assert!(!alone.is_empty() && alone.len() < trajectories.len());
    assert_eq!(stale.len(), 0);
    let out = p.scorch(&[
        "export-chat",
        "tables/trajectories.parquet",
        "--out",
        "chat.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = std::fs::read_to_string(p.path().join("chat.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 141);
    for r in &records {
        let m = r["messages"].as_array().unwrap();
        assert_eq!(m[0]["role"], "system");
        // LLaMA-Factory's converter: after the system turn, user and assistant alternate,
        // starting with the user, and the count is even (it ends on the assistant).
        let turns = &m[1..];
        assert!(!turns.is_empty() && turns.len() % 2 == 0, "{r}");
        for (i, x) in turns.iter().enumerate() {
            let want = if i % 2 == 0 { "user" } else { "assistant" };
            assert_eq!(x["role"], want, "turn {i} of {r}");
            assert!(!x["content"].as_str().unwrap().is_empty());
        }
    }
    // The sharegpt form, and both checked the way the trainers read them.
    let out = p.scorch(&[
        "export-chat",
        "tables/trajectories.parquet",
        "--format",
        "sharegpt",
        "--out",
        "sharegpt.jsonl",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let check = |messages: &str, sharegpt: &str| -> serde_json::Value {
        let out = std::process::Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/py/chat_check.py"
            ))
            .args([p.path().join(messages), p.path().join(sharegpt)])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let got = check("chat.jsonl", "sharegpt.jsonl");
    assert_eq!(got["sharegpt_kept"], 141, "{got}");
    assert_eq!(got["messages_conversational"], 141, "{got}");
    assert_eq!(got["messages_rendered"], 141, "{got}");
    // The checks reject what the old export wrote: the plan and the first step as two
    // assistant turns, ending on an observation.
    p.write(
        "old.jsonl",
        r#"{"id":"old","system":"s","conversations":[{"from":"human","value":"q"},{"from":"gpt","value":"plan"},{"from":"gpt","value":"step"},{"from":"observation","value":"out"}]}
"#,
    );
    let got = check("chat.jsonl", "old.jsonl");
    assert_eq!(got["sharegpt_kept"], 0, "{got}");
    assert_eq!(got["sharegpt_broken"], serde_json::json!(["old"]), "{got}");
    // An imported plan is its own turn, answered by the observation `None` (what the
    // reference's agent answers a plan with), as in the reference's own export.
    let first = &records[0]["messages"];
    assert!(
        first[2]["content"].as_str().unwrap().starts_with("Plan: "),
        "{first}"
    );
    assert_eq!(first[3]["content"], "Observation: None", "{first}");
    assert!(
        first[4]["content"]
            .as_str()
            .unwrap()
            .starts_with("Thought: "),
        "{first}"
    );
    // No turn of either export begins with a label twice.
    for (file, key, field) in [
        ("chat.jsonl", "messages", "content"),
        ("sharegpt.jsonl", "conversations", "value"),
    ] {
        let body = std::fs::read_to_string(p.path().join(file)).unwrap();
        for line in body.lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            for turn in r[key].as_array().unwrap() {
                let t = turn[field].as_str().unwrap();
                assert!(!doubled_label(t), "{file}: {t}");
            }
        }
    }
}

/// Whether `text` begins with a label followed by another (`Thought: Thought: ...`).
fn doubled_label(text: &str) -> bool {
    const LABELS: [&str; 6] = [
        "thought:",
        "plan:",
        "code:",
        "observation:",
        "first thought:",
        "first-thought",
    ];
    let lower = text.trim_start().to_ascii_lowercase();
    LABELS.iter().any(|a| {
        lower
            .strip_prefix(a)
            .is_some_and(|rest| LABELS.iter().any(|b| rest.trim_start().starts_with(b)))
    })
}

/// Text with runs of whitespace as one space, trimmed.
fn normalised(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `scorch export-chat --format reference --only-correct` of both reference files against the
/// reference code's own LLaMA-Factory export of them, conversation by conversation (matched by
/// question): the same roles, and the same texts after whitespace normalisation, apart from
/// three differences whose reason is known and counted.
#[test]
fn the_reference_layout_export_matches_the_references_own_export() {
    let p = Project::new();
    let refs = shared().join("reference");
    // (file, conversations we export, the reference's, turns that differ by each reason:
    // the reference's mentored-solving converter keeps `Thought: ` in thoughts; it keeps
    // `First Thought: ` in plans; its warm-start converter deletes `First-thought prefix:`
    // wherever it stands, also in the middle of a plan)
    for (name, ours_kept, theirs_kept, thought_label, plan_label, deleted_inside) in [
        ("math_bc_init_trajectories", 75, 75, 0, 0, 1),
        ("math_mps_trajectories", 49, 24, 5, 3, 0),
    ] {
        let input = refs.join(format!("{name}.jsonl")).display().to_string();
        let out = p.scorch(&["import", &input, "--out", name]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let exported = format!("{name}.reference.jsonl");
        let out = p.scorch(&[
            "export-chat",
            &format!("{name}/trajectories.parquet"),
            "--format",
            "reference",
            "--only-correct",
            "--out",
            &exported,
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let ours: Vec<serde_json::Value> = std::fs::read_to_string(p.path().join(&exported))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let theirs: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(refs.join(format!("{name}_llamafactory.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (ours.len(), theirs.len()),
            (ours_kept, theirs_kept),
            "{name}"
        );
        let question =
            |c: &serde_json::Value| normalised(c["conversations"][0]["value"].as_str().unwrap());
        let (mut thought_labels, mut plan_labels, mut deleted) = (0, 0, 0);
        for t in &theirs {
            let matching: Vec<&serde_json::Value> =
                ours.iter().filter(|o| question(o) == question(t)).collect();
            assert_eq!(matching.len(), 1, "{name}: {}", question(t));
            let (a, b) = (
                matching[0]["conversations"].as_array().unwrap(),
                t["conversations"].as_array().unwrap(),
            );
            let roles = |c: &[serde_json::Value]| -> Vec<String> {
                c.iter()
                    .map(|x| x["from"].as_str().unwrap().to_owned())
                    .collect()
            };
            assert_eq!(roles(a), roles(b), "{name}: {}", question(t));
            assert!(roles(a).iter().all(|r| r == "human" || r == "gpt"));
            for (x, y) in a.iter().zip(b) {
                let (mine, reference) =
                    (x["value"].as_str().unwrap(), y["value"].as_str().unwrap());
                assert!(
                    !mine.contains("<thought>Thought:") && !mine.contains("<first_thought>First"),
                    "{name}: a label in our export: {mine}"
                );
                if normalised(mine) == normalised(reference) {
                    continue;
                }
                if let Some(rest) = reference.strip_prefix("<thought>Thought: ") {
                    thought_labels += 1;
                    assert_eq!(normalised(mine), normalised(&format!("<thought>{rest}")));
                } else if let Some(rest) = reference.strip_prefix("<first_thought>First Thought: ")
                {
                    plan_labels += 1;
                    assert_eq!(
                        normalised(mine),
                        normalised(&format!("<first_thought>{rest}"))
                    );
                } else {
                    deleted += 1;
                    let converted = mine
                        .replace("First-thought prefix:", "")
                        .replace("First-thought:", "");
                    assert_eq!(normalised(&converted), normalised(reference), "{name}");
                }
            }
        }
        assert_eq!(
            (thought_labels, plan_labels, deleted),
            (thought_label, plan_label, deleted_inside),
            "{name}"
        );
    }
}

#[test]
fn bad_input_to_the_data_commands_is_a_usage_error() {
    let p = Project::new();
    p.write("bad.jsonl", "{\"steps\": []}\nnot json\n");
    let out = p.scorch(&["import", "bad.jsonl", "--out", "t"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.jsonl:1: no `original_task_info`"),
        "{}",
        text(&out.stderr)
    );
    assert!(!p.path().join("t").exists(), "nothing written");
    let out = p.scorch(&["tasks", "--split", "medium"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no split `medium`"));
}

#[test]
fn builtin_tasks_are_written_as_a_tasks_table() {
    let p = Project::new();
    let out = p.scorch(&[
        "tasks",
        "--split",
        "hard",
        "--count",
        "25",
        "--seed",
        "3",
        "--out",
        "hard.parquet",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let tasks: Vec<Task> = read_rows(&p.path().join("hard.parquet")).unwrap();
    assert_eq!(tasks.len(), 25);
    assert_eq!(
        tasks,
        scorch_agent::suite::tasks(3, scorch_agent::suite::Split::Hard, 0, 25)
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // `scorch tasks | head -1`: the pipe closes long before the ~1 MB of output is written.
    let p = Project::new();
    let mut child = p
        .cmd(&["tasks", "--count", "5000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}

/// The reference's RL prompt file (`math_mps_rl.json`, for verl) imports into tasks and RL
/// prompts whose steps carry no labels: its prefixes are chat turns in the tagged layout and
/// every `chosen` step begins `<thought>Thought: `.
#[test]
fn the_reference_rl_prompt_file_imports_without_labels() {
    use scorch_tables::RlPrompt;
    let p = Project::new();
    let file = shared().join("reference/math_mps_rl.json");
    let out = p.scorch(&["import", &file.display().to_string(), "--out", "rl"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let prompts: Vec<RlPrompt> = read_rows(&p.path().join("rl/rl_prompts.parquet")).unwrap();
    let tasks: Vec<Task> = read_rows(&p.path().join("rl/tasks.parquet")).unwrap();
    let raw: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!((prompts.len(), tasks.len()), (raw.len(), raw.len()));
    assert_eq!(prompts.iter().filter(|p| p.chosen.is_some()).count(), 13);
    let inner = |text: &str, tag: &str| -> String {
        let open = format!("<{tag}>");
        let start = text.find(&open).unwrap() + open.len();
        let end = text.find(&format!("</{tag}>")).unwrap();
        text[start..end].to_owned()
    };
    for (prompt, r) in prompts.iter().zip(&raw) {
        let turns = r["prompt"].as_array().unwrap();
        assert_eq!(prompt.question, turns[0]["content"].as_str().unwrap());
        assert_eq!(prompt.prefix.len(), turns.len() / 2);
        assert!(!prompt.gold_answer.is_empty());
        for (i, s) in prompt.prefix.iter().enumerate() {
            assert!(!s.malformed, "{s:?}");
            let said = turns[2 * i + 1]["content"].as_str().unwrap();
            let answer = turns[2 * i + 2]["content"].as_str().unwrap();
            assert_eq!(
                s.observation.as_deref(),
                Some(answer.trim_start_matches("Observation: ").trim())
            );
            if i > 0 {
                assert_eq!(s.code.trim(), inner(said, "code").trim());
            }
        }
        if let Some(chosen) = &prompt.chosen {
            let written = inner(r["chosen"].as_str().unwrap(), "thought");
            assert!(written.starts_with("Thought: "), "{written}");
            assert_eq!(
                chosen.thought,
                written.trim_start_matches("Thought: ").trim()
            );
            assert!(prompt.rejected.as_ref().is_some_and(|s| !s.malformed));
        }
        for s in prompt
            .prefix
            .iter()
            .chain(&prompt.chosen)
            .chain(&prompt.rejected)
        {
            assert!(
                !doubled_label(&format!("Thought: {}", s.thought)),
                "{}",
                s.thought
            );
            assert!(!s.thought.contains("<thought>") && !s.code.contains("</code>"));
        }
    }
    // A broken RL prompt file is bad input, and leaves nothing behind.
    p.write(
        "bad.json",
        r#"[{"prompt": [{"role": "assistant", "content": "x"}]}]"#,
    );
    let out = p.scorch(&["import", "bad.json", "--out", "bad"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("record 1"),
        "{}",
        text(&out.stderr)
    );
    assert!(!p.path().join("bad").exists());
}
