//! The `exec` plugin against the shared conformance suite, with a real interpreter.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use scorch_api::conformance::{Case, check_plugin};
use scorch_api::reexports::arrow_array::{Int64Array, RecordBatch};
use scorch_api::reexports::arrow_schema::{DataType, Field, Schema};
use scorch_api::testing::{RunOptions, TestInput, run_plugin};
use scorch_api::{DynPlugin, PluginErrorKind};
use scorch_exec::Exec;

fn table() -> TestInput {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    TestInput::Table(vec![
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2, 3]))]).unwrap(),
    ])
}

#[tokio::test]
async fn exec_conforms() {
    let copy = serde_json::json!({
        "command": ["cp", "{inputs.rows}", "{outputs.table}"],
        "outputs": {"table": {"type": "table", "columns": {"x": "int64"}}}
    });
    let blobs = serde_json::json!({
        "command": ["python3", "-c", "import os,sys; open(os.path.join(sys.argv[1], 'seed.txt'), 'w').write(os.environ['SCORCH_SEED'])", "{outputs.notes}"],
        "outputs": {"notes": {"type": "blobs"}}
    });
    let report = check_plugin(
        &Exec,
        &[
            Case::new("copy", copy).input("rows", table()),
            Case::new("blobs", blobs),
        ],
    )
    .await;
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test]
async fn a_cancelled_command_is_killed_promptly() {
    let params = serde_json::json!({"command": ["sleep", "30"]});
    let start = std::time::Instant::now();
    let opts = RunOptions {
        cancelled: true,
        ..Default::default()
    };
    let err = run_plugin(&Exec, &params, BTreeMap::new(), opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind, PluginErrorKind::Cancelled);
    assert!(start.elapsed().as_secs() < 5);
}

#[tokio::test]
async fn timeouts_and_exit_codes_become_errors_with_the_output_tail() {
    let params = serde_json::json!({"command": ["sleep", "10"], "timeout_s": 0.2});
    let err = run_plugin(&Exec, &params, BTreeMap::new(), RunOptions::default())
        .await
        .unwrap_err();
    assert!(err.message.contains("ran past its"), "{err}");
    let params = serde_json::json!({"command": ["python3", "-c", "import sys; print('oops on stdout'); sys.exit(4)"]});
    let err = run_plugin(&Exec, &params, BTreeMap::new(), RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.message.contains("exit status: 4") && err.message.contains("oops on stdout"),
        "{err}"
    );
    let params = serde_json::json!({"command": ["no-such-program-xyz"]});
    let err = run_plugin(&Exec, &params, BTreeMap::new(), RunOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.message.contains("cannot start `no-such-program-xyz`"),
        "{err}"
    );
}

#[test]
fn params_are_checked() {
    let bad = serde_json::json!({"command": ["x"], "outputs": {"m": {"type": "blobs", "columns": {"a": "int64"}}}});
    let err = Exec.check(&bad).unwrap_err();
    assert_eq!(err.path, "outputs.m.columns");
    let bad = serde_json::json!({"command": ["x"], "outputs": {"t": {"type": "tabel"}}});
    let err = Exec.check(&bad).unwrap_err();
    assert!(err.message.contains("unknown variant `tabel`"), "{err}");
    assert_eq!(err.hint.as_deref(), Some("did you mean `table`?"));
}
