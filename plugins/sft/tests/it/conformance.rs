//! `sft` against the shared conformance suite: from scratch and from a checkpoint, in float32
//! and in mixed precision, two runs on the same demonstrations and seed write the same
//! checkpoint bytes.

#![allow(clippy::unwrap_used)]

use scorch_agent::oracle::demonstration_rows;
use scorch_agent::suite::{Split, tasks};
use scorch_api::conformance::{Case, check_plugin};
use scorch_model::testing::{table, tiny_student};
use scorch_sft::Sft;

#[tokio::test]
async fn sft_conforms() {
    let demos = demonstration_rows(&tasks(0, Split::Train, 0, 8));
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_student(&demos, dir.path()).unwrap();
    let init = serde_json::json!({
        "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 64
    });
    let r = check_plugin(
        &Sft,
        &[
            Case::new(
                "from scratch",
                serde_json::json!({"steps": 3, "batch_size": 4, "init": init}),
            )
            .input("trajectories", table(&demos).unwrap()),
            Case::new(
                "from a checkpoint",
                serde_json::json!({"steps": 2, "batch_size": 4, "lr": 0.0005}),
            )
            .input("trajectories", table(&demos).unwrap())
            .input("model", model.clone()),
            Case::new(
                "from a checkpoint in bf16",
                serde_json::json!({"steps": 2, "batch_size": 4, "precision": "bf16"}),
            )
            .input("trajectories", table(&demos).unwrap())
            .input("model", model),
        ],
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn precision_auto_is_left_out_of_the_canonical_params() {
    use scorch_api::DynPlugin;
    let auto = Sft
        .check(&serde_json::json!({"precision": "auto"}))
        .unwrap();
    let unset = Sft.check(&serde_json::json!({})).unwrap();
    assert_eq!(auto.params, unset.params);
    assert!(unset.params.get("precision").is_none());
    let bf16 = Sft
        .check(&serde_json::json!({"precision": "bf16"}))
        .unwrap();
    assert_eq!(bf16.params["precision"], "bf16");
    let err = Sft
        .check(&serde_json::json!({"precision": "fp16"}))
        .unwrap_err();
    assert_eq!(err.path, "precision");
}
