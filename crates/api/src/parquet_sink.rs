//! The one Parquet writer behind every table scorch writes: bounded row groups, columns
//! encoded in parallel.
//!
//! The leaf columns are encoded by a few threads ([`ColumnEncoders`]) while the caller
//! converts its next rows, and the caller helps them when it gets too far ahead. A row group
//! is closed once the Arrow data handed to it reaches [`ROW_GROUP_BYTES`] or it holds
//! [`ROW_GROUP_ROWS`] rows ([`RowGroupLimits`]), which bounds the memory of a writer however
//! many rows go through it. Every column chunk is encoded by one writer in batch order and
//! appended in schema order, so equal tables give equal bytes whatever the threads do.

use std::collections::HashSet;
use std::io::Write;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::arrow_writer::{ArrowLeafColumn, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::SchemaDescriptor;

use crate::column_encoders::ColumnEncoders;
use crate::parquet_format::writer_properties;
use crate::{PluginError, PluginErrorKind};

/// Rows encoded at a time; a larger batch is cut into slices of this many rows.
pub const CHUNK_ROWS: usize = 4096;

/// A row group is closed once the Arrow data written to it reaches this size (its encoded
/// pages, which the writer holds until the group is closed, are a fraction of it: Snappy and
/// dictionaries). A bound on the writer's memory however large the table.
pub const ROW_GROUP_BYTES: usize = 64 << 20;

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
        // Converted now, so a schema Parquet cannot hold fails before any row is converted.
        let descr = ArrowSchemaConverter::new()
            .convert(&schema)
            .map_err(|e| failed(&label, &e))?;
        Ok(Self {
            encoder: Encoder::new(sink, schema, descr, limits),
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

/// The file and the row group being encoded. The file is started at the first batch, whose
/// values choose which columns try a dictionary ([`dictionary_columns`]).
struct Encoder<W: Write + Send> {
    sink: Option<W>,
    file: Option<(SerializedFileWriter<W>, ArrowRowGroupWriterFactory)>,
    schema: SchemaRef,
    descr: SchemaDescriptor,
    limits: RowGroupLimits,
    /// Started with the file.
    encoders: Option<ColumnEncoders>,
    /// Encoder threads besides the caller's: one fewer than the cores, so the caller's
    /// conversion and the encoders keep every core busy and no more.
    threads: usize,
    groups: usize,
    rows: usize,
    /// Arrow bytes handed to the row group being written.
    bytes: usize,
}

impl<W: Write + Send> Encoder<W> {
    fn new(sink: W, schema: SchemaRef, descr: SchemaDescriptor, limits: RowGroupLimits) -> Self {
        Self {
            sink: Some(sink),
            file: None,
            schema,
            descr,
            limits: RowGroupLimits {
                rows: limits.rows.max(1),
                bytes: limits.bytes.max(1),
            },
            encoders: None,
            threads: std::thread::available_parallelism()
                .map_or(1, usize::from)
                .saturating_sub(1),
            groups: 0,
            rows: 0,
            bytes: 0,
        }
    }

    /// The file, started at the first batch (`first`; `None` when the table has no rows).
    fn file(
        &mut self,
        first: Option<&RecordBatch>,
    ) -> Result<&mut (SerializedFileWriter<W>, ArrowRowGroupWriterFactory), ParquetError> {
        if self.file.is_none() {
            let sink = self
                .sink
                .take()
                .ok_or_else(|| ParquetError::General("the file was not started".into()))?;
            let mut leaves = Vec::new();
            for column in first.iter().flat_map(|b| b.columns()) {
                leaf_arrays(column.as_ref(), &mut leaves);
            }
            // A type whose Arrow leaves do not map one to one onto Parquet's (or no rows):
            // every column tries a dictionary.
            let props = if leaves.len() == self.descr.num_columns() {
                dictionary_columns(&self.descr, &leaves)
            } else {
                writer_properties()
            };
            let options = ArrowWriterOptions::new()
                .with_properties(props)
                .with_parquet_schema(self.descr.clone());
            let started = ArrowWriter::try_new_with_options(sink, self.schema.clone(), options)?
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
        if self.encoders.is_none() {
            self.file(Some(batch))?;
            // More threads than columns would have nothing to do.
            let threads = self.threads.min(self.descr.num_columns());
            self.encoders = Some(ColumnEncoders::start(threads)?);
        }
        let groups = self.groups;
        let (Some((_, factory)), Some(encoders)) = (&self.file, &mut self.encoders) else {
            return Err(ParquetError::General("the file was not started".into()));
        };
        if !encoders.begun() {
            encoders.begin(factory.create_column_writers(groups)?);
        }
        encoders.write(leaves)?;
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
        let Some(encoders) = self.encoders.as_mut().filter(|e| e.begun()) else {
            return Ok(());
        };
        let chunks = encoders.finish()?;
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
/// a column the attempt costs time and saves nothing. Decided from the first batch (its leaf
/// `arrays`, one per column of `descr`), so equal tables still give equal bytes.
fn dictionary_columns(descr: &SchemaDescriptor, arrays: &[&dyn Array]) -> WriterProperties {
    let mut props = writer_properties().into_builder();
    for (column, leaf) in descr.columns().iter().zip(arrays) {
        if let Some(values) = leaf.as_string_opt::<i32>()
            && mostly_distinct(values)
        {
            props = props.set_column_dictionary_enabled(column.path().clone(), false);
        }
    }
    props.build()
}

/// The array of each Parquet leaf column of `array`, in schema order (the values of a list,
/// the children of a struct).
fn leaf_arrays<'a>(array: &'a dyn Array, out: &mut Vec<&'a dyn Array>) {
    match array.data_type() {
        DataType::Struct(_) => {
            for child in array.as_struct().columns() {
                leaf_arrays(child.as_ref(), out);
            }
        }
        DataType::List(_) => leaf_arrays(array.as_list::<i32>().values().as_ref(), out),
        DataType::LargeList(_) => leaf_arrays(array.as_list::<i64>().values().as_ref(), out),
        _ => out.push(array),
    }
}

fn mostly_distinct(values: &StringArray) -> bool {
    let mut seen = HashSet::new();
    let mut counted = 0;
    for value in values.iter().flatten().take(CHUNK_ROWS) {
        seen.insert(value);
        counted += 1;
    }
    counted >= 64 && seen.len() * 2 > counted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::TableRow;

    /// A row with what makes encoding uneven across columns: strings, an optional, and a
    /// list of structs of varying length.
    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Row {
        id: String,
        group: String,
        sample: u32,
        items: Vec<Item>,
        answer: Option<String>,
        flag: bool,
    }

    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Item {
        index: u32,
        text: String,
        code: String,
    }

    impl TableRow for Row {
        const KIND: &'static str = "test_rows";
    }

    fn write(rows: &[Row], threads: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let limits = RowGroupLimits {
            rows: 3000,
            bytes: usize::MAX,
        };
        let mut sink = ParquetSink::new(&mut out, Row::schema(), limits, "test".into()).unwrap();
        sink.encoder.threads = threads;
        for chunk in rows.chunks(1000) {
            sink.write(&Row::to_batch(chunk).unwrap()).unwrap();
        }
        sink.close().unwrap();
        out
    }

    #[test]
    fn the_bytes_do_not_depend_on_the_number_of_encoder_threads() {
        let rows: Vec<Row> = (0..7000u32)
            .map(|i| Row {
                id: format!("r{i}"),
                group: format!("How many apples after {i} days?"),
                sample: i % 3,
                items: (1..=i % 5)
                    .map(|k| Item {
                        index: k,
                        text: format!("t{i}"),
                        code: "1 + 1".into(),
                    })
                    .collect(),
                answer: (i % 4 != 0).then(|| i.to_string()),
                flag: i % 2 == 1,
            })
            .collect();
        let alone = write(&rows, 0);
        assert_eq!(alone, write(&rows, 1));
        assert_eq!(alone, write(&rows, 2));
        assert_eq!(alone, write(&rows, 5));
        assert_eq!(alone, write(&rows, 64));
    }
}
