//! `filter` against the shared conformance suite: the warm-start share of demonstrations,
//! drawn twice with the same seed, is the same table.

#![allow(clippy::unwrap_used)]

use scorch_agent::oracle::demonstration_rows;
use scorch_agent::suite::{Split, tasks};
use scorch_api::conformance::{Case, check_plugin};
use scorch_api::testing::TestInput;
use scorch_filter::Filter;
use scorch_tables::{TableRow, Trajectory};

#[tokio::test]
async fn filter_conforms() {
    let demos = TestInput::Table(vec![
        Trajectory::to_batch(&demonstration_rows(&tasks(0, Split::Train, 0, 20))).unwrap(),
    ]);
    let r = check_plugin(
        &Filter,
        &[Case::new(
            "warm start",
            serde_json::json!({"mode": "warm_start", "warm_share": 0.5}),
        )
        .input("trajectories", demos)],
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
}
