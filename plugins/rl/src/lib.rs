//! The `rl` node (stage 3): GRPO from the verified prefixes. For each prompt, G episodes start
//! from the prefix (the interpreter state restored by replaying the prefix's code) and run to
//! the turn limit; the key-step reward is 1.0 for a right final answer, else 0.5 if the first
//! new step is equivalent to the teacher's (chosen) step, 0 if equivalent to the student's old
//! wrong (rejected) step, 0.1 otherwise, and 0 with no final answer. Advantages are
//! normalised within each group; the loss is the clipped policy-gradient surrogate over the
//! new assistant turns (tool observations masked), with an optional KL term to the start.
#![deny(missing_docs)]

use scorch_agent::oracle::Oracle;
use scorch_agent::teacher::Teacher;
use scorch_api::reexports::async_trait;
use scorch_api::{DeclaredPlugin, NodeContext, PluginError};
use scorch_kinds::rl::{Reward, RlParams, RolloutSpec};
use scorch_model::checkpoint::Checkpoint;
use scorch_model::episode::{self, Episode};
use scorch_model::local::{Batching, LocalModel};
use scorch_model::precision::ComputeKind;
use scorch_model::spec::{system_for, tool_for};
use scorch_model::tokenizer::{END_OF_TEXT, token_id};
use scorch_model::train::{
    TrainConfig, Trainer, TrainingRun, clip_len, collate, micro_batches, token_logprobs,
};
use scorch_tables::{Author, RlGroup, RlPrompt, Step, Task, TrainStep, Trajectory};

pub mod loss;
use serde::{Deserialize, Serialize};

/// What an RL run counts beyond its [`TrainingRun`], saved with it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Counts {
    /// Episodes per reward class so far.
    classes: std::collections::BTreeMap<String, u64>,
    /// Each step's diagnostics so far (reported again by a resumed run, in their order).
    #[serde(default)]
    diagnostics: Vec<Vec<(String, f64)>>,
    /// Every group's rewards so far.
    #[serde(default)]
    groups: Vec<RlGroup>,
}

/// The `rl` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rl;

/// What an episode earned, by the key-step rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RewardClass {
    /// The final answer is right (1.0).
    Solved,
    /// Wrong answer; the first new step is equivalent to the teacher's step (0.5).
    TeacherStep,
    /// Wrong answer; the first new step repeats the student's wrong step (0).
    WrongStep,
    /// Wrong answer; the first new step is neither (0.1).
    Other,
    /// Wrong answer under the sparse reward (0).
    Wrong,
    /// No final answer (0).
    NoAnswer,
}

impl RewardClass {
    /// Every class, in report order.
    pub const ALL: [Self; 6] = [
        Self::Solved,
        Self::TeacherStep,
        Self::Other,
        Self::WrongStep,
        Self::Wrong,
        Self::NoAnswer,
    ];
    /// The reward.
    pub fn value(self) -> f64 {
        match self {
            Self::Solved => 1.0,
            Self::TeacherStep => 0.5,
            Self::Other => 0.1,
            Self::WrongStep | Self::Wrong | Self::NoAnswer => 0.0,
        }
    }
    /// The name used in metrics (`reward_class_<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Solved => "solved",
            Self::TeacherStep => "teacher_step",
            Self::WrongStep => "wrong_step",
            Self::Other => "other_step",
            Self::Wrong => "wrong_answer",
            Self::NoAnswer => "no_answer",
        }
    }
}

/// The class of one finished episode that started after `prefix_len` steps.
pub async fn reward_class(
    kind: Reward,
    prompt: &RlPrompt,
    task: &Task,
    steps: &[Step],
    final_answer: Option<&str>,
    prefix_len: usize,
) -> RewardClass {
    if final_answer.is_none() {
        return RewardClass::NoAnswer;
    }
    if scorch_agent::answer::is_correct(task, final_answer) {
        return RewardClass::Solved;
    }
    if kind == Reward::Sparse {
        return RewardClass::Wrong;
    }
    let Some(first) = steps.get(prefix_len) else {
        return RewardClass::Other;
    };
    let prefix = &steps[..prefix_len];
    let same = |other: &Option<scorch_tables::Step>| {
        let other = other.clone();
        async move {
            match other {
                Some(o) => Oracle
                    .equivalent(task, prefix, first, &o)
                    .await
                    .map(|r| r.0)
                    .unwrap_or(false),
                None => false,
            }
        }
    };
    if same(&prompt.chosen).await {
        RewardClass::TeacherStep
    } else if same(&prompt.rejected).await {
        RewardClass::WrongStep
    } else {
        RewardClass::Other
    }
}

/// Group-normalised advantages.
pub fn advantages(rewards: &[f64]) -> Vec<f64> {
    let n = rewards.len().max(1) as f64;
    let mean = rewards.iter().sum::<f64>() / n;
    let var = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    rewards
        .iter()
        .map(|r| {
            if std < 1e-9 {
                0.0
            } else {
                (r - mean) / (std + 1e-6)
            }
        })
        .collect()
}

#[async_trait]
impl DeclaredPlugin for Rl {
    type Declared = scorch_kinds::Rl;
    async fn run(&self, p: RlParams, ctx: &NodeContext) -> Result<(), PluginError> {
        scorch_model::spec::record_sandbox(ctx, p.sandbox);
        let prompts: Vec<RlPrompt> = ctx.read_rows("rl_prompts").await?;
        let tasks: Vec<Task> = ctx.read_rows("tasks").await?;
        let (device, kind) = scorch_model::pick_device(&p.device)?;
        let compute = p.precision.compute_kind(device);
        let (model_dir, base_dir) = (ctx.blobs("model")?, ctx.optional_blobs("base")?);
        // Float32 master weights (LoRA: a frozen base in the compute kind and a float32
        // adapter); the layers compute in the precision's kind.
        let ck = scorch_model::checkpoint::load_trainable(
            model_dir,
            base_dir.as_deref(),
            device,
            compute,
            p.lora.as_ref(),
            ctx.seed(),
        )?;
        let reference = if p.kl_coef > 0.0 {
            let mut r = Checkpoint::load_model(model_dir, base_dir.as_deref(), device, kind)?;
            r.merge_adapter();
            Some(r)
        } else {
            None
        };
        let pad = token_id(&ck.tokenizer, END_OF_TEXT)?;
        let config = TrainConfig {
            lr: p.lr,
            warmup_steps: 1,
            total_steps: p
                .steps
                .saturating_mul(p.ppo_epochs)
                .saturating_mul(p.mini_batches),
            min_lr_ratio: 1.0,
            ..TrainConfig::default()
        };
        let mut trainer = Trainer::new(&ck.vs, config)?;
        let tokenizer = ck.tokenizer.clone();
        let chat = ck.chat;
        let max_len = ck.model.config.max_position_embeddings as usize;
        let policy = LocalModel::new("student", ck).with_batching(Batching::from_env()?);
        let mut classes: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        let mut history: Vec<Vec<(String, f64)>> = Vec::new();
        let mut group_log: Vec<RlGroup> = Vec::new();
        if prompts.is_empty() {
            return Err(PluginError::failed("no RL prompt to train on"));
        }
        ctx.progress().set_total(p.steps as u64);
        let state = ctx.state_store().filter(|_| p.save_every > 0);
        // Saved only where a state store keeps it.
        let save_every = if state.is_some() { p.save_every } else { 0 };
        let mut run = TrainingRun::new(
            ctx.seed(),
            prompts.len(),
            p.steps,
            save_every,
            ctx.scratch_dir().join("state"),
        );
        // A run killed or preempted before: go on from its last saved step.
        if let Some(state) = &state
            && state.load(run.dir()).await?.is_some()
        {
            let saved: Counts = {
                // Held while the weights change under the model (it also drops cached prefixes).
                let _guard = policy.lock();
                run.resume(&mut trainer)?
            };
            for class in RewardClass::ALL {
                if let Some(&n) = saved.classes.get(class.name()) {
                    classes.insert(class.name(), n);
                }
            }
            // A resumed run reports what the steps before it did, as a whole run would have.
            for (i, s) in run.log.iter().enumerate() {
                for (name, value) in saved.diagnostics.get(i).into_iter().flatten() {
                    ctx.metric_at(name, u64::from(s.step), *value);
                }
                ctx.metric_at("reward", u64::from(s.step), s.reward);
            }
            history = saved.diagnostics;
            group_log = saved.groups;
            ctx.progress().advance(run.start as u64);
            ctx.progress()
                .message(&format!("resumed at step {} of {}", run.start, p.steps));
        }
        // Adapter names on a shared server: this node's run, then the step.
        let served_prefix = format!(
            "scorch-rl-{}",
            &blake3::hash(ctx.scratch_dir().to_string_lossy().as_bytes()).to_hex()[..12]
        );
        for step in run.start..p.steps {
            ctx.check_cancelled()?;
            let pick = run.batch(p.prompts_per_step);
            // G episodes per prompt, all advanced together.
            let mut eps = Vec::new();
            let mut owners = Vec::new();
            for &pi in &pick {
                let prompt = &prompts[pi];
                let Some(task) = tasks.iter().find(|t| t.task_id == prompt.task_id) else {
                    continue;
                };
                for _ in 0..p.group_size {
                    let mut ep =
                        Episode::new(task.clone(), tool_for(task, p.sandbox)?, p.turn_limit);
                    if p.from_prefix && !prompt.prefix.is_empty() {
                        ep.steps = prompt.prefix.clone();
                        ep.truncate(prompt.prefix.len() as u32 + 1, tool_for(task, p.sandbox)?);
                    }
                    eps.push(ep);
                    owners.push(pi);
                }
            }
            let system = system_for(eps.first().map_or("", |e| e.task.task_id.as_str()));
            let options = p
                .sampling
                .seeded(ctx.seed().wrapping_add(step as u64 * 7919));
            // Endpoint rollouts: the adapter as it is now, loaded into the server under a name
            // of this step, so the rollouts sample from exactly the weights the update starts at.
            let published = match &p.rollout {
                RolloutSpec::Local => None,
                RolloutSpec::Endpoint(server) => {
                    let root = server
                        .adapter_dir
                        .clone()
                        .unwrap_or_else(|| ctx.scratch_dir().join("served"));
                    let name = format!("{served_prefix}-step{step}");
                    Some(
                        scorch_model::adapters::Published::publish(server, &policy, &root, &name)
                            .await?,
                    )
                }
            };
            let sampler: &dyn scorch_model::policy::Policy = match &published {
                Some(served) => served.policy(),
                None => &policy,
            };
            episode::run_with(
                sampler,
                &mut eps,
                system,
                &options,
                Author::Student,
                &scorch_api::NoProgress,
                episode::Schedule {
                    tool_workers: p.tool_workers,
                    ..Default::default()
                },
            )
            .await?;
            if let Some(served) = published {
                served.retire().await?;
            }
            let finished: Vec<(Task, Vec<Step>, Option<String>)> = eps
                .iter()
                .map(|e| (e.task.clone(), e.steps.clone(), e.final_answer.clone()))
                .collect();
            // Where each prompt's new steps begin: after its verified prefix, or at the start.
            let new_from = |pi: usize| {
                if p.from_prefix {
                    prompts[pi].prefix.len()
                } else {
                    0
                }
            };
            let mut rewards = Vec::with_capacity(finished.len());
            let mut step_classes = Vec::with_capacity(finished.len());
            for ((task, steps, answer), &pi) in finished.iter().zip(&owners) {
                let start = new_from(pi);
                let class = reward_class(
                    p.reward,
                    &prompts[pi],
                    task,
                    steps,
                    answer.as_deref(),
                    start,
                )
                .await;
                *classes.entry(class.name()).or_insert(0u64) += 1;
                step_classes.push(class);
                rewards.push(class.value());
            }
            let mut adv = Vec::with_capacity(rewards.len());
            for (chunk, owners) in rewards
                .chunks(p.group_size)
                .zip(owners.chunks(p.group_size))
            {
                adv.extend(advantages(chunk));
                group_log.push(RlGroup {
                    step: step as u32,
                    task_id: prompts[owners[0]].task_id.clone(),
                    prefix_len: new_from(owners[0]) as u32,
                    rewards: chunk.to_vec(),
                });
            }
            // Sequences: the new assistant turns carry the loss.
            let mut seqs = Vec::with_capacity(eps.len());
            for (ep, &pi) in eps.iter().zip(&owners) {
                let start = new_from(pi);
                let t = Trajectory {
                    trajectory_id: String::new(),
                    task_id: ep.task.task_id.clone(),
                    policy: String::new(),
                    sample: 0,
                    question: ep.task.question.clone(),
                    steps: ep.steps.clone(),
                    final_answer: None,
                    correct: false,
                    stop_reason: scorch_tables::StopReason::TurnLimit,
                    turns: 0,
                    metadata: String::new(),
                };
                seqs.push(clip_len(
                    scorch_model::encode::encode_trajectory_from(&tokenizer, chat, &t, start)?,
                    max_len,
                ));
            }
            let mean_reward = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
            // Mini-batches of whole groups, in order.
            let groups = seqs.len() / p.group_size.max(1);
            let per = groups.div_ceil(p.mini_batches.max(1)).max(1);
            let minis: Vec<std::ops::Range<usize>> = (0..groups)
                .step_by(per)
                .map(|g| g * p.group_size..((g + per) * p.group_size).min(seqs.len()))
                .collect();
            let mut tally = loss::Tally::default();
            // The update is CPU-heavy: keep it off the async worker threads. (In a block of
            // its own: it borrows what must not be held across the save's await below.)
            let (loss_value, lr, norm) = {
                let mut update = || -> Result<(f64, f64, f64), PluginError> {
                    let mut guard = policy.lock();
                    // Off-policy passes need the sampling policy's log-probabilities, taken
                    // before any update (by mini-batch, then micro-batch start); one on-policy
                    // pass uses the current ones, detached (the ratio is 1).
                    let olds = if p.ppo_epochs > 1 || minis.len() > 1 {
                        let model = &guard.model;
                        let mut olds = Vec::with_capacity(minis.len());
                        for mb in &minis {
                            let sub = &seqs[mb.clone()];
                            let mut by_start = std::collections::HashMap::new();
                            for rows in micro_batches(sub, p.micro_batch_tokens) {
                                let batch = collate(&sub[rows.clone()], pad, device)?;
                                let logp = tch::no_grad(|| {
                                    token_logprobs(model, &batch.ids, &batch.attention)
                                });
                                by_start.insert(rows.start, logp);
                            }
                            olds.push(by_start);
                        }
                        Some(olds)
                    } else {
                        None
                    };
                    // LoRA's dropout acts in the update, never in the rollouts.
                    guard.model.set_train(true);
                    guard.model.set_checkpointing(p.gradient_checkpointing);
                    let (mut loss_sum, mut lr, mut norm_sum, mut updates) = (0.0, 0.0, 0.0, 0);
                    for _ in 0..p.ppo_epochs {
                        for (m, mb) in minis.iter().enumerate() {
                            let model = &guard.model;
                            // The loss is a mean over every scored token of the update; each
                            // micro-batch adds its share of it (and of its gradient).
                            let value = trainer.accumulate(
                                model,
                                &seqs[mb.clone()],
                                p.micro_batch_tokens,
                                pad,
                                device,
                                |batch, rows, scored| {
                                    let a = tch::Tensor::from_slice(
                                        &adv[mb.start + rows.start..mb.start + rows.end]
                                            .iter()
                                            .map(|x| *x as f32)
                                            .collect::<Vec<_>>(),
                                    )
                                    .to_device(device)
                                    .unsqueeze(1);
                                    let logp = token_logprobs(model, &batch.ids, &batch.attention);
                                    let old =
                                        match olds.as_ref().and_then(|o| o[m].get(&rows.start)) {
                                            Some(old) => old.shallow_clone(),
                                            None => logp.detach(),
                                        };
                                    let ref_logp = reference.as_ref().map(|r| {
                                        tch::no_grad(|| {
                                            token_logprobs(&r.model, &batch.ids, &batch.attention)
                                        })
                                    });
                                    loss::grpo_loss(
                                        &loss::Batch {
                                            logp: &logp,
                                            old: &old,
                                            reference: ref_logp.as_ref(),
                                            advantages: &a,
                                            mask: &batch.loss_mask,
                                        },
                                        p.clip_eps,
                                        p.kl_coef,
                                        scored,
                                        &mut tally,
                                    )
                                },
                            )?;
                            let (step_lr, step_norm) = trainer.step()?;
                            loss_sum += value;
                            norm_sum += step_norm;
                            lr = step_lr;
                            updates += 1;
                        }
                    }
                    guard.model.set_train(false);
                    guard.model.set_checkpointing(false);
                    let n = f64::from(updates.max(1));
                    Ok((loss_sum / n, lr, norm_sum / n))
                };
                let multi = tokio::runtime::Handle::current().runtime_flavor()
                    == tokio::runtime::RuntimeFlavor::MultiThread;
                if multi {
                    tokio::task::block_in_place(update)?
                } else {
                    update()?
                }
            };
            // Diagnostics: what the step's rewards, ratios and log-probabilities looked like.
            let mut shares: std::collections::BTreeMap<&str, f64> =
                std::collections::BTreeMap::new();
            for c in &step_classes {
                *shares.entry(c.name()).or_insert(0.0) += 1.0 / step_classes.len().max(1) as f64;
            }
            let mut diagnostics = vec![
                (
                    "zero_variance_groups".to_owned(),
                    loss::zero_variance_share(&rewards, p.group_size),
                ),
                ("clip_fraction".to_owned(), tally.clip_fraction()),
                ("entropy".to_owned(), tally.entropy()),
            ];
            if reference.is_some() {
                diagnostics.push(("kl".to_owned(), tally.kl_mean()));
            }
            for class in RewardClass::ALL {
                diagnostics.push((
                    format!("share_{}", class.name()),
                    shares.get(class.name()).copied().unwrap_or(0.0),
                ));
            }
            for (name, value) in &diagnostics {
                ctx.metric_at(name, step as u64, *value);
                ctx.progress().metric(name, Some(step as u64), *value);
            }
            history.push(diagnostics);
            ctx.metric_at("reward", step as u64, mean_reward);
            for (name, value) in [
                ("reward", mean_reward),
                ("loss", loss_value),
                ("lr", lr),
                ("grad_norm", norm),
            ] {
                ctx.progress().metric(name, Some(step as u64), value);
            }
            ctx.progress()
                .message(&format!("reward {mean_reward:.3}, loss {loss_value:.3}"));
            ctx.progress().advance(1);
            let entry = TrainStep {
                step: step as u32,
                loss: loss_value,
                lr,
                grad_norm: norm,
                reward: mean_reward,
            };
            let saved = run.finish_step(entry, &trainer, || Counts {
                classes: classes.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
                diagnostics: history.clone(),
                groups: group_log.clone(),
            })?;
            if saved && let Some(state) = &state {
                state.save(run.log.len() as u64, run.dir()).await?;
            }
        }
        for class in RewardClass::ALL {
            let n = classes.get(class.name()).copied().unwrap_or(0);
            ctx.metric(&format!("reward_class_{}", class.name()), n as f64);
        }
        let dir = ctx.blob_dir("checkpoint")?;
        policy.lock().save(&dir)?;
        ctx.write_rows("metrics", &run.log)?;
        ctx.write_rows("groups", &group_log)
    }
}
