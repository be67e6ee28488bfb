//! Training that survives being killed: `sft` and `rl` save their state into the store every
//! `save_every` steps; a run killed mid-way (SIGKILL to the whole process group, as a node
//! failure or a preemption does) is resumed by the next run from the last saved step, and
//! ends with the same checkpoint, byte for byte, as a run that was never stopped. A rollout
//! keeps each episode as it ends, and a rerun plays only the others.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Project, text};
use scorch_api::parquet_io::read_rows;
use scorch_tables::Trajectory;

const TRAIN: &str = r#"
name: resume
nodes:
  tasks: {kind: tasks, params: {split: train, count: 60}}
  demos:
    kind: rollout
    params: {policy: {kind: oracle}}
    inputs: {tasks: {from: tasks.tasks}}
  sft:
    kind: sft
    params:
      steps: 160
      save_every: 40
      batch_size: 8
      init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64, vocab_size: 300}
    inputs: {trajectories: {from: demos.trajectories}}
"#;

/// `TRAIN` (a shorter `sft`) on to mentored solving and 30 steps of `rl`.
fn rl_workflow() -> String {
    TRAIN
        .replace("steps: 160", "steps: 40")
        .replace("save_every: 40", "save_every: 0")
        + r#"
  mentor_tasks: {kind: tasks, params: {split: train, count: 12, offset: 60}}
  mentored:
    kind: correct
    params: {max_repairs: 2, sampling: {temperature: 0.0, max_tokens: 48}}
    inputs: {tasks: {from: mentor_tasks.tasks}, model: {from: sft.checkpoint}}
  split:
    kind: filter
    params: {mode: score}
    inputs: {tasks: {from: mentor_tasks.tasks}, trajectories: {from: mentored.trajectories}, repairs: {from: mentored.repairs}}
  rl:
    kind: rl
    params: {steps: 30, save_every: 10, group_size: 2, prompts_per_step: 2, lr: 0.0001, sampling: {max_tokens: 48}}
    inputs: {rl_prompts: {from: split.rl_prompts}, tasks: {from: mentor_tasks.tasks}, model: {from: sft.checkpoint}}
"#
}

/// Node `node`'s output artifacts, and its summary metrics.
fn results(rec: &serde_json::Value, node: &str) -> (serde_json::Value, serde_json::Value) {
    let n = common::node(rec, node);
    let outputs = n["outputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, o)| (k.clone(), o["artifact"].clone()))
        .collect();
    (outputs, n["metrics"].clone())
}

/// The highest step of `node`'s live metrics in store folder `store`, if any.
fn live_step(p: &Project, store: &str, node: &str) -> Option<u64> {
    let logs = p.path().join(store).join("work/logs");
    let run = std::fs::read_dir(&logs).ok()?.flatten().next()?.path();
    let text = std::fs::read_to_string(run.join(format!("{node}.metrics.jsonl"))).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["step"].as_u64())
        .max()
}

/// `scorch run wf.yaml` on store folder `store`, in a process group of its own.
fn killable_run(p: &Project, store: &str) -> std::process::Child {
    p.cmd(&[
        "run",
        "wf.yaml",
        "--store",
        &format!("file://{store}"),
        "--quiet",
    ])
    .process_group(0)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap()
}

/// SIGKILL to `child`'s whole process group (as a node failure or a preemption does).
fn kill_group(mut child: std::process::Child) {
    std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    let _ = child.wait();
}

/// Run `wf` whole in one store; in another, kill the run once `node` is past step
/// `kill_after`, run it again, and check that it resumed from a saved step (a multiple of
/// `every`) and ended with the whole run's outputs and metrics.
fn killed_and_resumed(wf: &str, node: &str, kill_after: u64, every: u64, steps: u64) {
    let p = Project::new();
    p.write("wf.yaml", wf);
    let whole = p.run_json(&["wf.yaml", "--store", "file://whole"], 0);

    // Killed, with all its processes, once the node is past `kill_after`.
    let mut child = killable_run(&p, "cut");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if live_step(&p, "cut", node).is_some_and(|s| s >= kill_after) {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed; make it longer"
        );
        assert!(
            Instant::now() < deadline,
            "{node} never got past step {kill_after}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    kill_group(child);
    let killed_at = live_step(&p, "cut", node).unwrap();
    assert!(killed_at + 1 < steps, "killed before the end: {killed_at}");
    let saves: Vec<_> = common::files_under(&p.path().join("cut/resume"))
        .into_iter()
        .filter(|f| f.ends_with("latest.json"))
        .collect();
    assert_eq!(saves.len(), 1, "one node's state is saved");
    let latest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saves[0]).unwrap()).unwrap();
    let saved = latest["step"].as_u64().unwrap();
    assert!(saved >= every && saved.is_multiple_of(every), "{latest}");

    // The next run takes it up from there.
    let resumed = p.run_json(&["wf.yaml", "--store", "file://cut"], 0);
    assert_eq!(common::node(&resumed, node)["outcome"], "ran");
    let run = resumed["id"].as_str().unwrap();
    let log = text(
        &p.scorch(&["logs", run, node, "--store", "file://cut"])
            .stdout,
    );
    assert!(
        log.contains(&format!("resumed at step {saved} of {steps}")),
        "{log}"
    );
    assert_eq!(
        results(&resumed, node),
        results(&whole, node),
        "the same outputs, byte for byte, and metrics as the run never stopped"
    );
    // Its state is gone once the node's outputs are published, folders and all.
    let resume = p.path().join("cut/resume");
    assert!(!resume.exists(), "{:?}", common::files_under(&resume));
}

#[test]
fn an_sft_node_killed_mid_way_resumes_from_its_last_saved_step() {
    killed_and_resumed(TRAIN, "sft", 100, 40, 160);
}

#[test]
fn a_torch_trainer_killed_mid_way_resumes_from_its_last_saved_step() {
    // Two processes over gloo (DDP); the node saves their state when they say, and the
    // next run's trainer takes it up: the same checkpoint and loss table, byte for byte.
    let wf = TRAIN.replace(
        "      batch_size: 8\n",
        "      batch_size: 8\n      trainer: {kind: torch, processes_per_node: 2}\n",
    );
    assert!(wf.contains("kind: torch"));
    killed_and_resumed(&wf, "sft", 100, 40, 160);
}

#[test]
fn a_deepspeed_zero3_trainer_killed_mid_way_resumes_from_its_last_saved_step() {
    // DeepSpeed's own checkpoint (a file per process, packed into one), saved into the store.
    let wf = TRAIN.replace(
        "      batch_size: 8\n",
        "      batch_size: 8\n      trainer: {kind: torch, processes_per_node: 2, strategy: deepspeed_zero3}\n",
    );
    assert!(wf.contains("deepspeed_zero3"));
    killed_and_resumed(&wf, "sft", 100, 40, 160);
}

#[test]
fn an_rl_node_killed_mid_way_resumes_from_its_last_saved_step() {
    killed_and_resumed(&rl_workflow(), "rl", 15, 10, 30);
}

/// A scripted OpenAI-compatible server: each episode is a plan, one calculation, then a
/// final answer, each reply after `delay`; counts the requests it reads per question.
struct Scripted {
    url: String,
    requests: Arc<Mutex<HashMap<String, u32>>>,
}

fn scripted(delay: Duration) -> Scripted {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", server.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(HashMap::new()));
    let counts = requests.clone();
    std::thread::spawn(move || {
        for s in server.incoming() {
            let Ok(mut s) = s else { continue };
            let counts = counts.clone();
            std::thread::spawn(move || answer(&mut s, &counts, delay));
        }
    });
    Scripted { url, requests }
}

fn answer(
    stream: &mut TcpStream,
    counts: &Mutex<HashMap<String, u32>>,
    delay: Duration,
) -> Option<()> {
    let req = common::read_chat_request(stream)?;
    let messages = req["messages"].as_array()?;
    let question = messages
        .iter()
        .find(|m| m["role"] == "user")?
        .get("content")?
        .as_str()?
        .to_owned();
    *counts.lock().unwrap().entry(question).or_insert(0) += 1;
    let content = match messages.iter().filter(|m| m["role"] == "assistant").count() {
        0 => "Plan: add, then answer.",
        1 => "Thought: add.\nCode: 1 + 1",
        _ => "Thought: done.\nCode: final_answer(2)",
    };
    std::thread::sleep(delay);
    common::write_chat_reply(stream, content)
}

/// The task ids of the episodes in the journals under `dir`.
fn journaled(dir: &std::path::Path) -> Vec<String> {
    common::files_under(dir)
        .into_iter()
        .filter(|f| {
            f.parent().is_some_and(|d| d.ends_with("journal"))
                && f.extension().is_some_and(|e| e == "json")
        })
        .filter_map(|f| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).ok()?).ok()?;
            Some(
                v.as_array()?
                    .iter()
                    .filter_map(|e| Some(e["task_id"].as_str()?.to_owned()))
                    .collect::<Vec<_>>(),
            )
        })
        .flatten()
        .collect()
}

#[test]
fn a_rollout_killed_half_way_sends_no_request_for_an_episode_it_had_finished() {
    const EPISODES: usize = 40;
    let server = scripted(Duration::from_millis(60));
    let p = Project::new();
    p.write(
        "wf.yaml",
        &format!(
            "name: resume-rollout\nnodes:\n  tasks: {{kind: tasks, params: {{split: train, count: {EPISODES}}}}}\n  \
             roll:\n    kind: rollout\n    params:\n      policy: {{kind: endpoint, base_url: \"{}\", model: scripted, concurrency: 2}}\n      \
             sampling: {{temperature: 0}}\n    inputs: {{tasks: {{from: tasks.tasks}}}}\n",
            server.url
        ),
    );
    let whole = p.run_json(&["wf.yaml", "--store", "file://whole"], 0);
    let asked_whole: u32 = server.requests.lock().unwrap().values().sum();
    assert_eq!(asked_whole as usize, 3 * EPISODES);

    // The question of each task, from the whole run's table.
    let table = common::output_file(&p.path().join("whole"), &whole, "roll", "trajectories");
    let rows: Vec<Trajectory> = read_rows(&table).unwrap();
    assert_eq!(rows.len(), EPISODES);
    let question: HashMap<String, String> = rows
        .iter()
        .map(|t| (t.task_id.clone(), t.question.clone()))
        .collect();

    // Killed, with all its processes, once a quarter of the episodes have ended.
    let mut child = killable_run(&p, "cut");
    let deadline = Instant::now() + Duration::from_secs(120);
    while journaled(&p.path().join("cut/resume")).len() < EPISODES / 4 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed; make it longer"
        );
        assert!(Instant::now() < deadline, "no episode ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_group(child);
    let ended = journaled(&p.path().join("cut/resume"));
    assert!(
        ended.len() >= EPISODES / 4 && ended.len() < EPISODES,
        "{} ended",
        ended.len()
    );

    // The rerun asks nothing for those, and three requests for each of the others.
    server.requests.lock().unwrap().clear();
    let resumed = p.run_json(&["wf.yaml", "--store", "file://cut"], 0);
    assert_eq!(common::node(&resumed, "roll")["outcome"], "ran");
    let asked = server.requests.lock().unwrap().clone();
    for id in &ended {
        assert_eq!(
            asked.get(&question[id]),
            None,
            "{id} ended before the kill, and was asked again"
        );
    }
    assert_eq!(
        asked.values().sum::<u32>() as usize,
        3 * (EPISODES - ended.len())
    );
    let run = resumed["id"].as_str().unwrap();
    let log = text(
        &p.scorch(&["logs", run, "roll", "--store", "file://cut"])
            .stdout,
    );
    assert!(
        log.contains(&format!(
            "{} episodes ended in an earlier attempt, kept",
            ended.len()
        )),
        "{log}"
    );
    assert_eq!(
        results(&resumed, "roll"),
        results(&whole, "roll"),
        "the same table, byte for byte, and metrics as the run never stopped"
    );
    assert!(journaled(&p.path().join("cut/resume")).is_empty());
}
