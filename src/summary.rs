//! `scorch report RUN`: one folder with the results table (Markdown and Parquet), wall time
//! per node, teacher cost, the DAG (Mermaid and Graphviz) and an HTML page tying them together.

use std::fmt::Write as _;
use std::path::Path;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use scorch_api::tables::{EvalResult, TableRow};

use crate::error::{EngineError, EngineErrorKind};
use crate::record::RunRecord;
use crate::store::Store;

/// Every `results` table a run's nodes produced (the `eval` nodes), in node order.
pub async fn collect_results(
    store: &Store,
    record: &RunRecord,
) -> Result<Vec<EvalResult>, EngineError> {
    let mut out = Vec::new();
    for node in &record.nodes {
        let Some(output) = node.outputs.get("results") else {
            continue;
        };
        let artifact = store.artifact(&output.artifact).await?;
        for f in &artifact.files {
            let bytes: Bytes = store
                .objects()
                .get(&Store::object_path(&f.object))
                .await
                .map_err(|e| EngineError::store("reading a results table", e))?
                .bytes()
                .await
                .map_err(|e| EngineError::store("reading a results table", e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(|e| {
                    EngineError::new(
                        EngineErrorKind::Corrupt,
                        format!("results of `{}`: {e}", node.id),
                    )
                })?;
            for batch in reader {
                let batch =
                    batch.map_err(|e| EngineError::new(EngineErrorKind::Corrupt, e.to_string()))?;
                out.extend(
                    EvalResult::from_batch(&batch)
                        .map_err(|e| EngineError::new(EngineErrorKind::Corrupt, e.to_string()))?,
                );
            }
        }
    }
    Ok(out)
}

/// The results as a Markdown table.
pub fn results_markdown(results: &[EvalResult]) -> String {
    let mut s = String::from(
        "| arm | suite | split | n | accuracy | pass@k | mean turns | mean tokens |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.1}% | {:.1}% | {:.2} | {:.1} |",
            r.label,
            r.suite,
            r.split,
            r.n,
            100.0 * r.accuracy,
            100.0 * r.pass_at_k,
            r.mean_turns,
            r.mean_tokens
        );
    }
    s
}

/// Wall time, outcome and teacher cost per node, as Markdown.
pub fn nodes_markdown(record: &RunRecord) -> String {
    let mut s = String::from(
        "| node | kind | outcome | wall time | teacher tokens (prompt / completion) |\n|---|---|---|---|---|\n",
    );
    for n in &record.nodes {
        let metric = |name: &str| {
            n.metrics
                .iter()
                .find(|m| m.name == name && m.step.is_none())
                .map(|m| m.value)
        };
        let teacher = match (
            metric("teacher_prompt_tokens"),
            metric("teacher_completion_tokens"),
        ) {
            (Some(p), Some(c)) => format!("{p:.0} / {c:.0}"),
            _ if n.kind == "rollout" => {
                match (metric("prompt_tokens"), metric("completion_tokens")) {
                    (Some(p), Some(c)) => format!("{p:.0} / {c:.0} (the rollout's policy)"),
                    _ => String::new(),
                }
            }
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.1} s | {} |",
            n.id,
            n.kind,
            n.outcome,
            n.duration_ms as f64 / 1000.0,
            teacher
        );
    }
    s
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn md_table_to_html(md: &str) -> String {
    let mut rows = md
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---"));
    let cells = |l: &str| -> Vec<String> {
        l.trim_matches('|')
            .split('|')
            .map(|c| html_escape(c.trim()))
            .collect()
    };
    let mut out = String::from("<table>\n");
    if let Some(h) = rows.next() {
        out.push_str("<tr>");
        for c in cells(h) {
            let _ = write!(out, "<th>{c}</th>");
        }
        out.push_str("</tr>\n");
    }
    for r in rows {
        out.push_str("<tr>");
        for c in cells(r) {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// Write the report of `record` into `dir`. `dag` is the (Mermaid, dot) drawing of the
/// workflow when its file is still there.
pub async fn write(
    store: &Store,
    record: &RunRecord,
    dag: Option<(String, String)>,
    dir: &Path,
) -> Result<Vec<EvalResult>, EngineError> {
    let io =
        |e: std::io::Error| EngineError::io(format!("writing the report in {}", dir.display()), e);
    std::fs::create_dir_all(dir).map_err(io)?;
    let results = collect_results(store, record).await?;
    let results_md = results_markdown(&results);
    let nodes_md = nodes_markdown(record);
    std::fs::write(dir.join("results.md"), &results_md).map_err(io)?;
    std::fs::write(dir.join("nodes.md"), &nodes_md).map_err(io)?;
    scorch_api::parquet_io::write_rows(&dir.join("results.parquet"), &results)
        .map_err(|e| EngineError::new(EngineErrorKind::Io, e.to_string()))?;
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>scorch run {id}</title>\n<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}pre{{background:#f4f4f4;padding:1em}}</style></head><body>\n<h1>Run {id}</h1>\n<p>workflow <b>{wf}</b> ({file}), {status:?}, {secs:.1} s, store {store}</p>\n<h2>Results</h2>\n{results}<h2>Nodes</h2>\n{nodes}",
        id = html_escape(&record.id),
        wf = html_escape(&record.workflow),
        file = html_escape(&record.file),
        status = record.status,
        secs = record.duration_ms as f64 / 1000.0,
        store = html_escape(&record.store),
        results = md_table_to_html(&results_md),
        nodes = md_table_to_html(&nodes_md),
    );
    if let Some((mermaid, dot)) = dag {
        std::fs::write(dir.join("dag.mmd"), &mermaid).map_err(io)?;
        std::fs::write(dir.join("dag.dot"), &dot).map_err(io)?;
        let _ = write!(
            html,
            "<h2>DAG</h2>\n<p>dag.mmd (Mermaid) and dag.dot (Graphviz: <code>dot -Tpng dag.dot</code>)</p>\n<pre>{}</pre>\n",
            html_escape(&mermaid)
        );
    }
    html.push_str("</body></html>\n");
    std::fs::write(dir.join("index.html"), html).map_err(io)?;
    Ok(results)
}
