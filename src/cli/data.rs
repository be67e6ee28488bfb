//! Data commands: import reference files, export chat JSON, write built-in tasks.

use std::path::Path;

use scorch_agent::suite::{Split, tasks as suite_tasks};
use scorch_api::RowWriter;
use scorch_api::parquet_io::{read_rows, write_rows};
use scorch_engine::error::EngineError;
use scorch_tables::{RepairRecord, RlPrompt, Task, Trajectory};

use super::Failure;

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Engine(EngineError::new(
        scorch_engine::error::EngineErrorKind::Io,
        e.to_string(),
    ))
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Engine(EngineError::usage(e.to_string()))
}

pub(crate) fn import(files: &[std::path::PathBuf], out: &Path) -> Result<(), Failure> {
    let created = !out.exists();
    std::fs::create_dir_all(out).map_err(failed)?;
    let imported = import_into(files, out);
    if imported.is_err() && created {
        // The writers removed their partial files; an empty folder made here goes too.
        let _ = std::fs::remove_dir(out);
    }
    imported
}

fn import_into(files: &[std::path::PathBuf], out: &Path) -> Result<(), Failure> {
    let (rl, records): (Vec<_>, Vec<_>) = files
        .iter()
        .cloned()
        .partition(|f| scorch_agent::reference_rl::is_rl_file(f));
    if !rl.is_empty() {
        import_rl(&rl, out)?;
    }
    if records.is_empty() {
        return Ok(());
    }
    let files = records.as_slice();
    // Streamed: one record in memory at a time, rows written in bounded row groups. Both
    // files appear only once every record was read. The repairs table is written even when
    // the input has none (no rows), so a folder imported into before holds no repairs of an
    // earlier input beside these trajectories.
    let trajectories_path = out.join("trajectories.parquet");
    let repairs_path = out.join("repairs.parquet");
    let mut trajectories = RowWriter::<Trajectory>::create(&trajectories_path).map_err(failed)?;
    let mut repairs = RowWriter::<RepairRecord>::create(&repairs_path).map_err(failed)?;
    for f in files {
        let (mut t_count, mut r_count) = (0u64, 0u64);
        for record in scorch_agent::reference::records(f).map_err(usage)? {
            let (t, r) = record.map_err(usage)?;
            trajectories.push(t).map_err(failed)?;
            t_count += 1;
            if let Some(r) = r {
                repairs.push(r).map_err(failed)?;
                r_count += 1;
            }
        }
        outln!(
            "{}: {t_count} trajectories, {r_count} repair records",
            f.display()
        );
    }
    trajectories.finish().map_err(failed)?;
    outln!("wrote {}", trajectories_path.display());
    repairs.finish().map_err(failed)?;
    outln!("wrote {}", repairs_path.display());
    Ok(())
}

/// RL prompt files (`math_mps_rl.json`) into `tasks.parquet` and `rl_prompts.parquet`.
fn import_rl(files: &[std::path::PathBuf], out: &Path) -> Result<(), Failure> {
    let tasks_path = out.join("tasks.parquet");
    let prompts_path = out.join("rl_prompts.parquet");
    let mut tasks = RowWriter::<Task>::create(&tasks_path).map_err(failed)?;
    let mut prompts = RowWriter::<RlPrompt>::create(&prompts_path).map_err(failed)?;
    for f in files {
        let (t, p) = scorch_agent::reference_rl::import_rl_file(f).map_err(usage)?;
        let repaired = p.iter().filter(|p| p.chosen.is_some()).count();
        outln!(
            "{}: {} RL prompts ({repaired} with a key step)",
            f.display(),
            p.len()
        );
        for row in t {
            tasks.push(row).map_err(failed)?;
        }
        for row in p {
            prompts.push(row).map_err(failed)?;
        }
    }
    tasks.finish().map_err(failed)?;
    outln!("wrote {}", tasks_path.display());
    prompts.finish().map_err(failed)?;
    outln!("wrote {}", prompts_path.display());
    Ok(())
}

pub(crate) fn export_chat(
    table: &Path,
    out: &Path,
    system: &str,
    format: scorch_agent::export::ChatExport,
    only_correct: bool,
) -> Result<(), Failure> {
    let mut rows: Vec<Trajectory> = read_rows(table).map_err(usage)?;
    if only_correct {
        rows.retain(|t| t.correct);
    }
    // Written beside the target and renamed: a failed write leaves no half file.
    let text = scorch_agent::export::chat_jsonl(&rows, system, format);
    let part = out.with_extension("jsonl.part");
    std::fs::write(&part, text)
        .and_then(|()| std::fs::rename(&part, out))
        .map_err(|e| {
            let _ = std::fs::remove_file(&part);
            failed(format!("writing {}: {e}", out.display()))
        })?;
    outln!("wrote {} conversations to {}", rows.len(), out.display());
    Ok(())
}

pub(crate) fn tasks(split: &str, count: u64, seed: u64, out: Option<&Path>) -> Result<(), Failure> {
    let split = Split::parse(split)
        .ok_or_else(|| usage(format!("no split `{split}`; use train, test or hard")))?;
    let rows = suite_tasks(seed, split, 0, count);
    match out {
        Some(path) => {
            write_rows(path, &rows).map_err(failed)?;
            outln!("wrote {} tasks to {}", rows.len(), path.display());
        }
        None => {
            for t in &rows {
                outln!("{}\t{}\t{}", t.task_id, t.answer, t.question);
            }
        }
    }
    Ok(())
}
