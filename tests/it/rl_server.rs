//! RL rollouts on an inference server: `rl` with `rollout: {kind: endpoint}` writes its
//! adapter after every update and loads it into the server the way vLLM's runtime LoRA
//! updating does (`POST /v1/load_lora_adapter`), samples by naming it, and unloads it; and
//! `scorch serve` implements those routes, so that a request after a reload samples from the
//! new adapter.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{Project, text};

const WF: &str = r#"
name: rl-server
vars:
  server: http://127.0.0.1:9/v1
  pool: []
nodes:
  tasks: {kind: tasks, params: {split: train, count: 24}}
  demos:
    kind: rollout
    params: {policy: {kind: oracle}}
    inputs: {tasks: {from: tasks.tasks}}
  warm:
    kind: sft
    params: {steps: 30, batch_size: 8, init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, intermediate_size: 64, vocab_size: 300}}
    inputs: {trajectories: {from: demos.trajectories}}
  tune:
    kind: sft
    params: {steps: 3, batch_size: 4, lr: 0.02, lora: {rank: 4}}
    inputs: {trajectories: {from: demos.trajectories}, model: {from: warm.checkpoint}}
  retune:
    kind: sft
    params: {steps: 6, batch_size: 4, lr: 0.05, lora: {rank: 4}}
    inputs: {trajectories: {from: demos.trajectories}, model: {from: warm.checkpoint}}
  mentor_tasks: {kind: tasks, params: {split: train, count: 8, offset: 24}}
  mentored:
    kind: correct
    params: {max_repairs: 2, sampling: {temperature: 0.0, max_tokens: 32}}
    inputs: {tasks: {from: mentor_tasks.tasks}, model: {from: warm.checkpoint}}
  split:
    kind: filter
    params: {mode: score}
    inputs: {tasks: {from: mentor_tasks.tasks}, trajectories: {from: mentored.trajectories}, repairs: {from: mentored.repairs}}
  polish:
    kind: rl
    params:
      steps: 3
      group_size: 2
      prompts_per_step: 2
      lr: 0.001
      sampling: {max_tokens: 32}
      lora: {rank: 4}
      rollout: {kind: endpoint, base_url: "${vars.server}", pool: "${vars.pool}"}
    inputs: {rl_prompts: {from: split.rl_prompts}, tasks: {from: mentor_tasks.tasks}, model: {from: tune.checkpoint}, base: {from: warm.checkpoint}}
"#;

/// POST or GET `route` of the server at `url` with python's standard library (a client that
/// is not ours); prints `STATUS BODY`.
const CLIENT: &str = r#"
import json, sys, urllib.request, urllib.error
url, route = sys.argv[1], sys.argv[2]
body = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
req = urllib.request.Request(url + "/" + route, data=None if body is None else json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req) as r:
        print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"#;

fn call(url: &str, route: &str, body: Option<serde_json::Value>) -> (u16, String) {
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-c", CLIENT, url, route]);
    if let Some(b) = body {
        cmd.arg(b.to_string());
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    let (status, rest) = s.trim_end().split_once(' ').unwrap();
    (status.parse().unwrap(), rest.to_owned())
}

/// The same tokens with log-probabilities within 1e-4: a prompt whose keys and values come
/// from the server's prefix cache is not computed in the same matrix shapes as a fresh one
/// (a served checkpoint's first reply and its next ones: 2.4e-7 apart; here, under the full
/// suite, 5e-7).
fn same_reply(x: &serde_json::Value, y: &serde_json::Value) -> bool {
    let (Some(x), Some(y)) = (x.as_array(), y.as_array()) else {
        return false;
    };
    x.len() == y.len()
        && x.iter().zip(y).all(|(x, y)| {
            x["token"] == y["token"]
                && match (x["logprob"].as_f64(), y["logprob"].as_f64()) {
                    (Some(p), Some(q)) => (p - q).abs() < 1e-4,
                    _ => false,
                }
        })
}

/// The greedy reply of `model` and its token log-probabilities.
fn greedy(url: &str, model: &str) -> (u16, serde_json::Value) {
    let (status, body) = call(
        url,
        "chat/completions",
        Some(serde_json::json!({
            "model": model, "max_tokens": 8, "temperature": 0, "logprobs": true,
            "messages": [{"role": "user", "content": "What is 12 + 30?"}],
        })),
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (status, v["choices"][0]["logprobs"]["content"].clone())
}

#[test]
fn rl_samples_from_a_server_that_reloads_its_adapter_every_step() {
    let p = Project::new();
    p.write("wf.yaml", WF);
    // No server there: everything runs but `rl`, which fails and says where.
    let rec = p.run_json(&["wf.yaml"], 1);
    for id in ["tune", "retune", "split"] {
        assert_eq!(common::node(&rec, id)["outcome"], "ran", "{rec}");
    }
    let polish = common::node(&rec, "polish");
    assert_eq!(polish["outcome"], "failed", "{rec}");
    assert!(
        polish["error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:9/v1/load_lora_adapter"),
        "{polish}"
    );
    for (id, dir) in [("tune", "a"), ("retune", "b")] {
        let out = p.scorch(&["export", id, "--out", dir]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let adapter = |d: &str| p.path().join(d).join("checkpoint").display().to_string();
    let (server, url, mut log) = common::serve(p.path(), &["warm", "--device", "cpu"]);
    let models = |url: &str| -> serde_json::Value {
        serde_json::from_str(&call(url, "models", None).1).unwrap()
    };
    let served = models(&url)["data"][0]["id"].as_str().unwrap().to_owned();

    // Two adapters under names of their own, and one name that is reloaded.
    for (name, dir) in [("a", "a"), ("b", "b"), ("live", "a")] {
        let (status, body) = call(
            &url,
            "load_lora_adapter",
            Some(serde_json::json!({"lora_name": name, "lora_path": adapter(dir)})),
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("added successfully"), "{body}");
    }
    let (a, b) = (greedy(&url, "a").1, greedy(&url, "b").1);
    let (status, base) = greedy(&url, &served);
    assert_eq!(status, 200);
    assert!(
        a.is_array() && base.is_array() && !same_reply(&a, &b) && !same_reply(&a, &base),
        "{a} {b} {base}"
    );
    let sampled_from = |model: &str, reply: &serde_json::Value| {
        let got = greedy(&url, model).1;
        assert!(same_reply(&got, reply), "{model}: {got} against {reply}");
    };
    sampled_from("live", &a);
    // A name in use is refused, unless in place: then the next request samples the new one.
    let load = |inplace: bool| {
        call(
            &url,
            "load_lora_adapter",
            Some(
                serde_json::json!({"lora_name": "live", "lora_path": adapter("b"), "load_inplace": inplace}),
            ),
        )
    };
    let (status, body) = load(false);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("already been loaded"), "{body}");
    sampled_from("live", &a);
    assert_eq!(load(true).0, 200);
    sampled_from("live", &b);
    // The models list names the adapters with their base.
    let listed = models(&url);
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [served.as_str(), "a", "b", "live"]);
    assert_eq!(listed["data"][3]["parent"], served.as_str());
    // Unloaded, it is gone; what is not an adapter, or not of this base, does not load.
    for name in ["a", "b", "live"] {
        assert_eq!(
            call(
                &url,
                "unload_lora_adapter",
                Some(serde_json::json!({"lora_name": name}))
            )
            .0,
            200
        );
    }
    assert_eq!(greedy(&url, "live").0, 404);
    assert_eq!(
        call(
            &url,
            "unload_lora_adapter",
            Some(serde_json::json!({"lora_name": "live"}))
        )
        .0,
        404
    );
    let warm_dir = {
        let out = p.scorch(&["export", "warm", "--out", "w"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        p.path().join("w/checkpoint").display().to_string()
    };
    let (status, body) = call(
        &url,
        "load_lora_adapter",
        Some(serde_json::json!({"lora_name": "x", "lora_path": warm_dir})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a LoRA adapter"), "{body}");

    // `rl` against this server and a second one in its pool: every step loads its adapter
    // into both, samples from them, unloads it.
    let (second, url2, mut log2) = common::serve(p.path(), &["warm", "--device", "cpu"]);
    let rec = p.run_json(
        &[
            "wf.yaml",
            "--set",
            &format!("vars.server={url}"),
            "--set",
            &format!("vars.pool=[{url2}]"),
        ],
        0,
    );
    assert_eq!(common::node(&rec, "polish")["outcome"], "ran", "{rec}");
    for u in [&url, &url2] {
        let left = models(u)["data"].as_array().unwrap().len();
        assert_eq!(left, 1, "every adapter was unloaded: {}", models(u));
    }
    // The logs: one load per step on each server, each step's adapter by a name of its own,
    // and the chats spread over both.
    drop(server);
    drop(second);
    for log in [&mut log, &mut log2] {
        let mut lines = String::new();
        std::io::Read::read_to_string(log, &mut lines).unwrap();
        let loads: Vec<&str> = lines
            .lines()
            .filter(|l| l.contains("load_lora_adapter 200 scorch-rl-"))
            .collect();
        assert_eq!(loads.len(), 3, "{lines}");
        for (step, line) in loads.iter().enumerate() {
            assert!(line.ends_with(&format!("-step{step}")), "{line}");
        }
        assert!(
            lines.contains("POST /v1/chat/completions 200"),
            "no rollout sampled here: {lines}"
        );
    }
}

#[test]
fn server_rollouts_without_lora_are_refused_before_anything_runs() {
    let p = Project::new();
    p.write(
        "wf.yaml",
        &WF.replace("      lora: {rank: 4}\n      rollout", "      rollout"),
    );
    let out = p.scorch(&["validate", "wf.yaml"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nodes.polish.params.rollout") && err.contains("set `lora`"),
        "{err}"
    );
}
