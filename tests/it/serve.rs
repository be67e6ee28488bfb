//! `scorch serve`: the official `openai` Python client completes a chat against it, and so
//! does our own client (whose response cache then answers a repeat without a call).

#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Command;

use common::{Server, text};
use scorch_agent::format::{Message, Role};
use scorch_agent::llm::ChatOptions;
use scorch_kinds::policy::Endpoint;
use scorch_model::checkpoint::Checkpoint;
use scorch_model::openai::{ChatResult, OpenAiClient};
use scorch_model::policy::Request;
use scorch_model::qwen2::Config;
use scorch_model::tokenizer::train_bpe;

fn tiny_checkpoint(dir: &std::path::Path) {
    let texts: Vec<String> = (0..300)
        .map(|i| format!("Thought: add {i}\nCode: {i} + 4\nObservation: {}", i + 4))
        .collect();
    let tk = train_bpe(&texts, 200).unwrap();
    let config: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": tk.get_vocab_size(true), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512, "tie_word_embeddings": true
    }))
    .unwrap();
    Checkpoint::init(config, tk, tch::Device::Cpu, 3)
        .unwrap()
        .save(dir)
        .unwrap();
}

fn start(dir: &std::path::Path) -> (Server, String) {
    let (server, url, log) = start_logged(dir);
    let pid = server.0.id();
    count_requests(log, pid, None);
    (server, url)
}

/// A server, its base URL, and its stderr (a line per request).
fn start_logged(dir: &std::path::Path) -> (Server, String, std::process::ChildStderr) {
    let dir = dir.display().to_string();
    common::serve(
        std::path::Path::new("."),
        &[&dir, "--device", "cpu", "--name", "tiny"],
    )
}

/// Count the request lines of a server's stderr in a thread; `kill_after` kills the server
/// (by pid) once it has answered that many.
fn count_requests(
    stderr: std::process::ChildStderr,
    pid: u32,
    kill_after: Option<usize>,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut n = 0;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("POST /v1/chat/completions 200") {
                n += 1;
                if kill_after == Some(n) {
                    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                }
            }
        }
        n
    })
}

/// The rollout workflow: 40 built-in tasks, greedy, through `policy`.
fn pool_workflow(policy: &str) -> String {
    format!(
        r#"
name: pool
nodes:
  tasks: {{kind: tasks, params: {{source: builtin, split: test, count: 40}}}}
  roll:
    kind: rollout
    params:
      policy: {policy}
      sampling: {{temperature: 0.0, max_tokens: 24}}
    inputs: {{tasks: {{from: tasks.tasks}}}}
"#
    )
}

#[test]
fn a_pool_of_three_servers_with_one_killed_mid_run_gives_the_results_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("tiny");
    tiny_checkpoint(&ck);
    let p = common::Project::new();
    // Over one server.
    let (_one, url, log) = start_logged(&ck);
    let pid = _one.0.id();
    let one_count = count_requests(log, pid, None);
    p.write(
        "one.yaml",
        &pool_workflow(&format!(
            "{{kind: endpoint, base_url: \"{url}\", model: tiny, concurrency: 4}}"
        )),
    );
    let one = p.run_json(&["one.yaml", "--store", "file://one"], 0);
    drop(_one);
    assert!(one_count.join().unwrap() > 40);
    // Over three, the second killed once it has answered five requests.
    let servers: Vec<_> = (0..3).map(|_| start_logged(&ck)).collect();
    let urls: Vec<String> = servers.iter().map(|s| s.1.clone()).collect();
    let mut counts = Vec::new();
    let mut keep = Vec::new();
    for (i, (server, _, log)) in servers.into_iter().enumerate() {
        counts.push(count_requests(log, server.0.id(), (i == 1).then_some(5)));
        keep.push(server);
    }
    p.write(
        "pool.yaml",
        &pool_workflow(&format!(
            "{{kind: endpoint, base_url: \"{}\", pool: [\"{}\", \"{}\"], model: tiny, concurrency: 4, retries: 2}}",
            urls[0], urls[1], urls[2]
        )),
    );
    let pool = p.run_json(&["pool.yaml", "--store", "file://pool"], 0);
    drop(keep);
    let counts: Vec<usize> = counts.into_iter().map(|c| c.join().unwrap()).collect();
    // (The answers of the batch in progress when it was killed may be logged too.)
    assert!(
        (5..20).contains(&counts[1]),
        "the second server died after five answers: {counts:?}"
    );
    assert!(
        counts[0] > 5 && counts[2] > 5,
        "the others shared the work: {counts:?}"
    );
    let artifact = |rec: &serde_json::Value| {
        common::node(rec, "roll")["outputs"]["trajectories"]["artifact"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        artifact(&pool),
        artifact(&one),
        "the same trajectories, byte for byte"
    );
}

#[test]
fn the_openai_python_client_and_ours_complete_chats_against_scorch_serve() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("tiny");
    tiny_checkpoint(&ck);
    let (_server, url) = start(&ck);

    let script = r#"
import sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key="unused")
assert [m.id for m in client.models.list().data] == ["tiny"]
r = client.chat.completions.create(model="tiny", messages=[{"role": "system", "content": "Solve."}, {"role": "user", "content": "What is 2 + 4?"}], max_tokens=12, temperature=0)
assert r.choices[0].message.role == "assistant"
assert r.usage.completion_tokens >= 1 and r.usage.prompt_tokens > 5, r.usage
print(r.choices[0].finish_reason, r.usage.completion_tokens)

import openai
msgs = [{"role": "user", "content": "What is 7 + 4?"}]
# Every reply has an id of its own.
ids = {client.chat.completions.create(model="tiny", messages=msgs, max_tokens=3).id for _ in range(3)}
assert len(ids) == 3, ids
# n choices, sampled in one batch: they differ; the prompt is counted once.
r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=1.0, seed=5, n=3)
assert [c.index for c in r.choices] == [0, 1, 2], r
assert len({c.message.content for c in r.choices}) > 1, [c.message.content for c in r.choices]
single = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=1)
# Requests without a seed sample anew; the same seed samples the same reply again.
def sample(**seed):
    return client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=1.0, **seed).choices[0].message.content
unseeded = [sample() for _ in range(4)]
assert len(set(unseeded)) > 1, unseeded
assert sample(seed=11) == sample(seed=11)
assert r.usage.prompt_tokens == single.usage.prompt_tokens, (r.usage, single.usage)
try:
    client.chat.completions.create(model="tiny", messages=msgs, n=17)
    raise SystemExit("n=17 was accepted")
except openai.BadRequestError:
    pass
# A model this server does not have is a 404 that names the one it has.
try:
    client.chat.completions.create(model="gpt-4o", messages=msgs)
    raise SystemExit("an unknown model was accepted")
except openai.NotFoundError as e:
    assert "tiny" in str(e), e
# Log-probabilities come with each token's text, and the texts make up the reply.
r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=10, temperature=0, logprobs=True)
toks = r.choices[0].logprobs.content
assert len(toks) == r.usage.completion_tokens and all(t.token for t in toks), toks
if r.choices[0].finish_reason == "length":
    assert "".join(t.token for t in toks) == r.choices[0].message.content, (toks, r.choices[0].message.content)
assert all(bytes(t.bytes) == t.token.encode() for t in toks)
# Streamed, the pieces add up to the reply the same request gets whole, stop strings too.
for stop in [None, ["\n\n"]]:
    whole = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, temperature=0, stop=stop)
    # (This untrained model writes newlines: two of them are the stop string, cut away.)
    if stop:
        assert whole.choices[0].finish_reason == "stop" and "\n\n" not in whole.choices[0].message.content, whole
    chunks = list(client.chat.completions.create(model="tiny", messages=msgs, max_tokens=12, temperature=0, stop=stop,
                                                 stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content, (stop, text, whole.choices[0].message.content)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [whole.choices[0].finish_reason], finish
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens, chunks[-1]
    pieces = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    print("stream", stop, pieces, "pieces", repr(text))
"#;
    let out = Command::new("python3")
        .args(["-c", script, &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openai client (installed by scripts/setup): {}",
        text(&out.stderr)
    );
    let said = text(&out.stdout);
    assert!(
        said.starts_with("stop") || said.starts_with("length"),
        "{said}"
    );
    // Streaming sends the text in pieces as it is generated, not in one piece at the end.
    let first = said.lines().find(|l| l.starts_with("stream None")).unwrap();
    let pieces: usize = first.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(pieces > 1, "{said}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cache = dir.path().join("cache");
        let client = OpenAiClient::new(Endpoint {
            base_url: url.clone(),
            model: "tiny".into(),
            api_key_env: None,
            concurrency: 4,
            timeout_s: 60.0,
            retries: 1,
            cache_dir: Some(cache.clone()),
            pool: Vec::new(),
        })
        .unwrap();
        let chat = vec![Message::new(Role::User, "What is 3 + 4?")];
        let o = ChatOptions {
            temperature: 0.0,
            max_tokens: 10,
            ..Default::default()
        };
        let first = client.complete(&chat, &o, true).await.unwrap();
        assert!(first.completion_tokens >= 1 && first.completion_tokens <= 10);
        assert_eq!(
            first.logprobs.as_ref().map(Vec::len),
            Some(first.completion_tokens as usize)
        );
        // Several at once are batched by the server; greedy answers agree with the single one.
        let o11 = ChatOptions {
            max_tokens: 11,
            ..o.clone()
        };
        let many =
            futures::future::join_all((0..5).map(|_| client.complete(&chat, &o11, false))).await;
        assert!(many.iter().all(|r| r.is_ok()));
        let again = client.complete(&chat, &o, true).await.unwrap();
        assert_eq!(again, first, "the cache answers a repeated request");
        let usage = client.usage();
        // The five concurrent requests all went out (none had finished); the repeat hit the cache.
        assert_eq!((usage.calls, usage.cached), (6, 1), "{usage:?}");
        assert!(std::fs::read_dir(&cache).unwrap().count() == 2);
        // The same Policy interface over the endpoint and over the model in process: greedy
        // answers agree token for token.
        use scorch_model::policy::Policy;
        let greedy = ChatOptions {
            temperature: 0.0,
            max_tokens: 9,
            ..Default::default()
        };
        let chats = vec![
            chat.clone(),
            vec![Message::new(Role::User, "What is 10 + 4?")],
        ];
        let requests = Request::each(chats.clone(), 0);
        let remote = client
            .complete_many(requests.clone(), &greedy)
            .await
            .unwrap();
        let local = scorch_model::local::LocalModel::new(
            "tiny",
            Checkpoint::load(&ck, tch::Device::Cpu, tch::Kind::Float).unwrap(),
        );
        let here = local.complete_many(requests, &greedy).await.unwrap();
        assert_eq!(
            remote.iter().map(|r| &r.text).collect::<Vec<_>>(),
            here.iter().map(|r| &r.text).collect::<Vec<_>>()
        );
        // Sampled, the seed and top-p reach the endpoint too: the same seed samples the same
        // tokens there as here (the endpoint's requests used to leave them out).
        let sampled = ChatOptions {
            temperature: 1.0,
            top_p: 0.9,
            max_tokens: 9,
            seed: Some(7),
            ..Default::default()
        };
        // Each request has its own seed, so what it samples does not depend on the requests
        // the server batches it with: all at once there, in one call here.
        let requests = Request::each(chats, 7);
        let remote = client
            .complete_many(requests.clone(), &sampled)
            .await
            .unwrap();
        let here = local.complete_many(requests, &sampled).await.unwrap();
        assert_eq!(texts(&remote), texts(&here));
        // A bad request is a clear HTTP error, not a hang.
        let bad = reqwest::Client::new()
            .post(format!("{url}/chat/completions"))
            .json(&serde_json::json!({"messages": "nope"}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status().as_u16(), 400);
    });
}

fn texts(r: &[ChatResult]) -> Vec<&str> {
    r.iter().map(|r| r.text.as_str()).collect()
}
