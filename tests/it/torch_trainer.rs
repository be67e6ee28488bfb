//! `sft` with `trainer: {kind: torch}`: PyTorch (the pip wheel's, under its own `torchrun`
//! and HF Accelerate's `accelerate launch`) trains the smoke profile's student on the same
//! encoded steps as the embedded trainer. One process, two over gloo with DDP, two with FSDP,
//! two with DeepSpeed ZeRO-3 and two under Accelerate give the embedded trainer's loss curve; the checkpoint evaluates
//! in `eval` and answers through `scorch serve`.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{Project, text};
use scorch_api::parquet_io::read_rows;
use scorch_tables::{EvalResult, TrainStep};

/// score.yaml's smoke-profile student (hidden 32, one layer, two heads), trained from scratch
/// on the oracle's demonstrations; micro-batches of at most 400 tokens, so that a step has
/// several and the processes share them.
fn workflow() -> String {
    let student = r#"
      steps: 12
      batch_size: 8
      micro_batch_tokens: 400
      save_every: 0
      init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}"#;
    let sft = |trainer: &str| {
        format!(
            "    kind: sft\n    params:{student}{trainer}\n    inputs: {{trajectories: {{from: demos.trajectories}}}}\n"
        )
    };
    format!(
        r#"name: trainers
nodes:
  tasks: {{kind: tasks, params: {{split: train, count: 120}}}}
  demos:
    kind: rollout
    params: {{policy: {{kind: oracle}}}}
    inputs: {{tasks: {{from: tasks.tasks}}}}
  embedded:
{}  torch1:
{}  ddp2:
{}  fsdp2:
{}  accelerate2:
{}  zero3:
{}  eval_tasks: {{kind: tasks, params: {{split: test, count: 8}}}}
  eval_ddp2:
    kind: eval
    params: {{label: ddp2, sampling: {{max_tokens: 32}}}}
    inputs: {{tasks: {{from: eval_tasks.tasks}}, model: {{from: ddp2.checkpoint}}}}
"#,
        sft(""),
        sft("\n      trainer: {kind: torch}"),
        sft("\n      trainer: {kind: torch, processes_per_node: 2}"),
        sft("\n      trainer: {kind: torch, processes_per_node: 2, strategy: fsdp}"),
        sft("\n      trainer: {kind: torch, launcher: accelerate, processes_per_node: 2}"),
        sft("\n      trainer: {kind: torch, processes_per_node: 2, strategy: deepspeed_zero3}"),
    )
}

fn losses(p: &Project, rec: &serde_json::Value, node: &str) -> Vec<f64> {
    let rows: Vec<TrainStep> = read_rows(&common::output_file(
        &p.path().join(".scorch"),
        rec,
        node,
        "loss",
    ))
    .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.step).collect::<Vec<_>>(),
        (0..12).collect::<Vec<_>>()
    );
    rows.iter().map(|r| r.loss).collect()
}

/// The largest relative difference of `a` from `b`, step by step.
fn worst(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs())
        .fold(0.0, f64::max)
}

#[test]
fn one_process_two_over_ddp_fsdp_deepspeed_and_accelerate_give_the_embedded_loss_curve() {
    let p = Project::new();
    p.write("wf.yaml", &workflow());
    let rec = p.run_json(&["wf.yaml"], 0);
    let embedded = losses(&p, &rec, "embedded");
    let one = losses(&p, &rec, "torch1");
    // It learned: the curve is not flat.
    assert!(embedded[11] < embedded[0] - 0.1, "{embedded:?}");
    eprintln!(
        "one process: at most {:.1e} of the loss from the embedded trainer's",
        worst(&one, &embedded)
    );
    assert!(worst(&one, &embedded) < 0.05, "{one:?} vs {embedded:?}");
    for node in ["ddp2", "fsdp2", "accelerate2", "zero3"] {
        let two = losses(&p, &rec, node);
        eprintln!(
            "{node}: at most {:.1e} of the loss from one process's",
            worst(&two, &one)
        );
        assert!(worst(&two, &one) < 0.02, "{node}: {two:?} vs {one:?}");
    }
    // Its steps reach the run record's metrics as the embedded trainer's do: the same
    // names at the same steps (the per-step live metrics: `resume::a_torch_trainer_...`).
    let names = |node: &str| {
        common::node(&rec, node)["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["name"].as_str().unwrap().to_owned(), m["step"].as_u64()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names("ddp2"), names("embedded"));
    assert!(
        names("ddp2").contains(&("final_loss".to_owned(), None)),
        "{:?}",
        names("ddp2")
    );
    let run = rec["id"].as_str().unwrap();
    // Two processes ran, each with its share of every step's micro-batches.
    for (node, launcher) in [
        ("ddp2", "torch.distributed.run"),
        ("fsdp2", "torch.distributed.run"),
        ("accelerate2", "accelerate.commands.launch"),
        ("zero3", "torch.distributed.run"),
    ] {
        let log = text(&p.scorch(&["logs", run, node]).stdout);
        assert!(log.contains(launcher), "{node}: {log}");
        for rank in ["rank 0 of 2", "rank 1 of 2"] {
            assert!(log.contains(rank), "{node}: {log}");
        }
    }
    // Its checkpoint is a model the rest of scorch uses: `eval` evaluates it ...
    let results: Vec<EvalResult> = read_rows(&common::output_file(
        &p.path().join(".scorch"),
        &rec,
        "eval_ddp2",
        "results",
    ))
    .unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!((results[0].label.as_str(), results[0].n), ("ddp2", 8));
    // ... and `scorch serve` answers with it.
    let out = p.path().join("ddp2");
    let export = p.scorch(&[
        "export",
        &format!("{run}:ddp2.checkpoint"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", text(&export.stderr));
    let folder = common::files_under(&out)
        .into_iter()
        .find(|f| f.ends_with("config.json"))
        .and_then(|f| f.parent().map(std::path::Path::to_path_buf))
        .unwrap();
    let (_server, url, _log) = common::serve(
        p.path(),
        &[
            folder.to_str().unwrap(),
            "--device",
            "cpu",
            "--name",
            "ddp2",
        ],
    );
    let script = r#"
import sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key="unused")
r = client.chat.completions.create(model="ddp2", messages=[{"role": "user", "content": "What is 2 + 4?"}], max_tokens=8, temperature=0)
assert r.usage.completion_tokens >= 1, r
print("answered")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &url])
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("answered"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn processes_the_resources_do_not_give_are_refused_before_anything_runs() {
    let p = Project::new();
    let wf = workflow().replace(
        "      trainer: {kind: torch, processes_per_node: 2}\n    inputs: {trajectories: {from: demos.trajectories}}\n",
        "      trainer: {kind: torch, processes_per_node: 2}\n    inputs: {trajectories: {from: demos.trajectories}}\n    resources: {cpu: 1}\n",
    );
    assert!(wf.contains("resources: {cpu: 1}"));
    p.write("wf.yaml", &wf);
    let out = p.scorch(&["run", "wf.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("nodes.ddp2.resources.cpu")
            && err.contains("launches 2 processes on each machine")
            && err.contains("gives it 1"),
        "{err}"
    );
    // More processes than this run has cores (the local executor's allocation).
    let wf = workflow().replace(
        "processes_per_node: 2, strategy",
        "processes_per_node: 64, strategy",
    );
    p.write("wf.yaml", &wf);
    let out = p.scorch(&["run", "wf.yaml", "--slots", "cpu=2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("fsdp2"), "{}", text(&out.stderr));
    // Several machines need a cluster.
    let wf = workflow().replace("processes_per_node: 2, strategy", "nodes: 2, strategy");
    p.write("wf.yaml", &wf);
    let out = p.scorch(&["validate", "wf.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("executor: slurm"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !p.path().join(".scorch/runs").exists()
            || common::files_under(&p.path().join(".scorch/runs")).is_empty()
    );
}

/// Two steps under `accelerate launch` with a launcher config file at `config`.
const ACCELERATE: &str = r#"
name: launch_config
nodes:
  tasks: {kind: tasks, params: {split: train, count: 16}}
  demos: {kind: rollout, params: {policy: {kind: oracle}}, inputs: {tasks: {from: tasks.tasks}}}
  acc:
    kind: sft
    params:
      steps: 2
      batch_size: 4
      save_every: 0
      init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}
      trainer: {kind: torch, launcher: accelerate, processes_per_node: 2, config: launch/accelerate.yaml}
    inputs: {trajectories: {from: demos.trajectories}}
"#;

#[test]
fn a_launcher_config_is_accelerates_and_must_be_there_before_the_trainer_starts() {
    let p = Project::new();
    // torchrun takes none: bad input, before anything runs.
    p.write("wf.yaml", &ACCELERATE.replace("launcher: accelerate, ", ""));
    let out = p.scorch(&["run", "wf.yaml"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("trainer.config") && err.contains("--config_file"),
        "{err}"
    );
    // Accelerate's, but not there: `validate` warns, and the node fails before it launches.
    p.write("wf.yaml", ACCELERATE);
    let out = p.scorch(&["validate", "wf.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let warned = text(&out.stderr);
    assert!(
        warned.contains("nodes.acc.params.trainer.config")
            && warned.contains("launch/accelerate.yaml"),
        "{warned}"
    );
    let rec = p.run_json(&["wf.yaml"], 1);
    let acc = common::node(&rec, "acc");
    assert_eq!(acc["outcome"], "failed", "{rec}");
    let error = acc["error"].as_str().unwrap();
    assert!(
        error.contains("`trainer.config`: no file")
            && error.contains(
                &p.path()
                    .join("launch/accelerate.yaml")
                    .display()
                    .to_string()
            ),
        "{error}"
    );
    let run = rec["id"].as_str().unwrap();
    let log = text(&p.scorch(&["logs", run, "acc"]).stdout);
    assert!(!log.contains("launching"), "{log}");
    // There: Accelerate reads it (its port `0`: a free one), and the node trains.
    p.write(
        "launch/accelerate.yaml",
        "compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\nnum_processes: 2\nmain_process_port: 0\n",
    );
    let rec = p.run_json(&["wf.yaml"], 0);
    assert_eq!(common::node(&rec, "acc")["outcome"], "ran", "{rec}");
    let run = rec["id"].as_str().unwrap();
    let log = text(&p.scorch(&["logs", run, "acc"]).stdout);
    assert!(
        log.contains("--config_file=") && log.contains("launch/accelerate.yaml"),
        "{log}"
    );
    assert!(!log.contains("--main_process_port"), "{log}");
}

/// The processes whose command line mentions `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// A torch trainer of 2,000 steps (two processes), run in a process group of its own.
const LONG: &str = r#"
name: long
nodes:
  tasks: {kind: tasks, params: {split: train, count: 60}}
  demos:
    kind: rollout
    params: {policy: {kind: oracle}}
    inputs: {tasks: {from: tasks.tasks}}
  long:
    kind: sft
    params:
      steps: 2000
      batch_size: 8
      save_every: 0
      trainer: {kind: torch, processes_per_node: 2}
      init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}
    inputs: {trajectories: {from: demos.trajectories}}
"#;

/// The processes of the trainer of project `p` (torchrun and its two workers): their command
/// lines name the trainer in the project's store.
fn trainers(p: &Project) -> Vec<u32> {
    let needle = p.path().join(".scorch").display().to_string();
    processes_with(&needle)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("torch_trainer.py"))
        })
        .collect()
}

/// `scorch run` of [`LONG`] in a process group of its own, once its trainer is in its steps.
fn long_run(p: &Project) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};
    p.write("wf.yaml", LONG);
    let mut run = p
        .cmd(&["run", "wf.yaml", "--quiet"])
        .process_group(0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while trainers(p).len() < 3 {
        assert!(Instant::now() < deadline, "the trainer never started");
        assert!(run.try_wait().unwrap().is_none(), "the run ended");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    run
}

/// Wait up to 30 s for the trainer's processes to be gone; those left.
fn left_after(p: &Project) -> Vec<u32> {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = trainers(p);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_trainer_whose_node_is_killed_outright_ends_itself() {
    let p = Project::new();
    let mut run = long_run(&p);
    // Kill the node's worker alone (SIGKILL: it cannot stop them itself).
    let workers: Vec<u32> = processes_with("scorch-worker")
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit(')').next().map(str::to_owned))
                .and_then(|rest| rest.split_whitespace().nth(2).map(str::to_owned))
                .is_some_and(|pgid| pgid == run.id().to_string())
        })
        .collect();
    assert_eq!(workers.len(), 1, "{workers:?}");
    std::process::Command::new("kill")
        .args(["-9", &workers[0].to_string()])
        .status()
        .unwrap();
    let left = left_after(&p);
    std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{}", run.id())])
        .status()
        .unwrap();
    let _ = run.wait();
    assert!(left.is_empty(), "trainer processes left behind: {left:?}");
}

#[test]
fn ctrl_c_stops_the_trainers_processes_and_publishes_nothing() {
    let p = Project::new();
    let run = long_run(&p);
    std::process::Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    let out = run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(left_after(&p).is_empty(), "trainer processes left behind");
    let runs = p.path().join(".scorch/runs");
    let record = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(record).unwrap()).unwrap();
    assert_eq!(rec["status"], "cancelled");
    assert_eq!(common::node(&rec, "long")["outcome"], "cancelled", "{rec}");
}
