//! Parquet writing benchmark (not a timed test): scorch against pyarrow on the same tables,
//! in one run. Prints a Markdown table for BENCHMARKS.md. Run with
//! `cargo bench -p scorch-agent --bench parquet`.
//!
//! Tables: 200,000 tasks of the built-in suite (`train`, seed 0) and the oracle teacher's
//! demonstrations of the first 100,000 of them. Both sides write the same rows to a Parquet file
//! with Snappy: scorch from its row types (`RowWriter`: rows → Arrow → Parquet), pyarrow
//! (`pq.write_table`) from an Arrow table already in memory, so pyarrow's figure leaves out
//! any conversion. The two alternate for several rounds; each side's median per round, the
//! median round, and the range of the per-round ratios; and the CPU time per write (all
//! threads) of each side, the median over rounds.

// The allocator and settings of scorch's binaries, so the figures are theirs.
#[global_allocator]
static ALLOCATOR: scorch_alloc::Allocator = scorch_alloc::Allocator;

use std::process::Command;
use std::time::Instant;

use scorch_agent::oracle;
use scorch_agent::suite::{self, Split};
use scorch_api::RowWriter;
use scorch_api::parquet_io::read_rows;
use scorch_tables::{Task, Trajectory};

const TASKS: usize = 200_000;
const TRAJECTORIES: usize = 100_000;
const REPS: usize = 5;
const ROUNDS: usize = 5;

fn tasks() -> Vec<Task> {
    suite::tasks(0, Split::Train, 0, TASKS as u64)
}

fn trajectories(tasks: &[Task]) -> Vec<Trajectory> {
    oracle::demonstration_rows(&tasks[..TRAJECTORIES])
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// CPU time of this process so far (every thread, the finished ones too), in ms: user and
/// system ticks of `/proc/self/stat` (Linux counts them in 1/100 s).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (fields[11] + fields[12]) * 10.0
}

/// The median wall time of a write and the mean CPU time per write, in ms.
fn time_scorch<T: scorch_tables::TableRow>(rows: &[T], path: &std::path::Path) -> (f64, f64) {
    let mut times = Vec::new();
    let cpu = cpu_ms();
    for _ in 0..REPS {
        let t = Instant::now();
        let mut w = RowWriter::<T>::create(path).expect("create");
        w.write_all(rows).expect("write");
        w.finish().expect("finish");
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (median(times), (cpu_ms() - cpu) / REPS as f64)
}

/// The median wall time of a write and the mean CPU time per write, in ms.
fn time_pyarrow(source: &std::path::Path, out: &std::path::Path) -> (f64, f64) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pyarrow_baseline.py");
    let o = Command::new("python3")
        .arg(script)
        .arg(source)
        .arg(out)
        .arg(REPS.to_string())
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "pyarrow baseline failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let printed = String::from_utf8_lossy(&o.stdout);
    let mut figures = printed
        .split_whitespace()
        .map(|f| f.parse::<f64>().expect("a figure in ms"));
    (
        figures.next().expect("the median wall time"),
        figures.next().expect("the CPU time"),
    )
}

fn compare<T: scorch_tables::TableRow>(name: &str, rows: &[T], dir: &std::path::Path) -> String {
    let source = dir.join(format!("{name}.parquet"));
    scorch_api::parquet_io::write_rows(&source, rows).expect("source");
    let back: Vec<T> = read_rows(&source).expect("read back");
    assert_eq!(back.len(), rows.len());
    let bytes = std::fs::metadata(&source).map(|m| m.len()).unwrap_or(0);
    let out = dir.join(format!("{name}-out.parquet"));
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut our_cpu, mut their_cpu) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let ((s, sc), (p, pc)) = if round % 2 == 0 {
            let s = time_scorch(rows, &out);
            (s, time_pyarrow(&source, &out))
        } else {
            let p = time_pyarrow(&source, &out);
            (time_scorch(rows, &out), p)
        };
        eprintln!(
            "{name} round {round}: scorch {s:.0} ms ({sc:.0} ms CPU), pyarrow {p:.0} ms ({pc:.0} ms CPU)"
        );
        ours.push(s);
        theirs.push(p);
        ratios.push(p / s);
        our_cpu.push(sc);
        their_cpu.push(pc);
    }
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(0.0, f64::max);
    format!(
        "| {name}, {} rows, {:.0} MB file | {:.0} ms | {:.0} ms | {:.2}x ({lo:.2}–{hi:.2}) | {:.0} / {:.0} ms |",
        rows.len(),
        bytes as f64 / 1e6,
        median(ours),
        median(theirs),
        median(ratios),
        median(our_cpu),
        median(their_cpu),
    )
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tasks = tasks();
    let trajectories = trajectories(&tasks);
    let rows = [
        compare("tasks", &tasks, dir.path()),
        compare("trajectories", &trajectories, dir.path()),
    ];
    println!(
        "| table | scorch (rows → file) | pyarrow (Arrow table → file) | pyarrow / scorch (range) | CPU per write, scorch / pyarrow |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
