//! Parquet conventions shared by the engine and plugins, and the check of staged outputs.

use std::path::{Path, PathBuf};

use arrow_schema::SchemaRef;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::port::{OutputPort, PortType, TableSpec, check_schema};
use crate::{PluginError, PluginErrorKind};

/// The file name of a staged output table.
pub const TABLE_FILE: &str = "part-00000.parquet";

pub use crate::parquet_format::{created_by, writer_properties};

/// A Parquet file's Arrow schema and row count.
pub fn read_schema(path: &Path) -> Result<(SchemaRef, u64), PluginError> {
    let file = std::fs::File::open(path)
        .map_err(|e| PluginError::io(format!("opening {}", path.display()), e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| {
        PluginError::new(
            PluginErrorKind::Output,
            format!("{} is not a Parquet file: {e}", path.display()),
        )
    })?;
    let rows = builder.metadata().file_metadata().num_rows();
    Ok((builder.schema().clone(), u64::try_from(rows).unwrap_or(0)))
}

/// One file of a staged output.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Path inside the output, `/`-separated.
    pub rel: String,
    /// Where it is on disk.
    pub abs: PathBuf,
}

/// What a staged output is.
#[derive(Debug, Clone)]
pub enum StagedKind {
    /// A table with its schema and row count.
    Table {
        /// The schema read back from the file.
        schema: SchemaRef,
        /// Rows.
        rows: u64,
    },
    /// A blob set.
    Blobs,
}

/// A complete output found in a node's staging area.
#[derive(Debug, Clone)]
pub struct StagedOutput {
    /// Output name.
    pub name: String,
    /// Table or blobs.
    pub kind: StagedKind,
    /// Its files, sorted by `rel`.
    pub files: Vec<StagedFile>,
}

/// Check that every declared output was written completely and as declared.
pub fn collect_outputs(
    staging_dir: &Path,
    outputs: &[OutputPort],
) -> Result<Vec<StagedOutput>, PluginError> {
    let mut staged = Vec::with_capacity(outputs.len());
    for port in outputs {
        let dir = staging_dir.join(&port.name);
        let missing = || {
            PluginError::new(
                PluginErrorKind::Output,
                format!("output `{}` was not written", port.name),
            )
        };
        if !dir.is_dir() {
            return Err(missing());
        }
        match &port.ty {
            PortType::Table(spec) => {
                let path = dir.join(TABLE_FILE);
                if !path.is_file() {
                    return Err(missing());
                }
                let (schema, rows) = read_schema(&path)?;
                if let TableSpec::Columns(declared) = spec {
                    check_schema(declared, &schema).map_err(|why| {
                        PluginError::new(
                            PluginErrorKind::Output,
                            format!(
                                "output `{}` does not match its declaration: {why}",
                                port.name
                            ),
                        )
                    })?;
                }
                staged.push(StagedOutput {
                    name: port.name.clone(),
                    kind: StagedKind::Table { schema, rows },
                    files: vec![StagedFile {
                        rel: TABLE_FILE.to_owned(),
                        abs: path,
                    }],
                });
            }
            PortType::Blobs => {
                let mut files = Vec::new();
                walk(&dir, "", &mut files)?;
                files.sort_by(|a, b| a.rel.cmp(&b.rel));
                staged.push(StagedOutput {
                    name: port.name.clone(),
                    kind: StagedKind::Blobs,
                    files,
                });
            }
        }
    }
    Ok(staged)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<StagedFile>) -> Result<(), PluginError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| PluginError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| PluginError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let ty = entry
            .file_type()
            .map_err(|e| PluginError::io(format!("reading {rel}"), e))?;
        if ty.is_dir() {
            walk(&entry.path(), &rel, out)?;
        } else if ty.is_file() {
            out.push(StagedFile {
                rel,
                abs: entry.path(),
            });
        } else {
            return Err(PluginError::new(
                PluginErrorKind::Output,
                format!("output file `{rel}` is not a regular file (links are not stored)"),
            ));
        }
    }
    Ok(())
}

/// Write rows of a table kind to a local Parquet file (in bounded row groups; the file
/// appears only once complete).
pub fn write_rows<T: crate::tables::TableRow>(path: &Path, rows: &[T]) -> Result<(), PluginError> {
    let mut w = crate::row_writer::RowWriter::<T>::create(path)?;
    w.write_all(rows)?;
    w.finish().map(|_| ())
}

/// Read rows of a table kind from a local Parquet file.
pub fn read_rows<T: crate::tables::TableRow>(path: &Path) -> Result<Vec<T>, PluginError> {
    let file = std::fs::File::open(path)
        .map_err(|e| PluginError::io(format!("opening {}", path.display()), e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| {
            PluginError::new(
                PluginErrorKind::Input,
                format!("{} is not a Parquet file: {e}", path.display()),
            )
        })?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| {
            PluginError::new(PluginErrorKind::Input, format!("{}: {e}", path.display()))
        })?;
        rows.extend(T::from_batch(&batch)?);
    }
    Ok(rows)
}
