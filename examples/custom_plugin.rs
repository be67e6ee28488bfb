//! How to write a node plugin: a `word_count` kind that counts the words of a text column.
//!
//! A plugin crate depends on `scorch-api` only. Run this example with
//! `cargo run --example custom_plugin`: it runs the plugin on a small table and then runs the
//! shared conformance suite on it. To make the kind available in workflows, register it in
//! the binary's registry (`src/builtin.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use scorch_api::conformance::{Case, check_plugin};
use scorch_api::reexports::arrow_array::{Array, Int64Array, RecordBatch, StringArray};
use scorch_api::reexports::arrow_schema::{DataType, Field, Schema};
use scorch_api::reexports::{async_trait, schemars};
use scorch_api::testing::{RunOptions, TestInput, run_plugin};
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, PortType, Signature};
use serde::{Deserialize, Serialize};

/// The plugin: a unit struct; configuration lives in `Params`.
struct WordCount;

/// Typed params: unknown fields are rejected, defaults are filled in, and the canonical
/// serialisation is what enters the cache key.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The text column to count.
    #[serde(default = "default_column")]
    column: String,
}

fn default_column() -> String {
    "text".into()
}

fn output_schema() -> Schema {
    Schema::new(vec![Field::new("words", DataType::Int64, false)])
}

#[async_trait]
impl Plugin for WordCount {
    type Params = Params;
    fn kind(&self) -> &'static str {
        "word_count"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "Counts the words of a text column, row by row"
    }
    fn signature(&self, p: &Params) -> Result<Signature, ParamError> {
        // Inputs declare the columns they need; the engine checks producers against them.
        let input = PortType::table(Schema::new(vec![Field::new(
            &p.column,
            DataType::Utf8,
            true,
        )]));
        Ok(Signature::new()
            .input("table", input)
            .output("counts", PortType::table(output_schema())))
    }
    async fn run(&self, p: Params, ctx: &NodeContext) -> Result<(), PluginError> {
        let batches = ctx.table("table")?.read_all().await?;
        let mut writer = ctx.table_writer("counts")?;
        for batch in batches {
            ctx.check_cancelled()?;
            let text = batch
                .column_by_name(&p.column)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| PluginError::failed(format!("column `{}` is not text", p.column)))?;
            let counts: Int64Array = (0..text.len())
                .map(|i| {
                    if text.is_null(i) {
                        0
                    } else {
                        text.value(i).split_whitespace().count() as i64
                    }
                })
                .collect::<Vec<_>>()
                .into();
            let out = RecordBatch::try_new(Arc::new(output_schema()), vec![Arc::new(counts)])
                .map_err(|e| PluginError::failed(e.to_string()))?;
            writer.write(&out)?;
        }
        writer.finish()?;
        Ok(())
    }
}

fn sample() -> TestInput {
    let schema = Arc::new(Schema::new(vec![Field::new("text", DataType::Utf8, true)]));
    let text = StringArray::from(vec![Some("the student repairs"), None, Some("one step")]);
    TestInput::Table(vec![
        RecordBatch::try_new(schema, vec![Arc::new(text)]).expect("batch"),
    ])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inputs = BTreeMap::from([("table".to_owned(), sample())]);
    let out = run_plugin(
        &WordCount,
        &serde_json::json!({}),
        inputs,
        RunOptions::default(),
    )
    .await?;
    let counts = &out.tables["counts"][0];
    println!("word counts: {:?}", counts.column(0));
    let report = check_plugin(
        &WordCount,
        &[Case::new("sample", serde_json::json!({})).input("table", sample())],
    )
    .await;
    if report.is_ok() {
        println!("conformance: ok");
        Ok(())
    } else {
        Err(format!("conformance failures: {:?}", report.failures).into())
    }
}
