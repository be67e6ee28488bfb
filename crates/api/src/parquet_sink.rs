//! The one Parquet writer behind every table scorch writes: bounded row groups, columns
//! encoded in parallel.
//!
//! A batch's leaf columns are encoded in parallel on rayon's pool, and a writer of rows
//! converts its next rows to Arrow during the encoding of the last ones
//! ([`ParquetSink::write_next`]), so both cores stay busy with no thread beyond the pool.
//! A row group is closed once its encoded pages reach
//! [`ROW_GROUP_BYTES`] or it holds [`ROW_GROUP_ROWS`] rows ([`RowGroupLimits`]), which bounds the memory of a
//! writer however many rows go through it. Every column chunk is encoded by one writer in
//! batch order and appended in schema order, so equal tables give equal bytes whatever the
//! threads do.

use std::io::Write;

use std::collections::HashSet;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::{
    ArrowColumnChunk, ArrowColumnWriter, ArrowLeafColumn, ArrowRowGroupWriterFactory,
    compute_leaves,
};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::errors::ParquetError;
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use parquet::file::writer::SerializedFileWriter;
use rayon::prelude::*;

use crate::parquet_io::writer_properties;
use crate::{PluginError, PluginErrorKind};

/// Rows encoded at a time; a larger batch is cut into slices of this many rows.
pub const CHUNK_ROWS: usize = 4096;

/// A row group is closed once its encoded pages reach this size. DuckDB and Spark aim at
/// 100–128 MB row groups; half of that keeps a writer's memory low enough to stream a large
/// import on a small machine.
pub const ROW_GROUP_BYTES: usize = 64 << 20;

/// At most this many rows per row group (pyarrow's default).
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// Where a writer closes a row group: at `rows` rows or once its encoded pages reach `bytes`,
/// whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupLimits {
    /// Rows per row group, at most.
    pub rows: usize,
    /// Encoded bytes after which a row group is closed.
    pub bytes: usize,
}

impl Default for RowGroupLimits {
    fn default() -> Self {
        Self {
            rows: ROW_GROUP_ROWS,
            bytes: ROW_GROUP_BYTES,
        }
    }
}

/// Writes record batches of one schema to a Parquet file.
pub(crate) struct ParquetSink<W: Write + Send> {
    encoder: Encoder<W>,
    /// A converted batch whose encoding waits for the next conversion.
    ready: Option<RecordBatch>,
    /// What is written, for messages (`writing PATH`, `output `NAME``).
    label: String,
}

impl<W: Write + Send> ParquetSink<W> {
    /// Start a file on `sink`; errors name `label`.
    pub(crate) fn new(
        sink: W,
        schema: SchemaRef,
        limits: RowGroupLimits,
        label: String,
    ) -> Result<Self, PluginError> {
        // Checked now, so a schema Parquet cannot hold fails before any row is converted.
        ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(|e| failed(&label, &e))?;
        Ok(Self {
            encoder: Encoder::new(sink, schema, limits),
            ready: None,
            label,
        })
    }

    /// Encode `batch` (after any batch converted earlier).
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        if let Some(ready) = self.ready.take() {
            self.encode(&ready)?;
        }
        self.encode(batch)
    }

    /// Run `convert` for the next batch while the batch converted last is encoded on the
    /// other core; the new batch is encoded by the next call, [`Self::write`] or
    /// [`Self::close`].
    pub(crate) fn write_next(
        &mut self,
        convert: impl FnOnce() -> Result<RecordBatch, PluginError> + Send,
    ) -> Result<(), PluginError> {
        let next = match self.ready.take() {
            None => convert()?,
            Some(ready) => {
                let encoder = &mut self.encoder;
                let (encoded, next) = rayon::join(|| encoder.write(&ready), convert);
                encoded.map_err(|e| failed(&self.label, &e))?;
                next?
            }
        };
        self.ready = Some(next);
        Ok(())
    }

    fn encode(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        self.encoder
            .write(batch)
            .map_err(|e| failed(&self.label, &e))
    }

    /// Encode what is left, write the last row group and the footer.
    pub(crate) fn close(mut self) -> Result<(), PluginError> {
        if let Some(ready) = self.ready.take() {
            self.encode(&ready)?;
        }
        let label = self.label;
        self.encoder.close().map_err(|e| failed(&label, &e))
    }
}

fn failed(label: &str, e: &ParquetError) -> PluginError {
    PluginError::new(PluginErrorKind::Output, format!("{label}: {e}"))
}

/// The file and the row group being encoded. The file is started at the first batch, whose
/// values choose which columns try a dictionary ([`dictionary_columns`]).
struct Encoder<W: Write + Send> {
    sink: Option<W>,
    file: Option<(SerializedFileWriter<W>, ArrowRowGroupWriterFactory)>,
    schema: SchemaRef,
    limits: RowGroupLimits,
    columns: Option<Vec<ArrowColumnWriter>>,
    groups: usize,
    rows: usize,
}

impl<W: Write + Send> Encoder<W> {
    fn new(sink: W, schema: SchemaRef, limits: RowGroupLimits) -> Self {
        Self {
            sink: Some(sink),
            file: None,
            schema,
            limits: RowGroupLimits {
                rows: limits.rows.max(1),
                bytes: limits.bytes.max(1),
            },
            columns: None,
            groups: 0,
            rows: 0,
        }
    }

    fn file(
        &mut self,
        first: Option<&RecordBatch>,
    ) -> Result<&mut (SerializedFileWriter<W>, ArrowRowGroupWriterFactory), ParquetError> {
        if self.file.is_none() {
            let sink = self
                .sink
                .take()
                .ok_or_else(|| ParquetError::General("the file was not started".into()))?;
            let props = match first {
                Some(batch) => dictionary_columns(batch, writer_properties().into_builder())?,
                None => writer_properties(),
            };
            let started = ArrowWriter::try_new(sink, self.schema.clone(), Some(props))?
                .into_serialized_writer()?;
            return Ok(self.file.insert(started));
        }
        self.file
            .as_mut()
            .ok_or_else(|| ParquetError::General("the file was not started".into()))
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let mut at = 0;
        while at < batch.num_rows() {
            let len = CHUNK_ROWS
                .min(batch.num_rows() - at)
                .min(self.limits.rows - self.rows);
            self.encode(&batch.slice(at, len))?;
            at += len;
        }
        Ok(())
    }

    fn close(mut self) -> Result<(), ParquetError> {
        self.flush()?;
        self.file(None)?;
        match self.file.take() {
            Some((file, _)) => file.close().map(|_| ()),
            None => Ok(()),
        }
    }

    fn encode(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let mut leaves: Vec<ArrowLeafColumn> = Vec::new();
        for (field, array) in self.schema.fields().iter().zip(batch.columns()) {
            leaves.extend(compute_leaves(field, array)?);
        }
        if self.columns.is_none() {
            let groups = self.groups;
            let (_, factory) = self.file(Some(batch))?;
            self.columns = Some(factory.create_column_writers(groups)?);
        }
        let Some(columns) = &mut self.columns else {
            return Ok(());
        };
        columns
            .par_iter_mut()
            .zip(leaves.par_iter())
            .try_for_each(|(column, leaf)| column.write(leaf))?;
        self.rows += batch.num_rows();
        let bytes: usize = columns.iter().map(|c| c.get_estimated_total_bytes()).sum();
        if bytes >= self.limits.bytes || self.rows >= self.limits.rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Close the row group being encoded and append it to the file.
    fn flush(&mut self) -> Result<(), ParquetError> {
        let Some(columns) = self.columns.take() else {
            return Ok(());
        };
        let chunks: Vec<ArrowColumnChunk> = columns
            .into_par_iter()
            .map(ArrowColumnWriter::close)
            .collect::<Result<_, _>>()?;
        let (file, _) = self.file(None)?;
        let mut group = file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.groups += 1;
        self.rows = 0;
        Ok(())
    }
}

/// Columns whose first values are mostly distinct (ids, questions, texts) skip the dictionary:
/// Parquet writers try one for every column and give it up once its page is full, so on such
/// a column the attempt costs time and saves nothing. Decided from the first batch, so equal
/// tables still give equal bytes.
fn dictionary_columns(
    batch: &RecordBatch,
    mut props: WriterPropertiesBuilder,
) -> Result<WriterProperties, ParquetError> {
    let descr = ArrowSchemaConverter::new().convert(&batch.schema())?;
    let mut leaves = Vec::new();
    for column in batch.columns() {
        string_leaves(column.as_ref(), &mut leaves);
    }
    if leaves.len() != descr.num_columns() {
        return Ok(props.build());
    }
    for (column, leaf) in descr.columns().iter().zip(leaves) {
        if let Some(values) = leaf
            && mostly_distinct(values)
        {
            props = props.set_column_dictionary_enabled(column.path().clone(), false);
        }
    }
    Ok(props.build())
}

/// Each Parquet leaf column of `array` in schema order: its strings where it is a string
/// column.
fn string_leaves<'a>(array: &'a dyn Array, out: &mut Vec<Option<&'a StringArray>>) {
    match array.data_type() {
        DataType::Struct(_) => {
            for child in array.as_struct().columns() {
                string_leaves(child.as_ref(), out);
            }
        }
        DataType::List(_) => string_leaves(array.as_list::<i32>().values().as_ref(), out),
        DataType::LargeList(_) => string_leaves(array.as_list::<i64>().values().as_ref(), out),
        DataType::Utf8 => out.push(array.as_string_opt::<i32>()),
        _ => out.push(None),
    }
}

fn mostly_distinct(values: &StringArray) -> bool {
    let seen: HashSet<&str> = values.iter().flatten().take(CHUNK_ROWS).collect();
    let counted = values.iter().flatten().take(CHUNK_ROWS).count();
    counted >= 64 && seen.len() * 2 > counted
}
