//! Memory plans: `validate` and `plan` print each training node's estimated peak, following
//! the model's shape from a folder's `config.json` through the nodes that train it, and a node
//! whose plan cannot fit its `gpu_mem_gb` or this machine is refused with exit 2 before
//! anything runs.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::{Project, text};

/// A workflow that trains the model in folder `base` (SFT, then RL) with `tune`'s extra
/// params, on a run with `gpu_mem_gb: 80` per GPU node.
fn workflow(tune: &str) -> String {
    format!(
        r#"
name: plan
vars:
  lora: null
resources: {{gpu: 1, gpu_mem_gb: 80}}
nodes:
  base:
    kind: folder
    params: {{path: base}}
  tasks:
    kind: tasks
    params: {{split: train, count: 4}}
  demos:
    kind: rollout
    params: {{policy: {{kind: oracle}}}}
    inputs: {{tasks: {{from: tasks.tasks}}}}
  mentored:
    kind: correct
    params: {{max_repairs: 1}}
    inputs: {{tasks: {{from: tasks.tasks}}, model: {{from: base.folder}}}}
  split:
    kind: filter
    params: {{mode: score}}
    inputs: {{tasks: {{from: tasks.tasks}}, trajectories: {{from: mentored.trajectories}}, repairs: {{from: mentored.repairs}}}}
  tune:
    kind: sft
    resources: {{gpu: 1, gpu_mem_gb: 80}}
    params: {{steps: 1, micro_batch_tokens: 4096, lora: "${{vars.lora}}", {tune}}}
    inputs: {{trajectories: {{from: demos.trajectories}}, model: {{from: base.folder}}}}
  polish:
    kind: rl
    resources: {{gpu: 1, gpu_mem_gb: 80}}
    params: {{steps: 1, lora: "${{vars.lora}}", gradient_checkpointing: true}}
    inputs: {{rl_prompts: {{from: split.rl_prompts}}, tasks: {{from: tasks.tasks}}, model: {{from: tune.checkpoint}}, base: {{from: base.folder}}}}
"#
    )
}

/// Qwen2.5-7B-Instruct's `config.json`, as `workflows/real` ships it.
fn seven_b(p: &Project) {
    let config = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("workflows/real/Qwen2.5-7B-Instruct/config.json"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    p.write("base/config.json", &config);
}

fn plans(p: &Project, args: &[&str], device: &str) -> serde_json::Value {
    let mut a = vec!["validate", "--json", "wf.yaml"];
    a.extend_from_slice(args);
    let out = p
        .cmd(&a)
        .env("SCORCH_AUTO_DEVICE", device)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let mut by_id = serde_json::Map::new();
    for n in v["nodes"].as_array().into_iter().flatten() {
        if !n["memory"].is_null() {
            by_id.insert(n["id"].as_str().unwrap_or("").into(), n["memory"].clone());
        }
    }
    serde_json::Value::Object(by_id)
}

fn part(plan: &serde_json::Value, name: &str) -> u64 {
    plan["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == name)
        .and_then(|p| p["bytes"].as_u64())
        .unwrap_or_else(|| panic!("no part `{name}` in {plan}"))
}

#[test]
fn a_full_fine_tuning_of_7b_is_refused_on_80_gb_and_lora_plans_to_fit() {
    let p = Project::new();
    seven_b(&p);
    p.write("wf.yaml", &workflow("gradient_checkpointing: true"));
    // Full fine-tuning of 7.6 B parameters: 16 bytes each before any activation.
    let out = p
        .cmd(&["run", "wf.yaml"])
        .env("SCORCH_AUTO_DEVICE", "cuda")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nodes.tune.resources.gpu_mem_gb") && err.contains("gpu_mem_gb: 80"),
        "{err}"
    );
    // The message says what would fit.
    assert!(err.contains("lora: {rank: 16}"), "{err}");
    // Nothing ran: no store was even made.
    assert!(!p.path().join(".scorch").exists(), "{err}");
    // With LoRA, both nodes plan to fit and print their plans, from the folder's shape.
    let lora = plans(&p, &["--set", "vars.lora={rank: 16}"], "cuda");
    let (tune, polish) = (&lora["tune"], &lora["polish"]);
    assert_eq!(tune["device"], "cuda", "{tune}");
    let peak = tune["peak"].as_u64().unwrap_or(0);
    assert!(peak < 80 << 30 && peak > 15 << 30, "{tune}");
    // The frozen base in bf16, 2 bytes a parameter (7.62 B of them: 15.23 GB), with the f32
    // adapters (0.16 GB) and rotary tables (0.03 GB) ...
    let weights = part(tune, "weights");
    assert!(
        (15_400_000_000..15_450_000_000).contains(&weights),
        "{weights}"
    );
    // ... and the optimiser's moments for the adapters only (40.4 M parameters at rank 16).
    assert_eq!(part(tune, "optimizer"), 8 * 40_370_176);
    // RL trains the same shape (the base followed through `tune`'s adapter).
    assert_eq!(part(polish, "weights"), weights);
    // Checkpointing is what keeps a 4,096-token micro-batch's activations small.
    assert!(tune["other_checkpointing"].as_u64().unwrap_or(0) > peak);
}

/// `tune`'s resources in `workflow`, and those of a node of eight GPUs.
const PER_GPU: &str = "gpu: 1, gpu_mem_gb: 80}\n    params: {steps: 1, micro";
const PER_NODE: &str = "gpu: 8, gpu_mem_gb: 80}\n    params: {steps: 1, micro";

#[test]
fn a_full_fine_tuning_of_7b_sharded_by_fsdp_over_2x8_gpus_plans_to_fit_on_80_gb() {
    let p = Project::new();
    seven_b(&p);
    let trainer = |strategy: &str| {
        format!(
            "gradient_checkpointing: true, precision: bf16, trainer: {{kind: torch, nodes: 2, processes_per_node: 8, strategy: {strategy}}}"
        )
    };
    // Several machines need the cluster; the plan is per process (one a GPU).
    let on_slurm = [
        "--set",
        "executor.kind=slurm",
        "--set",
        "executor.shared_store=true",
    ];
    // `tune` alone (`polish`, RL in full on one GPU, could not fit).
    let tune_only = |strategy: &str| {
        let wf = workflow(&trainer(strategy)).replace(PER_GPU, PER_NODE);
        assert!(wf.contains(PER_NODE));
        wf[..wf.find("  polish:").unwrap()].to_owned()
    };
    p.write("wf.yaml", &tune_only("fsdp"));
    let fsdp = plans(&p, &on_slurm, "cuda");
    let tune = &fsdp["tune"];
    // Weights, gradients and AdamW's moments, 16 bytes a parameter (7.62 B of them), split
    // 16 ways (the rotary table, 32 MiB, is whole in every process).
    let state = part(tune, "weights") + part(tune, "gradients") + part(tune, "optimizer");
    let rotary = 2 * 4 * 32768 * 128;
    assert!(
        (7_600_000_000..7_640_000_000).contains(&(state - rotary)),
        "{tune}"
    );
    assert!(part(tune, "gathered layers") > 0, "{tune}");
    let peak = tune["peak"].as_u64().unwrap_or(0);
    assert!(peak < 80 << 30, "{tune}");
    // DDP keeps the whole state in each process: refused, as the embedded trainer is.
    p.write("wf.yaml", &tune_only("ddp"));
    let out = p
        .cmd(&[
            "validate",
            "wf.yaml",
            on_slurm[0],
            on_slurm[1],
            on_slurm[2],
            on_slurm[3],
        ])
        .env("SCORCH_AUTO_DEVICE", "cuda")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("nodes.tune.resources.gpu_mem_gb"), "{err}");
}

#[test]
fn a_plan_beyond_this_machines_memory_is_refused_and_one_within_it_prints() {
    let p = Project::new();
    seven_b(&p);
    p.write("wf.yaml", &workflow("gradient_checkpointing: true"));
    // On the CPU the 7B model's full fine-tuning (about 120 GiB) does not fit this machine.
    let host = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let host_kib: u64 = host
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if host_kib > 0 && host_kib < 100 << 20 {
        let out = p
            .cmd(&["plan", "wf.yaml"])
            .env("SCORCH_AUTO_DEVICE", "cpu")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("nodes.tune.params") && err.contains("more than this machine's cpu"),
            "{err}"
        );
    }
    // A small model's plan prints in `validate` and `plan`, with and without checkpointing.
    p.write(
        "base/config.json",
        r#"{"vocab_size": 2000, "hidden_size": 192, "intermediate_size": 512,
            "num_hidden_layers": 4, "num_attention_heads": 6, "num_key_value_heads": 6,
            "max_position_embeddings": 1024, "tie_word_embeddings": true}"#,
    );
    for cmd in ["validate", "plan"] {
        let out = p
            .cmd(&[cmd, "wf.yaml"])
            .env("SCORCH_AUTO_DEVICE", "cpu")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let out_text = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let lines: Vec<&str> = out_text.lines().filter(|l| l.contains("memory")).collect();
        assert_eq!(lines.len(), 2, "{out_text}");
        assert!(
            lines
                .iter()
                .all(|l| l.contains("GiB peak on cpu") && l.contains("with checkpointing")),
            "{out_text}"
        );
    }
    // Without checkpointing the activations of every layer are kept: a bigger plan.
    p.write("wf.yaml", &workflow("gradient_checkpointing: false"));
    let off = plans(&p, &[], "cpu");
    p.write("wf.yaml", &workflow("gradient_checkpointing: true"));
    let on = plans(&p, &[], "cpu");
    assert!(
        part(&off["tune"], "activations") > part(&on["tune"], "activations"),
        "{off} {on}"
    );
    assert_eq!(off["tune"]["other_checkpointing"], on["tune"]["peak"]);
}

#[test]
fn a_model_without_a_readable_shape_is_not_planned_and_still_loads() {
    let p = Project::new();
    p.write("wf.yaml", &workflow("gradient_checkpointing: true"));
    std::fs::create_dir_all(p.path().join("base")).unwrap_or_else(|e| panic!("{e}"));
    let out = p.scorch(&["validate", "wf.yaml"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        stdout.contains("tune: memory not planned") && stdout.contains("config.json"),
        "{stdout}"
    );
}

#[test]
fn sizes_past_any_machine_are_bad_input_and_never_a_panic() {
    let p = Project::new();
    // A folder whose config.json claims a model wider than any machine's memory.
    p.write(
        "base/config.json",
        &serde_json::json!({
            "vocab_size": u64::MAX, "hidden_size": u64::MAX - 1, "intermediate_size": u64::MAX,
            "num_hidden_layers": u64::MAX, "num_attention_heads": 1,
            "num_key_value_heads": u64::MAX, "max_position_embeddings": u64::MAX,
        })
        .to_string(),
    );
    let refused = |wf: String, needle: &str| {
        p.write("wf.yaml", &wf);
        let out = p
            .cmd(&["validate", "wf.yaml"])
            .env("SCORCH_AUTO_DEVICE", "cuda")
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{needle}: {err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };
    refused(workflow("gradient_checkpointing: true"), "gpu_mem_gb");
    seven_b(&p);
    // A micro-batch of 2^64 - 1 tokens plans too big.
    refused(
        workflow("gradient_checkpointing: true").replace(
            "micro_batch_tokens: 4096",
            &format!("micro_batch_tokens: {}", u64::MAX),
        ),
        "gpu_mem_gb",
    );
    // Counts of processes and episodes that overflow are refused at their params.
    let max = u32::MAX;
    refused(
        workflow(&format!(
            "trainer: {{kind: torch, processes_per_node: {max}, nodes: {max}}}"
        )),
        "more processes than can be counted",
    );
    let huge = usize::MAX;
    refused(
        workflow("gradient_checkpointing: true").replace(
            "params: {steps: 1, lora:",
            &format!("params: {{prompts_per_step: {huge}, group_size: {huge}, mini_batches: 1, steps: 1, lora:"),
        ),
        "more episodes than can be counted",
    );
}
