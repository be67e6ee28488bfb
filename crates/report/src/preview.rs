//! A look into an artifact without copying it out: a table's schema and first rows, a blob
//! set's files and, for a checkpoint, its `config.json` (for `scorch ui`).

use bytes::Bytes;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use scorch_engine::error::{EngineError, EngineErrorKind};
use scorch_engine::store::{ArtifactKind, Store};
use serde::Serialize;

/// The most bytes of a `config.json` shown.
const CONFIG_MAX: u64 = 256 * 1024;

/// What [`preview`] shows.
#[derive(Debug, Clone, Serialize)]
pub struct Preview {
    /// `table` or `blobs`.
    pub kind: &'static str,
    /// A table's columns: name and Arrow type.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<(String, String)>,
    /// A table's rows in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Its first rows, each value as text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub head: Vec<Vec<String>>,
    /// A blob set's files and sizes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<(String, u64)>,
    /// A checkpoint's `config.json`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

async fn object(store: &Store, hash: &str) -> Result<Bytes, EngineError> {
    store
        .objects()
        .get(&scorch_engine::layout::object(hash))
        .await
        .map_err(|e| EngineError::store(format!("reading object {hash}"), e))?
        .bytes()
        .await
        .map_err(|e| EngineError::store(format!("reading object {hash}"), e))
}

/// The schema and first `n` rows of a table artifact, or the files of a blob set.
pub async fn preview(store: &Store, artifact: &str, n: usize) -> Result<Preview, EngineError> {
    let a = store.artifact(artifact).await?;
    match a.kind {
        ArtifactKind::Table => {
            let columns = a
                .schema
                .as_ref()
                .map(|s| {
                    s.fields()
                        .iter()
                        .map(|f| (f.name().clone(), f.data_type().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let mut head = Vec::new();
            let corrupt = |e: String| {
                EngineError::new(EngineErrorKind::Corrupt, format!("table {artifact}: {e}"))
            };
            for f in &a.files {
                if head.len() >= n {
                    break;
                }
                let reader =
                    ParquetRecordBatchReaderBuilder::try_new(object(store, &f.object).await?)
                        .and_then(|b| b.with_batch_size(n.max(1)).build())
                        .map_err(|e| corrupt(e.to_string()))?;
                for batch in reader {
                    let batch = batch.map_err(|e| corrupt(e.to_string()))?;
                    let options = arrow_cast::display::FormatOptions::default().with_null("null");
                    let formatters = batch
                        .columns()
                        .iter()
                        .map(|c| arrow_cast::display::ArrayFormatter::try_new(c.as_ref(), &options))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| corrupt(e.to_string()))?;
                    for row in 0..batch.num_rows() {
                        if head.len() >= n {
                            break;
                        }
                        head.push(
                            formatters
                                .iter()
                                .map(|f| {
                                    let mut s = f.value(row).to_string();
                                    if s.len() > 400 {
                                        let cut = (0..=400)
                                            .rev()
                                            .find(|&i| s.is_char_boundary(i))
                                            .unwrap_or(0);
                                        s.truncate(cut);
                                        s.push('…');
                                    }
                                    s
                                })
                                .collect(),
                        );
                    }
                    if head.len() >= n {
                        break;
                    }
                }
            }
            Ok(Preview {
                kind: "table",
                columns,
                rows: a.rows,
                head,
                files: Vec::new(),
                config: None,
            })
        }
        ArtifactKind::Blobs => {
            let config = match a
                .files
                .iter()
                .find(|f| f.path == "config.json" && f.size <= CONFIG_MAX)
            {
                Some(f) => serde_json::from_slice(&object(store, &f.object).await?).ok(),
                None => None,
            };
            Ok(Preview {
                kind: "blobs",
                columns: Vec::new(),
                rows: None,
                head: Vec::new(),
                files: a.files.iter().map(|f| (f.path.clone(), f.size)).collect(),
                config,
            })
        }
    }
}
