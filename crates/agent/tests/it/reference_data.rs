//! Against data nobody here wrote: the reference code's trajectories and judge texts, and
//! the benchmark files, from `../shared` (the tests say so and fail clearly without it).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use scorch_agent::judge::parse_reply;
use scorch_agent::reference::{export_record, import_file};
use scorch_agent::teacher::Verdict;
use scorch_api::parquet_io::writer_properties;
use scorch_api::reexports::parquet::arrow::ArrowWriter;
use scorch_api::reexports::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use scorch_tables::{RepairRecord, TableRow, Trajectory};

fn shared() -> PathBuf {
    let dir = std::env::var_os("SCORCH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    assert!(
        dir.join("reference").is_dir(),
        "these tests need the shared data folder at {} (or SCORCH_SHARED)",
        dir.display()
    );
    dir
}

/// Rows → Parquet bytes → rows.
fn through_parquet<T: TableRow + PartialEq + std::fmt::Debug>(rows: &[T]) -> Vec<T> {
    let batch = T::to_batch(rows).unwrap();
    let mut bytes = Vec::new();
    let mut w =
        ArrowWriter::try_new(&mut bytes, batch.schema(), Some(writer_properties())).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .unwrap()
        .build()
        .unwrap();
    reader
        .flat_map(|b| T::from_batch(&b.unwrap()).unwrap())
        .collect()
}

#[test]
fn every_reference_record_imports_and_round_trips() {
    for (name, expected, mentored) in [
        ("math_bc_init_trajectories.jsonl", 77, false),
        ("math_mps_trajectories.jsonl", 64, true),
    ] {
        let path = shared().join("reference").join(name);
        let imported = import_file(&path).unwrap();
        assert_eq!(imported.trajectories.len(), expected, "{name}");
        assert_eq!(
            through_parquet(&imported.trajectories),
            imported.trajectories,
            "{name}: Parquet round trip"
        );
        if mentored {
            assert_eq!(imported.repairs.len(), expected);
            assert_eq!(through_parquet(&imported.repairs), imported.repairs);
            assert!(imported.repairs.iter().any(|r| r.hard_sample));
            assert!(
                imported
                    .repairs
                    .iter()
                    .map(|r| r.repairs.len())
                    .sum::<usize>()
                    > 0
            );
        }
        let originals: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for (i, (t, original)) in imported.trajectories.iter().zip(&originals).enumerate() {
            let r: Option<&RepairRecord> = imported
                .repairs
                .iter()
                .find(|r| r.trajectory_id == t.trajectory_id);
            let back = export_record(t, r).unwrap();
            assert_eq!(&back, original, "{name} record {i} does not round-trip");
            assert_eq!(t.steps[0].kind, scorch_tables::StepKind::Plan);
        }
        // Error records of the reference pipeline are kept as malformed steps with their text.
        let malformed: usize = imported
            .trajectories
            .iter()
            .flat_map(|t| &t.steps)
            .filter(|s| s.malformed)
            .count();
        if mentored {
            assert_eq!(malformed, 4);
        }
    }
}

#[test]
fn the_judge_parser_reads_every_real_judge_text() {
    let imported = import_file(&shared().join("reference/math_mps_trajectories.jsonl")).unwrap();
    let mut n = 0;
    for record in &imported.repairs {
        for repair in &record.repairs {
            match parse_reply(&repair.analysis) {
                Verdict::Wrong { step, analysis } => {
                    assert_eq!(step, repair.step_index, "{}", repair.analysis);
                    assert!(!analysis.is_empty());
                }
                other => panic!("{other:?} for {}", repair.analysis),
            }
            n += 1;
        }
    }
    assert!(n >= 20, "{n} judge texts");
}

#[test]
fn all_benchmark_files_load() {
    let expected = [
        ("2wiki", 200),
        ("aime24", 30),
        ("aime25", 30),
        ("bamboo", 125),
        ("gaia-1", 39),
        ("gaia-2", 52),
        ("gaia-3", 12),
        ("hle_500", 500),
        ("hqa", 200),
        ("math_500", 500),
        ("musiq", 200),
        ("olymmath", 200),
        ("webwalker", 200),
        ("xbench", 100),
    ];
    for (suite, rows) in expected {
        let tasks = scorch_agent::benchmarks::load(
            &shared().join("benchmarks").join(format!("{suite}.jsonl")),
        )
        .unwrap();
        assert_eq!(tasks.len(), rows, "{suite}");
        assert!(
            tasks
                .iter()
                .all(|t| t.suite == suite && !t.question.is_empty() && !t.answer.is_empty())
        );
        let ids: std::collections::BTreeSet<&str> =
            tasks.iter().map(|t| t.task_id.as_str()).collect();
        assert_eq!(ids.len(), rows, "{suite}: ids are unique");
        assert_eq!(through_parquet(&tasks), tasks);
    }
    let hqa = scorch_agent::benchmarks::load(&shared().join("benchmarks/hqa.jsonl")).unwrap();
    assert!(!scorch_agent::benchmarks::answers(&hqa[0]).is_empty());
}

#[test]
fn pyarrow_reads_the_list_of_struct_columns() {
    let imported = import_file(&shared().join("reference/math_mps_trajectories.jsonl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trajectories.parquet");
    let batch = Trajectory::to_batch(&imported.trajectories).unwrap();
    let file = std::fs::File::create(&path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(writer_properties())).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let script = r#"
import sys, pyarrow.parquet as pq, pyarrow as pa
t = pq.read_table(sys.argv[1])
steps = t.schema.field("steps").type
assert pa.types.is_list(steps) and pa.types.is_struct(steps.value_type), steps
first = t.column("steps")[0].as_py()[1]
print(t.num_rows, first["index"], first["kind"], first["author"], len(first["thought"]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &path.display().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow (installed by scripts/setup): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = &imported.trajectories[0].steps[1];
    let expected = format!(
        "64 2 step {} {}",
        serde_json::to_value(s.author).unwrap().as_str().unwrap(),
        s.thought.chars().count()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
}

/// A reference text without the one label it may begin with (written out here, apart from
/// the importer's list): `Thought:`, a plan's `Plan:`, `First Thought:`, `First-thought:`,
/// `First-thought prefix:`, a code's `Code:`, an observation's `Observation:`.
fn unlabelled(text: &str, labels: &[&str]) -> String {
    let t = text.trim_start();
    for l in labels {
        if t.len() >= l.len() && t.is_char_boundary(l.len()) && t[..l.len()].eq_ignore_ascii_case(l)
        {
            return t[l.len()..].trim_start_matches([' ', '\t']).to_owned();
        }
    }
    text.to_owned()
}

/// Every step of both reference files (trajectories and repairs): imported without its label,
/// rendered, and parsed back, it gives the reference's text (less the label) again, and its
/// rendering begins with one label, not two.
#[test]
fn imported_steps_carry_no_labels_and_come_back_through_render_and_parse() {
    use scorch_agent::format::{parse_step, render_observation, render_step};
    use scorch_tables::{Step, StepKind};
    let plan = [
        "First-thought prefix:",
        "First-thought:",
        "First Thought:",
        "Plan:",
        "Thought:",
    ];
    let (mut checked, mut labelled, mut codeless) = (0, 0, 0);
    for name in [
        "math_bc_init_trajectories.jsonl",
        "math_mps_trajectories.jsonl",
    ] {
        let path = shared().join("reference").join(name);
        let imported = import_file(&path).unwrap();
        let originals: Vec<serde_json::Value> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // (imported step, the reference's step object) pairs, repairs' steps included.
        let mut pairs: Vec<(&Step, &serde_json::Value)> = Vec::new();
        for (t, o) in imported.trajectories.iter().zip(&originals) {
            let skip = usize::from(o.get("first_thought").is_some());
            pairs.extend(
                t.steps
                    .iter()
                    .skip(skip)
                    .zip(o["steps"].as_array().unwrap()),
            );
            let r = imported
                .repairs
                .iter()
                .find(|r| r.trajectory_id == t.trajectory_id);
            for (rp, raw) in r
                .map(|r| r.repairs.iter())
                .into_iter()
                .flatten()
                .zip(o["repair_steps"].as_array().into_iter().flatten())
            {
                pairs.push((&rp.teacher_step, &raw["teacher_guided_step"]));
                pairs.extend(
                    rp.student_steps
                        .iter()
                        .zip(raw["student_mistake"].as_array().unwrap()),
                );
            }
        }
        for (s, raw) in pairs {
            if s.malformed {
                continue;
            }
            let labels: &[&str] = if s.kind == StepKind::Plan {
                &plan
            } else {
                &["Thought:"]
            };
            let thought = raw["thought"].as_str().unwrap();
            labelled += usize::from(unlabelled(thought, labels) != thought);
            let want = unlabelled(thought, labels);
            assert_eq!(s.thought, want, "{name}");
            assert_eq!(
                s.code,
                unlabelled(raw["code"].as_str().unwrap_or(""), &["Code:"])
            );
            if let Some(obs) = raw["observation"].as_str() {
                let o = s.observation.as_deref().unwrap();
                assert_eq!(o, unlabelled(obs, &["Observation:"]));
                assert!(!render_observation(o).starts_with("Observation: Observation:"));
            }
            let text = render_step(s);
            let back = parse_step(&text, s.index, s.author);
            if s.kind == StepKind::Step && s.code.trim().is_empty() {
                // A turn in which the reference's agent found no code: its whole output is
                // the thought (cut off mid-tag). No parser gets a step out of it again.
                assert!(back.malformed, "{name}: {text}");
                codeless += 1;
                continue;
            }
            assert!(!back.malformed, "{name}: {text}");
            assert_eq!(back.thought, want.trim(), "{name}: {text}");
            assert_eq!(back.code.trim(), s.code.trim(), "{name}: {text}");
            for twice in [
                "Thought: Thought:",
                "Plan: First",
                "Plan: Plan:",
                "Plan: Thought:",
            ] {
                assert!(!text.starts_with(twice), "{name}: {text}");
            }
            checked += 1;
        }
    }
    // Every step of both files, and the labels there were to take off.
    assert_eq!(checked, 580);
    assert_eq!(codeless, 3);
    assert!(labelled >= 225 + 27 + 20 + 5, "{labelled}");
}

/// The step parser reads the reference code's own tagged layout (`<first_thought>`,
/// `<thought>`, `<code>`): every assistant turn of its LLaMA-Factory exports parses, without a
/// label left in the thought, so a student trained on them can be run here.
#[test]
fn every_turn_of_the_references_own_export_parses() {
    use scorch_agent::format::parse_step;
    use scorch_tables::{Author, StepKind};
    let mut turns = 0;
    for name in [
        "math_bc_init_trajectories_llamafactory.json",
        "math_mps_trajectories_llamafactory.json",
    ] {
        let text = std::fs::read_to_string(shared().join("reference").join(name)).unwrap();
        let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for r in &records {
            let gpt = r["conversations"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["from"] == "gpt");
            for (i, t) in gpt.enumerate() {
                let s = parse_step(t["value"].as_str().unwrap(), i as u32 + 1, Author::Teacher);
                assert!(!s.malformed, "{name}: {t}");
                assert_eq!(s.kind == StepKind::Plan, i == 0);
                assert!(!s.thought.starts_with("Thought:") && !s.thought.contains("<thought>"));
                turns += 1;
            }
        }
    }
    assert!(turns > 300, "{turns}");
}
