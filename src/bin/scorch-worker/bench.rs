//! `bench`: the student's training and generation throughput on a named model size, with
//! random weights: one JSON line of what was measured.

use scorch::model_commands::BenchCommand;
use scorch_kinds::student::Precision;
use scorch_model::bench::{GenerateBench, TrainBench, generation, named_config, train};
use scorch_model::precision::ComputeKind;

use crate::Failure;

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Usage(e.to_string())
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

fn positive(name: &str, n: usize) -> Result<(), Failure> {
    if n == 0 {
        return Err(usage(format!("--{name} must be positive")));
    }
    Ok(())
}

/// A measurement as JSON with what was measured: the bench, the model, the device, the batch.
fn labelled(
    mut json: serde_json::Value,
    bench: &str,
    model: &str,
    device: impl std::fmt::Debug,
    batch: usize,
) -> serde_json::Value {
    json["bench"] = bench.into();
    json["model"] = model.into();
    json["device"] = format!("{device:?}").into();
    json["batch"] = batch.into();
    json
}

/// Run a benchmark and print one JSON line with what it measured.
pub(crate) fn bench(
    command: BenchCommand,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failure> {
    match command {
        BenchCommand::Rollout(a) => {
            positive("episodes", a.episodes)?;
            positive("slots", a.slots)?;
            for (name, x) in [
                ("tool-s", a.tool_s),
                ("fast-s", a.fast_s),
                ("slow-s", a.slow_s),
            ] {
                if !(x.is_finite() && x >= 0.0) {
                    return Err(usage(format!(
                        "--{name} must be a number of seconds, 0 or more"
                    )));
                }
            }
            if !(0.0..=1.0).contains(&a.slow_share) {
                return Err(usage("--slow-share must be between 0 and 1"));
            }
            let b = scorch_model::bench_rollout::RolloutBench {
                episodes: a.episodes,
                slots: a.slots,
                tool_calls: a.tool_calls,
                tool_s: a.tool_s,
                fast_s: a.fast_s,
                slow_s: a.slow_s,
                slow_share: a.slow_share,
                tool_workers: a.tool_workers.unwrap_or(a.episodes),
            };
            let r = runtime
                .block_on(scorch_model::bench_rollout::rollout(&b))
                .map_err(failed)?;
            let mut json = serde_json::to_value(&r).map_err(failed)?;
            json["bench"] = "rollout".into();
            json["workload"] = serde_json::json!({
                "episodes": b.episodes, "slots": b.slots, "tool_calls": b.tool_calls,
                "tool_s": b.tool_s, "fast_s": b.fast_s, "slow_s": b.slow_s,
                "slow_share": b.slow_share, "tool_workers": b.tool_workers,
            });
            println!("{json}");
        }
        BenchCommand::Tool(a) => {
            positive("calls", a.calls)?;
            let sandbox: scorch_agent::python::Sandbox =
                serde_json::from_value(serde_json::Value::String(a.sandbox.clone()))
                    .map_err(|_| usage(format!("--sandbox {}: `bwrap` or `none`", a.sandbox)))?;
            let r = scorch_agent::tool_bench::tools(sandbox, a.calls).map_err(failed)?;
            let mut json = serde_json::to_value(&r).map_err(failed)?;
            json["bench"] = "tool".into();
            println!("{json}");
        }
        BenchCommand::Train(a) => {
            positive("batch", a.common.batch)?;
            positive("seq", a.seq)?;
            positive("steps", a.steps)?;
            let config = named_config(&a.common.model).map_err(usage)?;
            if a.seq > config.max_position_embeddings as usize {
                return Err(usage(format!(
                    "--seq {} is longer than the model's {} positions",
                    a.seq, config.max_position_embeddings
                )));
            }
            if let Some(new) = a.rl
                && (new == 0 || new >= a.seq)
            {
                return Err(usage(format!(
                    "--rl {new}: the sampled tokens must be at least 1 and fewer than --seq {}",
                    a.seq
                )));
            }
            let lora = match a.lora {
                None => None,
                Some(rank) => {
                    let p = scorch_kinds::student::LoraParams {
                        rank,
                        alpha: 2.0 * rank as f64,
                        ..Default::default()
                    };
                    p.check()
                        .map_err(|e| usage(format!("--lora: {}", e.message)))?;
                    Some(p)
                }
            };
            let (device, _) = scorch_model::pick_device(&a.common.device).map_err(usage)?;
            let r = train(&TrainBench {
                config,
                batch: a.common.batch,
                seq: a.seq,
                steps: a.steps,
                warmup: a.warmup,
                device,
                precision: a.common.precision.into(),
                lora,
                checkpointing: a.checkpointing,
                rl_new_tokens: a.rl,
            })
            .map_err(failed)?;
            let mut json = labelled(
                serde_json::to_value(&r).map_err(failed)?,
                "train",
                &a.common.model,
                device,
                a.common.batch,
            );
            json["seq"] = a.seq.into();
            json["lora"] = a.lora.into();
            json["checkpointing"] = a.checkpointing.into();
            json["rl"] = a.rl.into();
            json["malloc_mmap_threshold"] = std::env::var("MALLOC_MMAP_THRESHOLD_").ok().into();
            if let Some(peak) = a.peak_tflops {
                json["mfu"] = (r.flops_per_s / (peak * 1e12)).into();
            }
            println!("{json}");
        }
        BenchCommand::Generate(a) => {
            positive("batch", a.common.batch)?;
            positive("prompt", a.prompt)?;
            positive("new-tokens", a.new_tokens)?;
            let config = named_config(&a.common.model).map_err(usage)?;
            let (device, _) = scorch_model::pick_device(&a.common.device).map_err(usage)?;
            let kind = Precision::from(a.common.precision).compute_kind(device);
            let r = generation(&GenerateBench {
                config,
                batch: a.common.batch,
                prompt: a.prompt,
                new_tokens: a.new_tokens,
                runs: a.runs,
                device,
                kind,
            })
            .map_err(failed)?;
            let mut json = labelled(
                serde_json::to_value(&r).map_err(failed)?,
                "generate",
                &a.common.model,
                device,
                a.common.batch,
            );
            json["prompt"] = a.prompt.into();
            json["new_tokens"] = a.new_tokens.into();
            println!("{json}");
        }
    }
    Ok(())
}
