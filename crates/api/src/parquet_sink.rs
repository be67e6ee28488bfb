//! The one Parquet writer behind every table scorch writes: bounded row groups, columns
//! encoded in parallel.
//!
//! Each leaf column of a row group is encoded on a thread of its own, fed through a short
//! queue, so the columns and the caller's conversion of its next rows run side by side with
//! no step where one waits for all. A row group is closed once the Arrow data handed to it
//! reaches [`ROW_GROUP_BYTES`] or it holds [`ROW_GROUP_ROWS`] rows ([`RowGroupLimits`]),
//! which bounds the memory of a writer however many rows go through it. Every column chunk is encoded by one writer in
//! batch order and appended in schema order, so equal tables give equal bytes whatever the
//! threads do.

use std::collections::HashSet;
use std::io::Write;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

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

use crate::parquet_io::writer_properties;
use crate::{PluginError, PluginErrorKind};

/// Rows encoded at a time; a larger batch is cut into slices of this many rows.
pub const CHUNK_ROWS: usize = 4096;

/// A row group is closed once the Arrow data written to it reaches this size (its encoded
/// pages, which the writer holds until the group is closed, are a fraction of it: Snappy and
/// dictionaries). A bound on the writer's memory however large the table.
pub const ROW_GROUP_BYTES: usize = 128 << 20;

/// At most this many rows per row group (pyarrow's default).
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// Where a writer closes a row group: at `rows` rows or once the Arrow data written to it
/// reaches `bytes`, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroupLimits {
    /// Rows per row group, at most.
    pub rows: usize,
    /// Arrow bytes after which a row group is closed.
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
            label,
        })
    }

    /// Hand `batch` to the column encoders; it is encoded while the caller goes on.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), PluginError> {
        self.encoder
            .write(batch)
            .map_err(|e| failed(&self.label, &e))
    }

    /// Encode what is left, write the last row group and the footer.
    pub(crate) fn close(self) -> Result<(), PluginError> {
        let label = self.label;
        self.encoder.close().map_err(|e| failed(&label, &e))
    }
}

fn failed(label: &str, e: &ParquetError) -> PluginError {
    PluginError::new(PluginErrorKind::Output, format!("{label}: {e}"))
}

/// Batches a column encoder may have waiting: the caller converts at most this far ahead.
const QUEUED: usize = 2;

/// One leaf column of the row group being written, encoded on a thread of its own.
struct Lane {
    queue: SyncSender<ArrowLeafColumn>,
    encoder: JoinHandle<Result<ArrowColumnChunk, ParquetError>>,
}

impl Lane {
    fn start(mut column: ArrowColumnWriter) -> Result<Self, ParquetError> {
        let (queue, leaves) = sync_channel::<ArrowLeafColumn>(QUEUED);
        let encoder = std::thread::Builder::new()
            .name("parquet-column".into())
            .spawn(move || {
                for leaf in leaves {
                    column.write(&leaf)?;
                }
                column.close()
            })
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(Self { queue, encoder })
    }

    /// Close the queue and wait for the column chunk.
    fn finish(self) -> Result<ArrowColumnChunk, ParquetError> {
        drop(self.queue);
        self.encoder
            .join()
            .unwrap_or_else(|_| Err(ParquetError::General("a column encoder panicked".into())))
    }
}

/// The file and the row group being encoded. The file is started at the first batch, whose
/// values choose which columns try a dictionary ([`dictionary_columns`]).
struct Encoder<W: Write + Send> {
    sink: Option<W>,
    file: Option<(SerializedFileWriter<W>, ArrowRowGroupWriterFactory)>,
    schema: SchemaRef,
    limits: RowGroupLimits,
    lanes: Option<Vec<Lane>>,
    groups: usize,
    rows: usize,
    /// Arrow bytes handed to the row group being written.
    bytes: usize,
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
            lanes: None,
            groups: 0,
            rows: 0,
            bytes: 0,
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
        if self.lanes.is_none() {
            let groups = self.groups;
            let (_, factory) = self.file(Some(batch))?;
            let lanes = factory
                .create_column_writers(groups)?
                .into_iter()
                .map(Lane::start)
                .collect::<Result<Vec<_>, _>>()?;
            self.lanes = Some(lanes);
        }
        let Some(lanes) = &self.lanes else {
            return Ok(());
        };
        let mut stopped = false;
        for (lane, leaf) in lanes.iter().zip(leaves) {
            stopped |= lane.queue.send(leaf).is_err();
        }
        if stopped {
            // An encoder failed: finishing the row group returns its error.
            self.flush()?;
            return Err(ParquetError::General("a column encoder stopped".into()));
        }
        self.rows += batch.num_rows();
        // The row group's size is counted in Arrow bytes, known here and now, so where it
        // ends does not depend on how far the encoders have got.
        self.bytes += batch
            .columns()
            .iter()
            .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
            .sum::<usize>();
        if self.bytes >= self.limits.bytes || self.rows >= self.limits.rows {
            self.flush()?;
        }
        Ok(())
    }

    /// Close the row group being encoded and append it to the file.
    fn flush(&mut self) -> Result<(), ParquetError> {
        let Some(lanes) = self.lanes.take() else {
            return Ok(());
        };
        // Every lane is finished, even after an error, so no encoder thread outlives this.
        let chunks: Vec<Result<ArrowColumnChunk, ParquetError>> =
            lanes.into_iter().map(Lane::finish).collect();
        let chunks = chunks.into_iter().collect::<Result<Vec<_>, _>>()?;
        let (file, _) = self.file(None)?;
        let mut group = file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        group.close()?;
        self.groups += 1;
        self.rows = 0;
        self.bytes = 0;
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
