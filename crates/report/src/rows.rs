//! Reading a run's output tables back as rows, node by node.

use bytes::Bytes;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use scorch_engine::error::{EngineError, EngineErrorKind};
use scorch_engine::record::RunRecord;
use scorch_engine::store::Store;
use scorch_tables::TableRow;

/// The rows of output `port` of every node (of `kind`, if given) that has it, by node id.
pub async fn collect_rows<T: TableRow>(
    store: &Store,
    record: &RunRecord,
    port: &str,
    kind: Option<&str>,
) -> Result<Vec<(String, Vec<T>)>, EngineError> {
    let mut out = Vec::new();
    for node in &record.nodes {
        if kind.is_some_and(|k| k != node.kind) {
            continue;
        }
        let Some(output) = node.outputs.get(port) else {
            continue;
        };
        let corrupt = |e: String| {
            EngineError::new(
                EngineErrorKind::Corrupt,
                format!("`{port}` of `{}`: {e}", node.id),
            )
        };
        let artifact = store.artifact(&output.artifact).await?;
        let mut rows = Vec::new();
        for f in &artifact.files {
            let bytes: Bytes = store
                .objects()
                .get(&scorch_engine::layout::object(&f.object))
                .await
                .map_err(|e| EngineError::store("reading a table", e))?
                .bytes()
                .await
                .map_err(|e| EngineError::store("reading a table", e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.build())
                .map_err(|e| corrupt(e.to_string()))?;
            for batch in reader {
                let batch = batch.map_err(|e| corrupt(e.to_string()))?;
                rows.extend(T::from_batch(&batch).map_err(|e| corrupt(e.to_string()))?);
            }
        }
        out.push((node.id.clone(), rows));
    }
    Ok(out)
}
