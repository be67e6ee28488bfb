//! The hostile corpus (`tests/hostile/`) through the path a `scorch run` takes: a workflow
//! whose student is an OpenAI-compatible endpoint that writes each snippet as its first code
//! step. Every snippet must end as an observation in the trajectories table, the host must be
//! untouched, and the run's secret (an API key in scorch's environment) must appear nowhere.
//!
//! The endpoint is scripted here: what is under test is the python tool, not a model.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::{Project, files_under, text};
use scorch_api::parquet_io::read_rows;
use scorch_tables::Trajectory;

const SECRET: &str = "sk-canary-5d1e0c7a";

struct Snippet {
    code: String,
    expect: String,
}

/// The corpus, by name, with the placeholders filled in except `{parent}` (the scorch
/// process, known only once it runs).
fn corpus(canary: &Path, outside: &Path, port: u16) -> BTreeMap<String, Snippet> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile");
    let prelude =
        |name: &str| std::fs::read_to_string(dir.join(format!("prelude/{name}.py"))).unwrap();
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "py") {
            continue;
        }
        let t = std::fs::read_to_string(&p).unwrap();
        let expect = t
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap()
            .to_owned();
        let code = t
            .replace("{escape}", &prelude("escape"))
            .replace("{fork_exec}", &prelude("fork_exec"))
            .replace("{canary}", &canary.display().to_string())
            .replace("{outside}", &outside.display().to_string())
            .replace("{port}", &port.to_string());
        out.insert(
            p.file_stem().unwrap().to_string_lossy().into_owned(),
            Snippet { code, expect },
        );
    }
    out
}

/// Answer one chat completion: a plan, then the snippet, then a final answer.
fn reply(
    stream: &mut TcpStream,
    corpus: &BTreeMap<String, Snippet>,
    parent: &AtomicU32,
) -> Option<()> {
    let req = common::read_chat_request(stream)?;
    let messages = req["messages"].as_array()?;
    let question = messages
        .iter()
        .find(|m| m["role"] == "user")?
        .get("content")?
        .as_str()?;
    let name = question.strip_prefix("snippet ")?.trim();
    let turn = messages.iter().filter(|m| m["role"] == "assistant").count();
    let content = match turn {
        0 => "Plan: run the code.".to_owned(),
        1 => {
            let code = corpus[name]
                .code
                .replace("{parent}", &parent.load(Ordering::SeqCst).to_string());
            format!("Thought: run it.\nCode:\n```py\n{code}\n```")
        }
        _ => "Thought: done.\nCode: final_answer(1)".to_owned(),
    };
    common::write_chat_reply(stream, &content)
}

#[test]
fn hostile_code_from_an_endpoint_student_stays_inside_the_sandbox_in_a_real_run() {
    let p = Project::new();
    let host = tempfile::tempdir().unwrap();
    let canary = host.path().join("canary.txt");
    std::fs::write(&canary, "host secret 8c1f").unwrap();
    let outside = host.path().join("escaped.txt");
    let victim = TcpListener::bind("127.0.0.1:0").unwrap();
    victim.set_nonblocking(true).unwrap();
    let corpus = Arc::new(corpus(
        &canary,
        &outside,
        victim.local_addr().unwrap().port(),
    ));
    assert!(corpus.len() >= 40);

    let parent = Arc::new(AtomicU32::new(0));
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/v1", server.local_addr().unwrap());
    {
        let (corpus, parent) = (corpus.clone(), parent.clone());
        std::thread::spawn(move || {
            for s in server.incoming() {
                let Ok(mut s) = s else { continue };
                let (corpus, parent) = (corpus.clone(), parent.clone());
                std::thread::spawn(move || reply(&mut s, &corpus, &parent));
            }
        });
    }

    let tasks: String = corpus
        .keys()
        .map(|n| {
            serde_json::json!({"id": n, "question": format!("snippet {n}"), "true_answer": "1"})
                .to_string()
                + "\n"
        })
        .collect();
    p.write("hostile.jsonl", &tasks);
    let wf = p.write(
        "wf.yaml",
        &format!(
            "name: hostile\nnodes:\n  tasks:\n    kind: tasks\n    params: {{source: hostile.jsonl, count: 0}}\n  \
             attack:\n    kind: rollout\n    params:\n      policy: {{kind: endpoint, base_url: \"{base}\", model: scripted, api_key_env: SCORCH_TEST_KEY, concurrency: 4}}\n      \
             sampling: {{temperature: 0}}\n      turn_limit: 4\n    inputs: {{tasks: {{from: tasks.tasks}}}}\n"
        ),
    );
    let child = p
        .cmd(&["run", &wf.display().to_string(), "--json"])
        .env("SCORCH_TEST_KEY", SECRET)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    parent.store(child.id(), Ordering::SeqCst);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let rec = common::run_record(stdout.as_bytes());

    let table = common::output_file(&p.path().join(".scorch"), &rec, "attack", "trajectories");
    let rows: Vec<Trajectory> = read_rows(&table).unwrap();
    assert_eq!(rows.len(), corpus.len());
    let mut escapes = Vec::new();
    for t in &rows {
        let name = t.question.strip_prefix("snippet ").unwrap();
        let s = &corpus[name];
        let obs = t
            .steps
            .get(1)
            .and_then(|s| s.observation.clone())
            .unwrap_or_default();
        assert!(
            !serde_json::to_string(t).unwrap().contains(SECRET),
            "{}: the API key reached the trajectory",
            t.task_id
        );
        if !obs.contains(&s.expect) {
            escapes.push(format!("{name}: expected `{}` in {obs:?}", s.expect));
        }
    }
    assert!(escapes.is_empty(), "{}", escapes.join("\n"));

    // The host is untouched.
    assert_eq!(
        std::fs::read_to_string(&canary).unwrap(),
        "host secret 8c1f"
    );
    assert!(
        !outside.exists(),
        "a snippet wrote outside its scratch folder"
    );
    assert!(
        victim.accept().is_err(),
        "a snippet reached the host's network"
    );
    // The run's secret is nowhere: not in the store, not in the output.
    for f in files_under(&p.path().join(".scorch")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the API key reached {}",
            f.display()
        );
    }
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
}
