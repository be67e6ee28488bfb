//! The Slurm executor against a real single-node Slurm (Debian's slurm-wlm and munge,
//! started here by `scripts/slurm-local`; `scripts/setup` installs them): `sbatch`,
//! `scontrol` and `scancel` are the real ones.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::s3::{create_bucket, start_server};
use common::{Project, text};

/// Start Slurm (idempotent).
fn slurm() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-local");
    let out = Command::new("bash").arg(&script).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/slurm-local: {}",
        text(&out.stderr)
    );
}

/// Slurm's word on job `id`.
fn job_state(id: &str) -> String {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .unwrap();
    let line = text(&out.stdout);
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("JobState="))
        .unwrap_or_else(|| panic!("scontrol show job {id}: {line}{}", text(&out.stderr)))
        .to_owned()
}

/// The jobs of run `run` that Slurm still has queued or running.
fn queued(run: &str) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i %j %T"])
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("scorch:{run}:")))
        .map(str::to_owned)
        .collect()
}

/// Each node's cache key and output artifacts: what must not depend on where it ran.
fn results(rec: &serde_json::Value) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let outputs = n["outputs"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, o)| (k.clone(), o["artifact"].as_str().unwrap().to_owned()))
                .collect();
            (
                n["id"].as_str().unwrap().to_owned(),
                (n["key"].as_str().unwrap().to_owned(), outputs),
            )
        })
        .collect()
}

/// The nodes' total time, seconds.
fn node_seconds(rec: &serde_json::Value) -> f64 {
    rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["duration_ms"].as_f64().unwrap() / 1000.0)
        .sum()
}

fn score_yaml() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("workflows/score.yaml")
        .display()
        .to_string()
}

/// Every node ran as exactly one job that Slurm reports COMPLETED.
fn assert_all_completed_jobs(rec: &serde_json::Value) {
    for n in rec["nodes"].as_array().unwrap() {
        assert_eq!(n["outcome"], "ran", "{n}");
        let jobs = n["jobs"]
            .as_array()
            .unwrap_or_else(|| panic!("no job: {n}"));
        assert_eq!(jobs.len(), 1, "{n}");
        assert_eq!(job_state(jobs[0].as_str().unwrap()), "COMPLETED", "{n}");
    }
}

#[test]
fn the_smoke_run_on_slurm_gives_the_local_results_on_the_file_store_and_on_s3() {
    slurm();
    let p = Project::new();
    let wf = score_yaml();
    let smoke = ["--set", "profile=smoke"];
    let local = p.run_json(&[&wf, smoke[0], smoke[1], "-j", "2"], 0);
    assert_eq!(local["status"], "succeeded");

    let on_slurm = [
        "--set",
        "executor.kind=slurm",
        "--set",
        "executor.shared_store=true",
    ];
    let out = p
        .cmd(&[
            "run",
            &wf,
            smoke[0],
            smoke[1],
            on_slurm[0],
            on_slurm[1],
            on_slurm[2],
            on_slurm[3],
            "--store",
            "file://slurm-store",
            "--json",
        ])
        .env("SCORCH_SLURM_POLL_MS", "250")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = common::run_record(&out.stdout);
    assert_eq!(file["status"], "succeeded");
    assert_all_completed_jobs(&file);
    assert_eq!(
        results(&file),
        results(&local),
        "the same keys and output bytes as the local executor"
    );
    // Each node's log is the job's: it names the job.
    let run = file["id"].as_str().unwrap();
    let log = p.scorch(&["logs", run, "warm_sft", "--store", "file://slurm-store"]);
    let log = text(&log.stdout);
    let job = file["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "warm_sft")
        .unwrap()["jobs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(log.contains(&format!("slurm job {job} ")), "{log}");
    assert!(
        log.contains("scorch-worker "),
        "the worker ran inside the job: {log}"
    );

    let server = start_server();
    let bucket = format!("scorch-slurm-{}", std::process::id());
    create_bucket(&server.endpoint, &bucket);
    let store = format!("s3://{bucket}/smoke");
    let out = p
        .cmd(&[
            "run",
            &wf,
            smoke[0],
            smoke[1],
            on_slurm[0],
            on_slurm[1],
            "--store",
            &store,
            "--json",
        ])
        .envs(common::s3::aws_env(&server.endpoint))
        .env("SCORCH_SLURM_POLL_MS", "250")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s3 = common::run_record(&out.stdout);
    assert_all_completed_jobs(&s3);
    assert_eq!(results(&s3), results(&local));
    let nodes = local["nodes"].as_array().unwrap().len() as f64;
    eprintln!(
        "overhead: {nodes} nodes; run {:.1} s local, {:.1} s Slurm+file, {:.1} s Slurm+S3; \
         node time {:.1} s local, {:.1} s Slurm+file ({:+.2} s per node), {:.1} s Slurm+S3 ({:+.2} s per node)",
        local["duration_ms"].as_f64().unwrap() / 1000.0,
        file["duration_ms"].as_f64().unwrap() / 1000.0,
        s3["duration_ms"].as_f64().unwrap() / 1000.0,
        node_seconds(&local),
        node_seconds(&file),
        (node_seconds(&file) - node_seconds(&local)) / nodes,
        node_seconds(&s3),
        (node_seconds(&s3) - node_seconds(&local)) / nodes,
    );
}

const SLOW: &str = r#"
name: slow
executor: {kind: slurm, shared_store: true}
nodes:
  slow:
    kind: exec
    params:
      command: [sleep, "300"]
      outputs: {table: {type: table}}
"#;

#[test]
fn a_file_store_that_may_not_be_shared_is_refused_before_anything_is_submitted() {
    slurm();
    let p = Project::new();
    p.write("wf.yaml", &SLOW.replace(", shared_store: true", ""));
    let out = p.scorch(&["run", "wf.yaml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot see the file store"), "{err}");
    assert!(err.contains("shared_store: true"), "{err}");
    assert!(
        !p.path().join(".scorch/runs").exists()
            || std::fs::read_dir(p.path().join(".scorch/runs"))
                .unwrap()
                .count()
                == 0
    );
}

#[test]
fn ctrl_c_cancels_every_job_of_the_run() {
    slurm();
    let p = Project::new();
    p.write("wf.yaml", SLOW);
    let child = p
        .cmd(&["run", "wf.yaml", "--json"])
        .env("SCORCH_SLURM_POLL_MS", "250")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the job to run.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let runs = p.path().join(".scorch/work/slurm");
        let run = std::fs::read_dir(&runs)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned());
        if let Some(run) = run
            && queued(&run).iter().any(|l| l.ends_with("RUNNING"))
        {
            break run;
        }
        assert!(Instant::now() < deadline, "the job never ran");
        std::thread::sleep(Duration::from_millis(200));
    };
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let rec = common::run_record(&out.stdout);
    assert_eq!(rec["status"], "cancelled");
    assert_eq!(rec["nodes"][0]["outcome"], "cancelled");
    assert!(queued(&run).is_empty(), "{:?}", queued(&run));
    let job = rec["nodes"][0]["jobs"][0].as_str().unwrap();
    assert_eq!(job_state(job), "CANCELLED");
}

#[test]
fn a_job_past_its_time_limit_fails_with_slurms_reason_and_is_retried() {
    slurm();
    let p = Project::new();
    p.write(
        "wf.yaml",
        &SLOW
            .replace(
                "executor: {kind: slurm, shared_store: true}",
                "executor: {kind: slurm, shared_store: true, time: \"0:02\"}",
            )
            .replace("    kind: exec\n", "    kind: exec\n    retries: 1\n"),
    );
    let rec = p.run_json(&["wf.yaml"], 1);
    let node = &rec["nodes"][0];
    assert_eq!(node["outcome"], "failed", "{node}");
    assert_eq!(node["attempts"], 2, "{node}");
    let error = node["error"].as_str().unwrap();
    assert!(error.contains("TIMEOUT"), "{error}");
    let jobs = node["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "a job per attempt: {node}");
    for j in jobs {
        assert_eq!(job_state(j.as_str().unwrap()), "TIMEOUT");
    }
}

/// When the job was submitted and when it ended, as Slurm says (whole seconds).
fn job_times(id: &str) -> (String, String) {
    let out = Command::new("scontrol")
        .args(["show", "job", "-o", id])
        .output()
        .unwrap();
    let line = text(&out.stdout);
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key))
            .unwrap()
            .to_owned()
    };
    (field("SubmitTime="), field("EndTime="))
}

#[test]
fn jobs_limits_the_nodes_run_here_not_the_clusters_jobs() {
    slurm();
    let p = Project::new();
    p.write(
        "wf.yaml",
        r#"
name: wide
executor: {kind: slurm, shared_store: true}
nodes:
  a: {kind: exec, params: {command: [sleep, "4"], env: {WHICH: a}}}
  b: {kind: exec, params: {command: [sleep, "4"], env: {WHICH: b}}}
"#,
    );
    let out = p
        .cmd(&["run", "wf.yaml", "-j", "1", "--json"])
        .env("SCORCH_SLURM_POLL_MS", "250")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rec = common::run_record(&out.stdout);
    let times: Vec<(String, String)> = rec["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| job_times(n["jobs"][0].as_str().unwrap()))
        .collect();
    // With `-j 1` counting cluster jobs, the second would be submitted once the first ended.
    // (Whether they then run at once is the cluster's business: other tests' jobs may hold
    // its CPUs.)
    assert!(
        times[0].0 < times[1].1 && times[1].0 < times[0].1,
        "both jobs were submitted before either ended: {times:?}"
    );
}

/// The smoke profile's student trained by two PyTorch processes (DDP over gloo).
const TORCH_SFT: &str = r#"
name: torch-on-slurm
nodes:
  tasks: {kind: tasks, params: {split: train, count: 60}}
  demos:
    kind: rollout
    params: {policy: {kind: oracle}}
    inputs: {tasks: {from: tasks.tasks}}
  sft:
    kind: sft
    params:
      steps: 8
      batch_size: 8
      micro_batch_tokens: 400
      save_every: 0
      init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}
      trainer: {kind: torch, processes_per_node: 2}
    inputs: {trajectories: {from: demos.trajectories}}
"#;

/// `scorch run wf.yaml --json` with every node a job of the local Slurm, on store `store`.
fn run_on_slurm(p: &Project, store: &str) -> std::process::Output {
    p.cmd(&[
        "run",
        "wf.yaml",
        "--set",
        "executor.kind=slurm",
        "--set",
        "executor.shared_store=true",
        "--store",
        store,
        "--json",
    ])
    .env("SCORCH_SLURM_POLL_MS", "250")
    .output()
    .unwrap()
}

#[test]
fn a_torch_trainer_on_slurm_is_one_allocation_whose_job_launches_srun_torchrun() {
    slurm();
    let p = Project::new();
    p.write("wf.yaml", TORCH_SFT);
    let local = p.run_json(&["wf.yaml"], 0);
    let out = run_on_slurm(&p, "file://slurm-store");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rec = common::run_record(&out.stdout);
    assert_all_completed_jobs(&rec);
    assert_eq!(
        results(&rec),
        results(&local),
        "the same keys and output bytes as two processes on this machine"
    );
    let run = rec["id"].as_str().unwrap();
    // The batch script asks for one machine with a task that has a core per process.
    let script = std::fs::read_to_string(
        p.path()
            .join(format!("slurm-store/work/slurm/{run}/sft-1.sh")),
    )
    .unwrap();
    for line in [
        "#SBATCH --nodes=1\n",
        "#SBATCH --ntasks-per-node=1\n",
        "#SBATCH --cpus-per-task=2\n",
    ] {
        assert!(script.contains(line), "{line:?} in\n{script}");
    }
    // Slurm gave that allocation ...
    let job = common::node(&rec, "sft")["jobs"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let show = text(
        &Command::new("scontrol")
            .args(["show", "job", "-o", &job])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        show.contains("NumNodes=1 ") && show.contains("NumCPUs=2 "),
        "{show}"
    );
    // ... and the job launched torchrun with srun inside it, its rendezvous on the
    // allocation's host; two processes trained.
    let log = text(
        &p.scorch(&["logs", run, "sft", "--store", "file://slurm-store"])
            .stdout,
    );
    for part in [
        "launching srun --nodes=1 --ntasks-per-node=1",
        "torch.distributed.run' '--nnodes=1' '--nproc_per_node=2' '--rdzv_backend=c10d'",
        "rank 0 of 2",
        "rank 1 of 2",
    ] {
        assert!(log.contains(part), "{part:?} in\n{log}");
    }

    // More processes than the node's resources give: refused before anything is submitted.
    let wf = TORCH_SFT.replace(
        "processes_per_node: 2}\n    inputs: {trajectories: {from: demos.trajectories}}",
        "processes_per_node: 2}\n    inputs: {trajectories: {from: demos.trajectories}}\n    resources: {cpu: 1}",
    );
    assert!(wf.contains("resources: {cpu: 1}"));
    p.write("wf.yaml", &wf);
    let out = run_on_slurm(&p, "file://refused-store");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // (With `--json`, the diagnostics come as JSON on stdout.)
    let said = text(&out.stdout) + &text(&out.stderr);
    assert!(
        said.contains(
            "launches 2 processes on each machine, one per core, but `resources.cpu` gives it 1"
        ),
        "{said}"
    );
    assert!(!p.path().join("refused-store/work/slurm").exists());
}
