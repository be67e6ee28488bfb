//! Getting artifacts out of the store as plain files: `scorch export`, and the store
//! references that `serve` and `export-chat` take in place of a path.
//!
//! A reference names an output of a node in a run: `RUN:NODE.OUTPUT` (a run id or a unique
//! prefix of one), or `NODE.OUTPUT` for the newest run that has that output. `.OUTPUT` may be
//! left out where the node has one output (or, for `serve`, a `checkpoint`).

use std::path::{Path, PathBuf};

use scorch_engine::error::EngineError;
use scorch_engine::record::RunRecord;
use scorch_engine::store::{Artifact, ArtifactKind, Store};

use super::{Failure, StoreArgs, find_run, open_store};

/// One output of one node of one run.
pub(crate) struct Output {
    pub run: String,
    pub node: String,
    pub name: String,
    /// The artifact's hash, as the run record has it.
    pub hash: String,
    pub artifact: Artifact,
}

fn usage(msg: String) -> Failure {
    EngineError::usage(msg).into()
}

/// The outputs `reference` names (every output of the node when it names none).
pub(crate) async fn resolve(
    store: &Store,
    reference: &str,
    prefer: Option<&str>,
) -> Result<Vec<Output>, Failure> {
    let (run, rest) = match reference.split_once(':') {
        Some((run, rest)) => (Some(run), rest),
        None => (None, reference),
    };
    // Node ids may contain dots inside their matrix part (`eval[lr=0.5]`): split after it.
    let split_at = rest.rfind(']').unwrap_or(0);
    let (node, output) = match rest[split_at..].rfind('.') {
        Some(i) => (&rest[..split_at + i], Some(&rest[split_at + i + 1..])),
        None => (rest, None),
    };
    let record: RunRecord = match run {
        Some(id) => find_run(store, id).await?,
        None => newest_with(store, node).await?,
    };
    let rec = record
        .nodes
        .iter()
        .find(|n| n.id == node)
        .ok_or_else(|| usage(format!("run {} has no node `{node}`", record.id)))?;
    if rec.outputs.is_empty() {
        return Err(usage(format!(
            "`{node}` has no outputs in run {} (it {})",
            record.id, rec.outcome
        )));
    }
    let names: Vec<&String> = match output {
        Some(o) => {
            if !rec.outputs.contains_key(o) {
                return Err(usage(format!(
                    "`{node}` has no output `{o}`; it has {}",
                    rec.outputs
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            rec.outputs.keys().filter(|k| *k == o).collect()
        }
        None => match prefer.filter(|p| rec.outputs.contains_key(*p)) {
            Some(p) => rec.outputs.keys().filter(|k| *k == p).collect(),
            None => rec.outputs.keys().collect(),
        },
    };
    let mut out = Vec::new();
    for name in names {
        let hash = rec.outputs[name].artifact.clone();
        let artifact = store.artifact(&hash).await?;
        out.push(Output {
            run: record.id.clone(),
            node: node.to_owned(),
            name: name.clone(),
            hash,
            artifact,
        });
    }
    Ok(out)
}

/// The newest run in which `node` has outputs.
async fn newest_with(store: &Store, node: &str) -> Result<RunRecord, Failure> {
    let mut ids: Vec<String> = store
        .list(scorch_engine::layout::RUNS)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    for id in ids.iter().rev() {
        if let Some(r) = store.run::<RunRecord>(id).await?
            && r.nodes
                .iter()
                .any(|n| n.id == node && !n.outputs.is_empty())
        {
            return Ok(r);
        }
    }
    Err(usage(format!(
        "no run in {} has outputs of a node `{node}`; see `scorch runs`",
        store.url()
    )))
}

/// Write `o` under `dir`: a table as `NAME.parquet` (or a folder `NAME/` of its parts), a
/// blob set as the folder `NAME/` (an HF checkpoint folder that `transformers` loads).
/// Returns what was written.
/// Everything is fetched into a temporary folder beside the target and renamed into place,
/// so a failed export leaves nothing half-written.
async fn write(store: &Store, o: &Output, dir: &Path) -> Result<PathBuf, Failure> {
    let tmp = tempfile::tempdir_in(dir)
        .map_err(|e| EngineError::io(format!("writing into {}", dir.display()), e))?;
    store.materialize(&o.artifact, tmp.path()).await?;
    let (from, target) = match (&o.artifact.kind, o.artifact.files.as_slice()) {
        (ArtifactKind::Table, [one]) => (
            tmp.path().join(&one.path),
            dir.join(format!("{}.parquet", o.name)),
        ),
        _ => (tmp.path().to_path_buf(), dir.join(&o.name)),
    };
    std::fs::rename(&from, &target)
        .map_err(|e| EngineError::io(format!("writing {}", target.display()), e))?;
    Ok(target)
}

/// `scorch export REF --out DIR`.
pub(crate) async fn export(
    reference: String,
    out: PathBuf,
    store: StoreArgs,
) -> Result<(), Failure> {
    let store = open_store(&store, None)?;
    let outputs = resolve(&store, &reference, None).await?;
    std::fs::create_dir_all(&out)
        .map_err(|e| EngineError::io(format!("creating {}", out.display()), e))?;
    for o in &outputs {
        let target = out.join(&o.name);
        let parquet = out.join(format!("{}.parquet", o.name));
        if target.exists() || parquet.exists() {
            return Err(usage(format!(
                "{} already holds `{}`; export into an empty folder",
                out.display(),
                o.name
            )));
        }
    }
    for o in &outputs {
        let written = write(&store, o, &out).await?;
        outln!(
            "{}.{} of run {} -> {}",
            o.node,
            o.name,
            o.run,
            written.display()
        );
    }
    Ok(())
}

/// `scorch export REF --out DIR --merge --base BASE`: the adapter that `REF` names, merged
/// into `BASE` by `scorch-worker` (which has libtorch), written as `DIR/NAME`.
pub(crate) async fn export_merged(
    reference: String,
    out: PathBuf,
    base: PathBuf,
    store: StoreArgs,
) -> Result<(), Failure> {
    let (adapter, name) = local_output(Path::new(&reference), &store, "checkpoint").await?;
    let (base, _) = local_output(&base, &store, "checkpoint").await?;
    std::fs::create_dir_all(&out)
        .map_err(|e| EngineError::io(format!("creating {}", out.display()), e))?;
    let target = out.join(&name);
    if target.exists() {
        return Err(usage(format!(
            "{} already holds `{name}`; export into an empty folder",
            out.display()
        )));
    }
    let program = scorch::builtin::worker_program();
    let status = std::process::Command::new(&program)
        .arg("merge-adapter")
        .arg(&adapter)
        .arg("--base")
        .arg(&base)
        .arg("--out")
        .arg(&target)
        .status()
        .map_err(|e| EngineError::io(format!("starting {}", program.display()), e))?;
    match status.code() {
        Some(0) => {
            outln!(
                "{reference} merged into {} -> {}",
                base.display(),
                target.display()
            );
            Ok(())
        }
        Some(code) => Err(Failure::Worker(
            scorch::exit::Exit::from_code(code).unwrap_or(scorch::exit::Exit::Failed),
        )),
        None => Err(Failure::Worker(scorch::exit::Exit::Failed)),
    }
}

/// A path as given, or, when no such file exists and `arg` reads as a reference, the output it
/// names, fetched into the store's work folder once per artifact.
pub(crate) async fn local_path(
    arg: &Path,
    store: &StoreArgs,
    prefer: &str,
) -> Result<PathBuf, Failure> {
    Ok(local_output(arg, store, prefer).await?.0)
}

/// [`local_path`], with a name for what it found: the output's name for a reference, the
/// file's name for a path.
async fn local_output(
    arg: &Path,
    store: &StoreArgs,
    prefer: &str,
) -> Result<(PathBuf, String), Failure> {
    let file_name = || {
        arg.file_name()
            .map_or_else(|| prefer.to_owned(), |n| n.to_string_lossy().into_owned())
    };
    if arg.exists() {
        return Ok((arg.to_path_buf(), file_name()));
    }
    let Some(reference) = arg.to_str() else {
        return Ok((arg.to_path_buf(), file_name()));
    };
    let store = open_store(store, None)?;
    let outputs = match resolve(&store, reference, Some(prefer)).await {
        Ok(o) => o,
        Err(Failure::Engine(e)) => {
            return Err(usage(format!(
                "no file `{reference}`, and not an output in the store: {}",
                e.message
            )));
        }
        Err(e) => return Err(e),
    };
    let [o] = outputs.as_slice() else {
        return Err(usage(format!(
            "`{reference}` names {} outputs; add `.OUTPUT`",
            outputs.len()
        )));
    };
    let dir = store.work_dir().join("exports").join(&o.hash);
    if !dir.exists() {
        std::fs::create_dir_all(dir.parent().unwrap_or(&dir))
            .map_err(|e| EngineError::io("creating the exports folder", e))?;
        let tmp = tempfile::tempdir_in(dir.parent().unwrap_or(&dir))
            .map_err(|e| EngineError::io("creating the exports folder", e))?;
        store.materialize(&o.artifact, tmp.path()).await?;
        std::fs::rename(tmp.keep(), &dir)
            .map_err(|e| EngineError::io(format!("writing {}", dir.display()), e))?;
    }
    let path = match (&o.artifact.kind, o.artifact.files.as_slice()) {
        (ArtifactKind::Table, [one]) => dir.join(&one.path),
        _ => dir,
    };
    Ok((path, o.name.clone()))
}
