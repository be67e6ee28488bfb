//! Streaming a table kind's rows to a local Parquet file.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow_schema::FieldRef;

use crate::PluginError;
use crate::parquet_sink::{CHUNK_ROWS, ParquetSink, RowGroupLimits};
use crate::tables::TableRow;

/// Writes rows of one table kind to a local Parquet file, streaming: rows are converted to
/// Arrow [`CHUNK_ROWS`] at a time, each chunk while the one before is encoded, in bounded row
/// groups, so memory stays bounded however many rows go through.
///
/// The file appears at its path only when [`RowWriter::finish`] succeeds; until then the rows
/// go to `PATH.partial`, which a dropped writer removes.
pub struct RowWriter<T: TableRow> {
    path: PathBuf,
    partial: PathBuf,
    fields: Vec<FieldRef>,
    sink: Option<ParquetSink<BufWriter<File>>>,
    pending: Vec<T>,
    rows: u64,
}

impl<T: TableRow> std::fmt::Debug for RowWriter<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowWriter")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish()
    }
}

impl<T: TableRow> RowWriter<T> {
    /// Start writing `path`.
    pub fn create(path: &Path) -> Result<Self, PluginError> {
        Self::with_limits(path, RowGroupLimits::default())
    }

    /// Start writing `path` with row groups cut at `limits`.
    pub fn with_limits(path: &Path, limits: RowGroupLimits) -> Result<Self, PluginError> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial)
            .map_err(|e| PluginError::io(format!("creating {}", partial.display()), e))?;
        let fields = T::fields();
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(fields.clone()));
        let sink = ParquetSink::new(
            BufWriter::with_capacity(1 << 20, file),
            schema,
            limits,
            format!("writing {}", path.display()),
        );
        let sink = match sink {
            Ok(sink) => sink,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        Ok(Self {
            path: path.to_owned(),
            partial,
            fields,
            sink: Some(sink),
            pending: Vec::with_capacity(CHUNK_ROWS),
            rows: 0,
        })
    }

    /// Add one row.
    pub fn push(&mut self, row: T) -> Result<(), PluginError> {
        self.pending.push(row);
        if self.pending.len() >= CHUNK_ROWS {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Add rows that are already in memory (converted in chunks, not copied).
    pub fn write_all(&mut self, rows: &[T]) -> Result<(), PluginError> {
        self.write_pending()?;
        self.write_rows(rows)
    }

    /// Write the pushed rows not yet written; their buffer is kept for the next.
    fn write_pending(&mut self) -> Result<(), PluginError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut rows = std::mem::take(&mut self.pending);
        self.write_rows(&rows)?;
        rows.clear();
        self.pending = rows;
        Ok(())
    }

    fn write_rows(&mut self, rows: &[T]) -> Result<(), PluginError> {
        let sink = self
            .sink
            .as_mut()
            .ok_or_else(|| PluginError::failed("the writer is already finished"))?;
        write_rows(sink, &self.fields, rows)?;
        self.rows += rows.len() as u64;
        Ok(())
    }

    /// Write what is left, close the file and move it into place. Returns the row count.
    pub fn finish(mut self) -> Result<u64, PluginError> {
        self.write_pending()?;
        if let Some(sink) = self.sink.take()
            && let Err(e) = sink.close()
        {
            let _ = std::fs::remove_file(&self.partial);
            return Err(e);
        }
        std::fs::rename(&self.partial, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&self.partial);
            PluginError::io(format!("finishing {}", self.path.display()), e)
        })?;
        Ok(self.rows)
    }
}

impl<T: TableRow> Drop for RowWriter<T> {
    fn drop(&mut self) {
        // Not finished: leave no half-written file behind.
        if self.sink.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Write `rows` to `sink`, [`CHUNK_ROWS`] at a time, each chunk converted while the ones
/// before are encoded.
pub(crate) fn write_rows<T: TableRow, W: std::io::Write + Send>(
    sink: &mut ParquetSink<W>,
    fields: &[FieldRef],
    rows: &[T],
) -> Result<(), PluginError> {
    for chunk in rows.chunks(CHUNK_ROWS) {
        sink.write(&T::to_batch_with(fields, chunk)?)?;
    }
    Ok(())
}
