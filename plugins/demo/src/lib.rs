//! Small table plugins for demos, engine tests and benchmarks.
//!
//! - `numbers`: a table of `n` integers `x = start + i * step`.
//! - `affine`: `x -> clamp(scale * x + offset)`, row by row.
//! - `total`: the row count and sum of `x`, as a table and as a JSON report (a blob set).
#![deny(missing_docs)]

use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use futures::StreamExt;
use schemars::JsonSchema;
use scorch_api::reexports::async_trait;
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, PortType, Registry, Signature};
use serde::{Deserialize, Serialize};

fn numbers_schema() -> Schema {
    Schema::new(vec![
        Field::new("i", DataType::Int64, false),
        Field::new("x", DataType::Int64, false),
    ])
}

fn total_schema() -> Schema {
    Schema::new(vec![
        Field::new("rows", DataType::Int64, false),
        Field::new("sum", DataType::Int64, false),
    ])
}

fn x_input() -> PortType {
    PortType::table(Schema::new(vec![Field::new("x", DataType::Int64, false)]))
}

fn failed(e: impl std::fmt::Display) -> PluginError {
    PluginError::failed(e.to_string())
}

/// Sleep `ms` milliseconds, or return early with a cancellation.
async fn pause(ctx: &NodeContext, ms: u64) -> Result<(), PluginError> {
    if ms == 0 {
        return ctx.check_cancelled();
    }
    tokio::select! {
        () = tokio::time::sleep(std::time::Duration::from_millis(ms)) => Ok(()),
        () = ctx.cancellation().cancelled() => Err(PluginError::cancelled()),
    }
}

/// The `numbers` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Numbers;

/// Params of `numbers`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NumbersParams {
    /// How many rows.
    #[serde(default = "ten")]
    pub n: u64,
    /// The first value.
    #[serde(default)]
    pub start: i64,
    /// The difference between consecutive values.
    #[serde(default = "one")]
    pub step: i64,
    /// Simulated work, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

fn ten() -> u64 {
    10
}
fn one() -> i64 {
    1
}

#[async_trait]
impl Plugin for Numbers {
    type Params = NumbersParams;
    fn kind(&self) -> &'static str {
        "numbers"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "A table of n integers x = start + i * step"
    }
    fn signature(&self, params: &NumbersParams) -> Result<Signature, ParamError> {
        if params.n > 10_000_000 {
            return Err(ParamError::new(
                "n",
                format!("{} rows is more than the 10,000,000 allowed", params.n),
            ));
        }
        Ok(Signature::new().output("table", PortType::table(numbers_schema())))
    }
    async fn run(&self, p: NumbersParams, ctx: &NodeContext) -> Result<(), PluginError> {
        pause(ctx, p.delay_ms).await?;
        let n = i64::try_from(p.n).map_err(failed)?;
        let i: Vec<i64> = (0..n).collect();
        let x: Vec<i64> = i
            .iter()
            .map(|i| p.start.wrapping_add(i.wrapping_mul(p.step)))
            .collect();
        let batch = RecordBatch::try_new(
            Arc::new(numbers_schema()),
            vec![Arc::new(Int64Array::from(i)), Arc::new(Int64Array::from(x))],
        )
        .map_err(failed)?;
        let mut w = ctx.table_writer("table")?;
        w.write(&batch)?;
        w.finish()?;
        ctx.metric("rows", p.n as f64);
        Ok(())
    }
}

/// The `affine` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Affine;

/// Params of `affine`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AffineParams {
    /// Multiplier.
    #[serde(default = "one")]
    pub scale: i64,
    /// Added after scaling.
    #[serde(default)]
    pub offset: i64,
    /// Results above this are set to it.
    #[serde(default)]
    pub max: Option<i64>,
    /// Simulated work, in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

#[async_trait]
impl Plugin for Affine {
    type Params = AffineParams;
    fn kind(&self) -> &'static str {
        "affine"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "Maps column x to min(scale * x + offset, max)"
    }
    fn signature(&self, _: &AffineParams) -> Result<Signature, ParamError> {
        Ok(Signature::new()
            .input("table", x_input())
            .output("table", PortType::table(numbers_schema())))
    }
    async fn run(&self, p: AffineParams, ctx: &NodeContext) -> Result<(), PluginError> {
        pause(ctx, p.delay_ms).await?;
        let input = ctx.table("table")?;
        let batches = input.read_all().await?;
        let mut w = ctx.table_writer("table")?;
        let mut row = 0i64;
        for b in batches {
            let x = column(&b, "x")?;
            let i: Int64Array = (row..row + x.len() as i64).collect::<Vec<_>>().into();
            row += x.len() as i64;
            let y: Int64Array = x
                .iter()
                .map(|v| {
                    v.map(|v| {
                        let y = v.wrapping_mul(p.scale).wrapping_add(p.offset);
                        p.max.map_or(y, |m| y.min(m))
                    })
                })
                .collect();
            let out =
                RecordBatch::try_new(Arc::new(numbers_schema()), vec![Arc::new(i), Arc::new(y)])
                    .map_err(failed)?;
            w.write(&out)?;
        }
        w.finish()?;
        Ok(())
    }
}

fn column<'a>(b: &'a RecordBatch, name: &str) -> Result<&'a Int64Array, PluginError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| failed(format!("column `{name}` is missing or not int64")))
}

/// The `total` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Total;

/// Params of `total`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TotalParams {
    /// A label written into the report.
    #[serde(default)]
    pub label: String,
}

#[async_trait]
impl Plugin for Total {
    type Params = TotalParams;
    fn kind(&self) -> &'static str {
        "total"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "The row count and sum of column x, as a table and a JSON report"
    }
    fn signature(&self, _: &TotalParams) -> Result<Signature, ParamError> {
        Ok(Signature::new()
            .input("table", x_input())
            .output("table", PortType::table(total_schema()))
            .output("report", PortType::Blobs))
    }
    async fn run(&self, p: TotalParams, ctx: &NodeContext) -> Result<(), PluginError> {
        let mut stream = ctx.table("table")?.stream().await?;
        let (mut rows, mut sum) = (0i64, 0i64);

        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let x = column(&batch, "x")?;
            rows += x.len() as i64;
            sum = x.iter().flatten().fold(sum, i64::wrapping_add);
        }
        let out = RecordBatch::try_new(
            Arc::new(total_schema()),
            vec![
                Arc::new(Int64Array::from(vec![rows])),
                Arc::new(Int64Array::from(vec![sum])),
            ],
        )
        .map_err(failed)?;
        let mut w = ctx.table_writer("table")?;
        w.write(&out)?;
        w.finish()?;
        let dir = ctx.blob_dir("report")?;
        let report = format!(
            "{{\"label\":{:?},\"rows\":{rows},\"sum\":{sum}}}\n",
            p.label
        );
        std::fs::write(dir.join("report.json"), report)
            .map_err(|e| PluginError::io("writing report.json", e))?;
        ctx.metric("sum", sum as f64);
        Ok(())
    }
}

/// Register the demo plugins.
pub fn register(registry: Registry) -> Registry {
    registry.with(Numbers).with(Affine).with(Total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scorch_api::conformance::{Case, check_plugin};
    use scorch_api::testing::TestInput;

    fn xs(v: Vec<i64>) -> TestInput {
        let n = v.len() as i64;
        TestInput::Table(vec![
            RecordBatch::try_new(
                Arc::new(numbers_schema()),
                vec![
                    Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())),
                    Arc::new(Int64Array::from(v)),
                ],
            )
            .unwrap(),
        ])
    }

    #[tokio::test]
    async fn demo_plugins_conform() {
        let r = check_plugin(
            &Numbers,
            &[
                Case::new("default", serde_json::json!({})),
                Case::new("n5", serde_json::json!({"n": 5, "step": 3})),
            ],
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        let r = check_plugin(
            &Affine,
            &[Case::new("x2", serde_json::json!({"scale": 2, "max": 7}))
                .input("table", xs(vec![1, 2, 5]))],
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        let r = check_plugin(
            &Total,
            &[Case::new("sum", serde_json::json!({"label": "t"}))
                .input("table", xs(vec![1, 2, 5]))],
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
    }

    #[tokio::test]
    async fn affine_maps_and_clamps() {
        let mut inputs = std::collections::BTreeMap::new();
        inputs.insert("table".to_owned(), xs(vec![1, 2, 5]));
        let out = scorch_api::testing::run_plugin(
            &Affine,
            &serde_json::json!({"scale": 2, "offset": 1, "max": 9}),
            inputs,
            Default::default(),
        )
        .await
        .unwrap();
        let b = &out.tables["table"][0];
        assert_eq!(column(b, "x").unwrap().values().to_vec(), vec![3, 5, 9]);
    }
}
