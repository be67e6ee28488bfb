//! `scorch report`: a run's figures, tables and an HTML page.

use std::path::PathBuf;

use scorch_engine::workflow::{LoadOptions, load};

use super::{Failure, StoreArgs, find_run, open_store};

pub(super) async fn report(
    id: String,
    store: StoreArgs,
    out: Option<PathBuf>,
) -> Result<(), Failure> {
    let store = open_store(&store, None)?;
    let record = find_run(&store, &id).await?;
    let file = PathBuf::from(&record.file);
    let dag = file
        .exists()
        .then(|| load(&file, &scorch::builtin::registry(), &LoadOptions::default()).ok())
        .flatten()
        .map(|wf| wf.graph());
    let dir = out.unwrap_or_else(|| PathBuf::from(format!("report-{}", record.id)));
    let (results, trends) = scorch_report::summary::write(&store, &record, dag, &dir).await?;
    out!("{}", scorch_report::summary::results_markdown(&results));
    if !trends.is_empty() {
        outln!("\n{}", scorch_report::trend::trends_markdown(&trends));
    }
    outln!("report written to {}", dir.join("index.html").display());
    Ok(())
}
