//! LoRA through the command line: `sft` with `lora` on a trained student writes a PEFT adapter
//! that records its base; `eval` samples from it given the base; a wrong base fails the node
//! with a message; `scorch export --merge` writes a whole model that `transformers` loads;
//! `scorch serve` serves the adapter on its base as the merged model.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{Project, text};

const WF: &str = r#"
name: lora
nodes:
  tasks:
    kind: tasks
    params: {split: train, count: 16}
  demos:
    kind: rollout
    params: {policy: {kind: oracle}}
    inputs: {tasks: {from: tasks.tasks}}
  warm:
    kind: sft
    params: {steps: 4, batch_size: 4, init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}}
    inputs: {trajectories: {from: demos.trajectories}}
  other:
    kind: sft
    params: {steps: 1, batch_size: 4, init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2}}
    inputs: {trajectories: {from: demos.trajectories}}
  tune:
    kind: sft
    params: {steps: 3, batch_size: 4, lr: 0.01, lora: {rank: 4, targets: [q_proj, v_proj, down_proj]}}
    inputs: {trajectories: {from: demos.trajectories}, model: {from: warm.checkpoint}}
  eval_tune:
    kind: eval
    params: {label: tune, sampling: {max_tokens: 8}, turn_limit: 2}
    inputs: {tasks: {from: tasks.tasks}, model: {from: tune.checkpoint}, base: {from: warm.checkpoint}}
  eval_wrong_base:
    kind: eval
    params: {label: wrong, sampling: {max_tokens: 8}, turn_limit: 2}
    inputs: {tasks: {from: tasks.tasks}, model: {from: tune.checkpoint}, base: {from: other.checkpoint}}
"#;

#[test]
fn an_sft_adapter_evaluates_on_its_base_and_exports_merged() {
    let p = Project::new();
    p.write("wf.yaml", WF);
    let rec = p.run_json(&["wf.yaml", "-j", "1"], 1);
    let node = |id: &str| common::node(&rec, id);
    assert_eq!(node("eval_tune")["outcome"], "ran", "{rec}");
    let wrong = node("eval_wrong_base");
    assert_eq!(wrong["outcome"], "failed");
    let error = wrong["error"].as_str().unwrap();
    assert!(
        error.contains("input `base`") && error.contains("not the base"),
        "{error}"
    );

    // The adapter as PEFT lays it out, with the record of its base.
    let out = p.scorch(&["export", "tune", "--out", "adapter"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let dir = p.path().join("adapter/checkpoint");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["down_proj", "q_proj", "v_proj"])
    );
    assert!(dir.join("adapter_model.safetensors").is_file());
    assert!(dir.join("scorch_base.json").is_file());
    assert!(!dir.join("model.safetensors").exists());

    // Merged into its base: a whole model folder that transformers loads.
    let out = p.scorch(&[
        "export", "tune", "--out", "merged", "--merge", "--base", "warm",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let merged = p.path().join("merged/checkpoint");
    assert!(merged.join("model.safetensors").is_file());
    let check = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, torch\nfrom transformers import Qwen2ForCausalLM\n\
             m = Qwen2ForCausalLM.from_pretrained(sys.argv[1])\n\
             print(m(torch.tensor([[1, 2, 3]])).logits.shape[-1])",
        ])
        .arg(&merged)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    // Served: the adapter on its base answers as the merged export does, and not as the
    // base alone does (greedy, with log-probabilities, through the openai client).
    let (_a, on_base, _) = common::serve(p.path(), &["tune", "--base", "warm", "--device", "cpu"]);
    let merged_arg = merged.display().to_string();
    let (_m, as_merged, _) = common::serve(p.path(), &[&merged_arg, "--device", "cpu"]);
    let (_b, base_only, _) = common::serve(p.path(), &["warm", "--device", "cpu"]);
    let script = r#"
import sys
from openai import OpenAI
def ask(url):
    c = OpenAI(base_url=url, api_key="unused")
    model = c.models.list().data[0].id
    r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": "What is 12 + 30?"}],
                                  max_tokens=8, temperature=0, logprobs=True)
    return r.choices[0].message.content, [t.logprob for t in r.choices[0].logprobs.content]
adapter, merged, base = (ask(u) for u in sys.argv[1:4])
assert adapter[0] == merged[0], (adapter, merged)
assert max(abs(a - b) for a, b in zip(adapter[1], merged[1])) < 1e-4, (adapter, merged)
assert adapter[1] != base[1], "the adapter changed nothing"
print("ok")
"#;
    let check = std::process::Command::new("python3")
        .args(["-c", script, &on_base, &as_merged, &base_only])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check.stderr));
    // Serving an adapter without its base, or on another, is bad input.
    for args in [
        &["tune", "--device", "cpu"][..],
        &["tune", "--base", "other", "--device", "cpu"],
    ] {
        let out = p.scorch(&[&["serve"][..], args].concat());
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains("`base`"),
            "{}",
            text(&out.stderr)
        );
    }
    // `--base` belongs to `--merge`.
    let out = p.scorch(&["export", "tune", "--out", "x", "--base", "warm"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Merging onto another base is bad input, and leaves nothing behind.
    let out = p.scorch(&[
        "export", "tune", "--out", "bad", "--merge", "--base", "other",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("not the base"),
        "{}",
        text(&out.stderr)
    );
    assert!(!p.path().join("bad/checkpoint").exists());
    // So is merging what is not an adapter.
    let out = p.scorch(&[
        "export", "warm", "--out", "full", "--merge", "--base", "warm",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("not a LoRA adapter"));
}
