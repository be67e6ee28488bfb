use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Schema, SchemaRef};

/// The named inputs and outputs of one configured node.
#[derive(Debug, Clone, Default)]
pub struct Signature {
    /// Inputs the plugin reads.
    pub inputs: Vec<InputPort>,
    /// Outputs the plugin writes; every one must be written by a successful run.
    pub outputs: Vec<OutputPort>,
    /// When set, inputs of any other name are accepted with this type (the `exec` plugin).
    pub extra_inputs: Option<PortType>,
    /// Files or folders on the machine that the node reads when it runs, outside the store.
    pub local_files: Vec<LocalFile>,
    /// Where the shape of the model it outputs or trains comes from, if it has one.
    pub model: Option<crate::memory::ModelSource>,
    /// How to plan its peak memory from that shape, if it trains.
    pub memory: Option<crate::memory::MemoryRule>,
    /// The processes it launches beside itself (a distributed trainer), if any: what its
    /// machine, or its cluster allocation, must give.
    pub processes: Option<Processes>,
}

/// Processes a node launches over one or more machines (one per device on a GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processes {
    /// Machines.
    pub nodes: u32,
    /// Processes on each machine.
    pub per_node: u32,
    /// One GPU per process (else one CPU core per process).
    pub gpus: bool,
}

impl Signature {
    /// An empty signature.
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a required input.
    pub fn input(mut self, name: &str, ty: PortType) -> Self {
        self.inputs.push(InputPort {
            name: name.to_owned(),
            ty,
            optional: false,
        });
        self
    }
    /// Add an optional input.
    pub fn optional_input(mut self, name: &str, ty: PortType) -> Self {
        self.inputs.push(InputPort {
            name: name.to_owned(),
            ty,
            optional: true,
        });
        self
    }
    /// Add an output.
    pub fn output(mut self, name: &str, ty: PortType) -> Self {
        self.outputs.push(OutputPort {
            name: name.to_owned(),
            ty,
        });
        self
    }
    /// Declare that the node reads `path` (relative to the workflow's folder), named by
    /// param `param`: `validate` warns when it does not exist.
    pub fn reads_local(mut self, param: &str, path: &str) -> Self {
        self.local_files.push(LocalFile {
            param: param.to_owned(),
            path: path.to_owned(),
        });
        self
    }
    /// Say where the shape of the model this node outputs or trains comes from.
    pub fn model(mut self, source: crate::memory::ModelSource) -> Self {
        self.model = Some(source);
        self
    }
    /// Plan this node's peak memory with `rule` (from its [`model`](Self::model)'s shape).
    pub fn memory(mut self, rule: crate::memory::MemoryRule) -> Self {
        self.memory = Some(rule);
        self
    }
    /// Say that it launches `processes` beside itself.
    pub fn processes(mut self, processes: Processes) -> Self {
        self.processes = Some(processes);
        self
    }
    /// Accept inputs of any name with type `ty`.
    pub fn extra_inputs(mut self, ty: PortType) -> Self {
        self.extra_inputs = Some(ty);
        self
    }
    /// The declared type of input `name`, if the plugin accepts it.
    pub fn input_type(&self, name: &str) -> Option<&PortType> {
        self.inputs
            .iter()
            .find(|p| p.name == name)
            .map(|p| &p.ty)
            .or(self.extra_inputs.as_ref())
    }
    /// The declared type of output `name`.
    pub fn output_type(&self, name: &str) -> Option<&PortType> {
        self.outputs.iter().find(|p| p.name == name).map(|p| &p.ty)
    }
}

/// A file or folder outside the store that a node reads, as its params name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    /// The param that names it (a dotted path under the node's `params:`).
    pub param: String,
    /// The path as written: relative to the workflow's folder, or absolute.
    pub path: String,
}

/// A named input of a node.
#[derive(Debug, Clone)]
pub struct InputPort {
    /// Input name, as written under the node's `inputs:`.
    pub name: String,
    /// What the input must be.
    pub ty: PortType,
    /// Whether a workflow may leave it unconnected.
    pub optional: bool,
}

/// A named output of a node.
#[derive(Debug, Clone)]
pub struct OutputPort {
    /// Output name, as referenced by `from: node.output`.
    pub name: String,
    /// What the output is.
    pub ty: PortType,
}

/// What flows through a port.
#[derive(Debug, Clone, PartialEq)]
pub enum PortType {
    /// An Arrow table, stored as Parquet.
    Table(TableSpec),
    /// A set of files (a model checkpoint folder, say).
    Blobs,
}

impl PortType {
    /// A table with exactly these columns (for outputs) or at least these (for inputs).
    pub fn table(schema: Schema) -> Self {
        Self::Table(TableSpec::Columns(Arc::new(schema)))
    }
    /// A table whose columns are known only at run time (outputs) or not constrained (inputs).
    pub fn any_table() -> Self {
        Self::Table(TableSpec::Any)
    }
}

/// The columns of a table port.
#[derive(Debug, Clone, PartialEq)]
pub enum TableSpec {
    /// No declared columns.
    Any,
    /// Declared columns.
    Columns(SchemaRef),
}

impl fmt::Display for PortType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Blobs => f.write_str("blob set"),
            Self::Table(TableSpec::Any) => f.write_str("table"),
            Self::Table(TableSpec::Columns(s)) => {
                f.write_str("table(")?;
                for (i, field) in s.fields().iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}: {}", field.name(), field.data_type())?;
                }
                f.write_str(")")
            }
        }
    }
}

/// Why a producer's port does not satisfy a consumer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortMismatch {
    /// A table where a blob set is expected, or the other way round.
    #[error("expects a {consumer} but the producer gives a {producer}")]
    Kind {
        /// What the consumer expects.
        consumer: String,
        /// What the producer gives.
        producer: String,
    },
    /// Columns missing or of another type.
    #[error("{}", join(.0))]
    Columns(Vec<ColumnMismatch>),
}

/// One required column that a table does not have as required.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ColumnMismatch {
    /// The column is not there.
    #[error("column `{name}` ({want}) is missing")]
    Missing {
        /// Its name.
        name: String,
        /// The type required.
        want: DataType,
    },
    /// The column has another type.
    #[error("column `{name}` is {have} but {want} is expected")]
    Type {
        /// Its name.
        name: String,
        /// The type it has.
        have: DataType,
        /// The type required.
        want: DataType,
    },
}

fn join(problems: &[ColumnMismatch]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Check that what a producer declares satisfies what a consumer requires.
///
/// A consumer's table columns must all be present in the producer's declaration with the
/// same Arrow type; extra producer columns are allowed. Nullability is not compared (a
/// nullable column may hold no null): consumers handle nulls or fail on them. A producer without declared columns passes
/// here and is checked when its table is read.
pub fn check_compatible(consumer: &PortType, producer: &PortType) -> Result<(), PortMismatch> {
    match (consumer, producer) {
        (PortType::Blobs, PortType::Blobs) => Ok(()),
        (PortType::Table(_), PortType::Blobs) | (PortType::Blobs, PortType::Table(_)) => {
            Err(PortMismatch::Kind {
                consumer: consumer.to_string(),
                producer: producer.to_string(),
            })
        }
        (PortType::Table(TableSpec::Any), _) | (_, PortType::Table(TableSpec::Any)) => Ok(()),
        (PortType::Table(TableSpec::Columns(want)), PortType::Table(TableSpec::Columns(have))) => {
            check_schema(want, have)
        }
    }
}

/// Check that the table schema `have` satisfies the required columns `want`.
pub fn check_schema(want: &Schema, have: &Schema) -> Result<(), PortMismatch> {
    let mut problems = Vec::new();
    for field in want.fields() {
        match have.field_with_name(field.name()) {
            Err(_) => problems.push(ColumnMismatch::Missing {
                name: field.name().clone(),
                want: field.data_type().clone(),
            }),
            Ok(got) if got.data_type() != field.data_type() => {
                problems.push(ColumnMismatch::Type {
                    name: field.name().clone(),
                    have: got.data_type().clone(),
                    want: field.data_type().clone(),
                });
            }
            Ok(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PortMismatch::Columns(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;

    fn table(cols: &[(&str, DataType, bool)]) -> PortType {
        PortType::table(Schema::new(
            cols.iter()
                .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
                .collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn subset_of_columns_is_compatible() {
        let want = table(&[("x", DataType::Int64, false)]);
        let have = table(&[("x", DataType::Int64, false), ("y", DataType::Utf8, true)]);
        assert_eq!(check_compatible(&want, &have), Ok(()));
    }

    #[test]
    fn mismatches_are_named() {
        let want = table(&[("x", DataType::Int64, false), ("z", DataType::Utf8, true)]);
        let have = table(&[("x", DataType::Float64, false)]);
        let err = check_compatible(&want, &have).unwrap_err().to_string();
        assert!(
            err.contains("column `x` is Float64 but Int64 is expected"),
            "{err}"
        );
        assert!(err.contains("column `z` (Utf8) is missing"), "{err}");
        let err = check_compatible(&PortType::Blobs, &have)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expects a blob set"), "{err}");
    }
}
