//! Engine benchmark (not a timed test): validate + plan of a generated 10,000-node DAG, and a
//! fully cached rerun of a generated 200-node DAG. Prints a Markdown table; the figures are
//! copied into BENCHMARKS.md. Run with `cargo bench -p scorch-engine --bench engine`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use scorch_engine::plan::plan;
use scorch_engine::progress::{Mode, Reporter};
use scorch_engine::run::{RunOptions, run};
use scorch_engine::store::Store;
use scorch_engine::workflow::{LoadOptions, load};
use tokio_util::sync::CancellationToken;

/// A tree: one `numbers` root, then `affine` nodes each reading node (i-1)/2, and every
/// tenth node summed by a `total`.
fn generate(n: usize) -> String {
    let mut y = String::from("name: generated\nnodes:\n  n0: {kind: numbers, params: {n: 64}}\n");
    for i in 1..n {
        let parent = (i - 1) / 2;
        if i % 10 == 0 {
            let _ = writeln!(
                y,
                "  n{i}: {{kind: total, params: {{label: n{i}}}, inputs: {{table: {{from: n{parent}.table}}}}}}"
            );
        } else {
            let parent = if parent % 10 == 0 && parent != 0 {
                parent - 1
            } else {
                parent
            };
            let _ = writeln!(
                y,
                "  n{i}: {{kind: affine, params: {{scale: {}, offset: {i}}}, inputs: {{table: {{from: n{parent}.table}}}}}}",
                i % 7 + 1
            );
        }
    }
    y
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The demo kinds only: the engine is measured without any ML crate.
    let registry = scorch_demo::register(scorch_api::Registry::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rows = Vec::new();

    // 10,000 nodes: validate, then plan against an empty local store.
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, generate(10_000)).expect("write");
    let mut validate = Vec::new();
    let mut plan_t = Vec::new();
    let store = Store::open("file://store-big", dir.path()).expect("store");
    for _ in 0..3 {
        let t = Instant::now();
        let wf = load(&big, &registry, &LoadOptions::default()).expect("valid");
        validate.push(t.elapsed());
        let t = Instant::now();
        let entries = rt
            .block_on(plan(&wf, &store, &RunOptions::default()))
            .expect("plan");
        plan_t.push(t.elapsed());
        assert_eq!(entries.len(), 10_000);
    }
    rows.push(("validate, 10,000-node DAG", median(validate)));
    rows.push(("plan, 10,000-node DAG (empty local store)", median(plan_t)));

    // 200 nodes: a cold run, then fully cached reruns.
    let small = dir.path().join("small.yaml");
    std::fs::write(&small, generate(200)).expect("write");
    let wf = load(&small, &registry, &LoadOptions::default()).expect("valid");
    let store = Store::open("file://store-small", dir.path()).expect("store");
    let reporter = Reporter::new(Mode::Quiet);
    let opts = RunOptions {
        jobs: 2,
        ..RunOptions::default()
    };
    let t = Instant::now();
    let rec = rt
        .block_on(run(&wf, &store, &opts, CancellationToken::new(), &reporter))
        .expect("run");
    let cold = t.elapsed();
    assert_eq!(rec.count(scorch_engine::record::Outcome::Ran), 200);
    let mut cached = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let rec = rt
            .block_on(run(&wf, &store, &opts, CancellationToken::new(), &reporter))
            .expect("run");
        cached.push(t.elapsed());
        assert_eq!(rec.count(scorch_engine::record::Outcome::Cached), 200);
    }
    rows.push(("cold run, 200-node DAG (-j 2, local store)", cold));
    rows.push((
        "fully cached rerun, 200-node DAG (local store)",
        median(cached),
    ));

    println!("| benchmark | median wall time |\n|---|---|");
    for (name, d) in &rows {
        println!("| {name} | {:.1} ms |", d.as_secs_f64() * 1000.0);
    }
}
