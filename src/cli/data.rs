//! Data commands: import reference files, export chat JSON, write built-in tasks.

use std::path::Path;

use scorch_agent::suite::{Split, tasks as suite_tasks};
use scorch_api::parquet_io::{read_rows, write_rows};
use scorch_api::tables::{RepairRecord, Trajectory};
use scorch_engine::error::EngineError;

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
    let mut trajectories: Vec<Trajectory> = Vec::new();
    let mut repairs: Vec<RepairRecord> = Vec::new();
    for f in files {
        let imported = scorch_agent::reference::import_file(f).map_err(usage)?;
        outln!(
            "{}: {} trajectories, {} repair records",
            f.display(),
            imported.trajectories.len(),
            imported.repairs.len()
        );
        trajectories.extend(imported.trajectories);
        repairs.extend(imported.repairs);
    }
    std::fs::create_dir_all(out).map_err(failed)?;
    write_rows(&out.join("trajectories.parquet"), &trajectories).map_err(failed)?;
    outln!("wrote {}", out.join("trajectories.parquet").display());
    if !repairs.is_empty() {
        write_rows(&out.join("repairs.parquet"), &repairs).map_err(failed)?;
        outln!("wrote {}", out.join("repairs.parquet").display());
    }
    Ok(())
}

pub(crate) fn export_chat(
    table: &Path,
    out: &Path,
    system: &str,
    format: scorch_agent::export::ChatExport,
) -> Result<(), Failure> {
    let rows: Vec<Trajectory> = read_rows(table).map_err(usage)?;
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
