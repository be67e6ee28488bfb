//! The contract of a table's rows: a row type of a table kind gives its Arrow schema (traced
//! from the type), its port type, and conversions to and from record batches. The row types
//! SCoRe's nodes exchange are in the `scorch-tables` crate.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, FieldRef, Schema, SchemaRef};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_arrow::schema::{SchemaLike, TracingOptions};

use crate::port::PortType;
use crate::{PluginError, PluginErrorKind};

/// A row type of a table kind.
pub trait TableRow: Serialize + DeserializeOwned + JsonSchema + Send + Sync + Sized {
    /// The table kind (`tasks`, `trajectories`, ...).
    const KIND: &'static str;

    /// The Arrow fields of the table, traced from the row type.
    fn fields() -> Vec<FieldRef> {
        let options = TracingOptions::default()
            .enums_without_data_as_strings(true)
            .string_dictionary_encoding(false)
            .strings_as_large_utf8(false)
            .sequence_as_large_list(false);
        let fields = Vec::<FieldRef>::from_type::<Self>(options).unwrap_or_default();
        fields.iter().map(|f| Arc::new(plain_strings(f))).collect()
    }
    /// The Arrow schema.
    fn schema() -> SchemaRef {
        Arc::new(Schema::new(Self::fields()))
    }
    /// The port type of a table of these rows.
    fn port() -> PortType {
        PortType::table(Schema::new(Self::fields()))
    }
    /// Rows to a record batch.
    fn to_batch(rows: &[Self]) -> Result<RecordBatch, PluginError> {
        Self::to_batch_with(&Self::fields(), rows)
    }
    /// Rows to a record batch with the already traced [`TableRow::fields`] (serde_arrow unless
    /// a table kind builds its columns itself).
    fn to_batch_with(fields: &[FieldRef], rows: &[Self]) -> Result<RecordBatch, PluginError> {
        serde_arrow::to_record_batch(fields, &rows).map_err(|e| {
            PluginError::new(
                PluginErrorKind::Output,
                format!("{} rows to Arrow: {e}", Self::KIND),
            )
        })
    }
    /// A record batch to rows.
    fn from_batch(batch: &RecordBatch) -> Result<Vec<Self>, PluginError> {
        serde_arrow::from_record_batch(batch).map_err(|e| {
            PluginError::new(
                PluginErrorKind::Input,
                format!("Arrow to {} rows: {e}", Self::KIND),
            )
        })
    }
    /// The JSON Schema of one row.
    fn row_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Self)).unwrap_or_default()
    }
}

/// Enum columns as plain strings instead of dictionaries, so that any tool writes them easily.
fn plain_strings(field: &Field) -> Field {
    let ty = match field.data_type() {
        DataType::Dictionary(_, value) => value.as_ref().clone(),
        DataType::List(item) => DataType::List(Arc::new(plain_strings(item))),
        DataType::Struct(children) => DataType::Struct(
            children
                .iter()
                .map(|c| Arc::new(plain_strings(c)))
                .collect(),
        ),
        other => other.clone(),
    };
    field.clone().with_data_type(ty)
}
