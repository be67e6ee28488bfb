//! The torch trainer: the node encodes the steps (the sequences with their loss masks,
//! `train_sequences` Parquet, and the plan: every step's sequences by number, micro-batch and
//! learning rate, `train_plan`) and the starting checkpoint, then launches `torch_trainer.py` under `torchrun` or `accelerate` (through
//! `srun` inside a Slurm allocation), follows its steps, saves its state into the store when it
//! says so, and publishes the checkpoint it writes.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use scorch_api::{NodeContext, PluginError, RowWriter};
use scorch_kinds::sft::SftParams;
use scorch_kinds::student::Precision;
use scorch_kinds::trainer::{Launcher, TorchTrainer};
use scorch_model::checkpoint::read_text_side;
use scorch_model::lora::is_adapter;
use scorch_model::tokenizer::{END_OF_TEXT, token_id};
use scorch_model::train::{TrainingRun, lr_at, micro_batches, scored_tokens};
use scorch_tables::{TrainPlanRow, TrainSequence, TrainStep};
use serde::Deserialize;
use tokio::io::AsyncBufReadExt;

use crate::{Data, Sequence, entry, next_batch, train_config};

/// The trainer program, written next to its job.
const PROGRAM: &str = include_str!("torch_trainer.py");

/// What the trainer says on stdout, a JSON object a line.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Said {
    Step {
        step: usize,
        loss: f64,
        lr: f64,
        grad_norm: f64,
    },
    Saved {
        saved: u64,
    },
}

/// Train on `data` as `p` says, with the processes `launch` asks for; the steps' log.
pub(crate) async fn train(
    p: SftParams,
    launch: TorchTrainer,
    data: Data,
    ctx: &NodeContext,
) -> Result<Vec<TrainStep>, PluginError> {
    if let Some(path) = config_file(&launch, ctx.workflow_dir())
        && !path.is_file()
    {
        return Err(PluginError::failed(format!(
            "`trainer.config`: no file {} (paths are relative to the workflow file's folder)",
            path.display()
        )));
    }
    let work = ctx.scratch_dir().join("torch");
    let files = Files::new(&work);
    let progress = ctx.progress_handle();
    // The state is saved only where a store keeps it.
    let state = ctx.state_store().filter(|_| p.save_every > 0);
    let allocation = Allocation::here()?;
    let mut log: Vec<TrainStep> = Vec::new();
    if let Some(store) = &state
        && let Some(step) = store.load(&files.state).await?
    {
        log = read_log(&files.state, step)?;
        progress.advance(step);
        progress.message(&format!("resumed at step {step} of {}", p.steps));
    }
    let job = Job {
        steps: p.steps,
        save_every: if state.is_some() { p.save_every } else { 0 },
        resume: !log.is_empty(),
        ..Job::from_params(&p, &launch, &files, allocation.as_ref())
    };
    let steps = p.steps;
    let files2 = files.clone();
    let job = ctx
        .blocking(move || prepare(&p, data, &files2, job))
        .await?;
    let python = std::env::var("SCORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let (program, args) = command(
        &launch,
        &files,
        ctx.workflow_dir(),
        &python,
        allocation.as_ref(),
    )?;
    let mut node_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ctx.log_file())
        .map_err(|e| PluginError::io("opening the node's log", e))?;
    use std::io::Write as _;
    let _ = writeln!(
        node_log,
        "sft: launching {} {} (world size {}, {}, steps {}..{}, from {})",
        program,
        args.join(" "),
        launch.world_size(),
        launch.strategy.name(),
        log.len(),
        job.steps,
        job.init.display()
    );
    let stderr = node_log
        .try_clone()
        .map_err(|e| PluginError::io("opening the node's log", e))?;
    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .map_err(|e| {
            PluginError::failed(format!("cannot start `{program}`: {e}")).with_source(e)
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| PluginError::failed("the trainer's output is not readable"))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let followed = async {
        loop {
            let line = tokio::select! {
                line = lines.next_line() => line.map_err(|e| PluginError::io("reading the trainer's output", e))?,
                () = ctx.cancellation().cancelled() => return Err(PluginError::cancelled()),
            };
            let Some(line) = line else {
                return Ok(());
            };
            match serde_json::from_str::<Said>(&line) {
                Ok(Said::Step {
                    step,
                    loss,
                    lr,
                    grad_norm,
                }) => {
                    progress.message(&format!("loss {loss:.3}"));
                    progress.metric("loss", Some(step as u64), loss);
                    progress.metric("lr", Some(step as u64), lr);
                    progress.metric("grad_norm", Some(step as u64), grad_norm);
                    progress.advance(1);
                    log.push(entry(step, loss, lr, grad_norm));
                }
                Ok(Said::Saved { saved }) => {
                    if let Some(store) = &state {
                        write_log(&files.state, &log)?;
                        store.save(saved, &files.state).await?;
                    }
                    std::fs::write(&files.ack, saved.to_string())
                        .map_err(|e| PluginError::io("answering the trainer", e))?;
                }
                Err(_) => {
                    let _ = writeln!(node_log, "{line}");
                }
            }
        }
    };
    // Cancelled, or the node cannot go on (its state not saved): the trainer stops too.
    if let Err(e) = followed.await {
        stop(&mut child).await;
        return Err(e);
    }
    let status = child
        .wait()
        .await
        .map_err(|e| PluginError::io("waiting for the trainer", e))?;
    if !status.success() {
        return Err(PluginError::failed(format!(
            "the torch trainer exited with {status}; its last output:\n{}",
            ctx.log_tail(20)
        )));
    }
    if log.len() != steps {
        return Err(PluginError::failed(format!(
            "the torch trainer reported {} of {steps} steps",
            log.len(),
        )));
    }
    publish(&job.init, &files, &ctx.blob_dir("checkpoint")?)?;
    Ok(log)
}

/// The files of one node's trainer, under its scratch folder.
#[derive(Debug, Clone, serde::Serialize)]
struct Files {
    /// The trainer program.
    program: PathBuf,
    /// Its job.
    job: PathBuf,
    /// The encoded sequences.
    sequences: PathBuf,
    /// Which make each step.
    plan: PathBuf,
    /// The starting checkpoint, when the node writes one.
    #[serde(skip)]
    init: PathBuf,
    /// The trained weights.
    out: PathBuf,
    /// The resumable state.
    state: PathBuf,
    /// The last save the node has put into the store.
    ack: PathBuf,
}

impl Files {
    fn new(work: &Path) -> Self {
        Self {
            program: work.join("torch_trainer.py"),
            job: work.join("job.json"),
            sequences: work.join("sequences.parquet"),
            plan: work.join("plan.parquet"),
            init: work.join("init"),
            out: work.join("out"),
            state: work.join("state"),
            ack: work.join("ack"),
        }
    }
}

/// What `torch_trainer.py` reads (see its docstring).
#[derive(Debug, Clone, serde::Serialize)]
struct Job {
    #[serde(flatten)]
    files: Files,
    /// The starting checkpoint: `files.init`, or the `model` input's folder as it is.
    init: PathBuf,
    resume: bool,
    steps: usize,
    save_every: usize,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    clip: f64,
    pad: i64,
    seed: u64,
    strategy: &'static str,
    device: String,
    bf16: bool,
    threads: usize,
    gradient_checkpointing: bool,
    /// The node's process and its machine: the trainer stops when it is gone.
    watch_pid: u32,
    watch_host: String,
}

impl Job {
    fn from_params(
        p: &SftParams,
        launch: &TorchTrainer,
        files: &Files,
        slurm: Option<&Allocation>,
    ) -> Self {
        let config = train_config(p);
        Self {
            files: files.clone(),
            init: files.init.clone(),
            resume: false,
            steps: p.steps,
            save_every: p.save_every,
            betas: config.betas,
            eps: scorch_model::train::EPS,
            weight_decay: config.weight_decay,
            clip: config.clip,
            pad: 0,
            seed: 0,
            strategy: launch.strategy.name(),
            device: p.device.clone(),
            bf16: p.precision == Precision::Bf16,
            threads: threads_per_process(launch.processes_per_node, slurm),
            gradient_checkpointing: p.gradient_checkpointing,
            watch_pid: std::process::id(),
            watch_host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default(),
        }
    }
}

/// The cores a process may use: the allocation's (Slurm) or this machine's, shared out.
fn threads_per_process(processes: u32, slurm: Option<&Allocation>) -> usize {
    let cores = slurm
        .and_then(|s| s.cpus_per_task.as_deref()?.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    (cores / processes.max(1) as usize).max(1)
}

/// Encode the steps, write the starting checkpoint, the program and its job. On the CPU: the
/// trainer's processes hold the devices.
fn prepare(p: &SftParams, data: Data, files: &Files, mut job: Job) -> Result<Job, PluginError> {
    let io = |what: &str, e: std::io::Error| PluginError::io(what.to_owned(), e);
    std::fs::create_dir_all(&files.state).map_err(|e| io("creating the trainer's folder", e))?;
    // A whole model given as `model` is the trainer's start as it is (its weights are read
    // only there); a new student, or an adapter merged into its base, is written first.
    let (tokenizer, chat, max) = match (&p.init, &data.model) {
        (None, Some(dir)) if !is_adapter(dir) => {
            let (config, chat, tokenizer) = read_text_side(dir)?;
            job.init.clone_from(dir);
            (tokenizer, chat, config.max_position_embeddings)
        }
        _ => {
            let ck = data.student(p, tch::Device::Cpu, tch::Kind::Float)?;
            ck.save(&files.init)?;
            (
                ck.tokenizer.clone(),
                ck.chat,
                ck.model.config.max_position_embeddings,
            )
        }
    };
    let seqs = data.sequences(p, &tokenizer, chat, max as usize)?;
    job.pad = token_id(&tokenizer, END_OF_TEXT)?;
    job.seed = data.seed;
    // Each sequence once, then every step's rows by number.
    let mut written = RowWriter::<TrainSequence>::create(&files.sequences)?;
    for (index, (ids, loss_mask)) in seqs.iter().enumerate() {
        written.push(TrainSequence {
            index: index as u32,
            ids: ids.clone(),
            loss_mask: loss_mask.clone(),
        })?;
    }
    written.finish()?;
    let config = train_config(p);
    let mut run = TrainingRun::new(data.seed, seqs.len(), p.steps, 0, PathBuf::new());
    let mut plan = RowWriter::<TrainPlanRow>::create(&files.plan)?;
    for step in 0..p.steps {
        let rows = next_batch(&mut run, &seqs, p.batch_size);
        let batch: Vec<Sequence> = rows.iter().map(|&i| seqs[i].clone()).collect();
        let scored = scored_tokens(&batch);
        let lr = lr_at(&config, step);
        for (micro, range) in micro_batches(&batch, p.micro_batch_tokens)
            .into_iter()
            .enumerate()
        {
            for &sequence in &rows[range] {
                plan.push(TrainPlanRow {
                    step: step as u32,
                    micro: micro as u32,
                    sequence: sequence as u32,
                    scored,
                    lr,
                })?;
            }
        }
    }
    plan.finish()?;
    std::fs::write(&files.program, PROGRAM).map_err(|e| io("writing the trainer", e))?;
    let text = serde_json::to_vec_pretty(&job)
        .map_err(|e| PluginError::failed(format!("the trainer's job: {e}")))?;
    std::fs::write(&files.job, text).map_err(|e| io("writing the trainer's job", e))?;
    let _ = std::fs::remove_file(&files.ack);
    Ok(job)
}

/// The Slurm allocation a node runs in: its job, the rendezvous host and port (on the
/// allocation's first machine, where the node runs), the cores of each task.
#[derive(Debug, Clone)]
struct Allocation {
    job: String,
    head: String,
    port: u16,
    cpus_per_task: Option<String>,
}

impl Allocation {
    /// The allocation this process runs in, if any.
    fn here() -> Result<Option<Self>, PluginError> {
        let Ok(job) = std::env::var("SLURM_JOB_ID") else {
            return Ok(None);
        };
        Ok(Some(Self {
            job,
            head: head_node()?,
            port: free_port()?,
            cpus_per_task: std::env::var("SLURM_CPUS_PER_TASK").ok(),
        }))
    }
}

/// The launcher's command line: on this machine, or with `srun` over the Slurm allocation
/// `slurm` (one task per machine, each launching that machine's processes).
fn command(
    launch: &TorchTrainer,
    files: &Files,
    workflow_dir: &Path,
    python: &str,
    slurm: Option<&Allocation>,
) -> Result<(String, Vec<String>), PluginError> {
    let (nodes, per_node) = (launch.nodes, launch.processes_per_node);
    if nodes > 1 && slurm.is_none() {
        return Err(PluginError::failed(format!(
            "`trainer.nodes: {nodes}` needs a Slurm allocation (`executor: slurm`)"
        )));
    }
    let mut args: Vec<String> = match launch.launcher {
        Launcher::Torchrun => {
            let mut a = vec![
                "-m".to_owned(),
                "torch.distributed.run".to_owned(),
                format!("--nnodes={nodes}"),
                format!("--nproc_per_node={per_node}"),
            ];
            match slurm {
                Some(s) => a.extend([
                    "--rdzv_backend=c10d".to_owned(),
                    format!("--rdzv_endpoint={}:{}", s.head, s.port),
                    format!("--rdzv_id=scorch-{}", s.job),
                ]),
                None => a.push("--standalone".to_owned()),
            }
            a
        }
        Launcher::Accelerate => {
            let mut a = vec![
                "-m".to_owned(),
                "accelerate.commands.launch".to_owned(),
                format!("--num_processes={}", launch.world_size()),
                format!("--num_machines={nodes}"),
            ];
            if let Some(config) = config_file(launch, workflow_dir) {
                a.push(format!("--config_file={}", config.display()));
            }
            if slurm.is_none() && launch.config.is_none() {
                // A free port of this machine's, not Accelerate's fixed 29500, which two
                // trainers started at once would both take.
                a.push("--main_process_port=0".to_owned());
            }
            if let Some(s) = slurm {
                a.extend([
                    // Each machine's rank comes from its own task, in the shell below.
                    "--machine_rank=$SLURM_NODEID".to_owned(),
                    format!("--main_process_ip={}", s.head),
                    format!("--main_process_port={}", s.port),
                ]);
            }
            // Accelerate's launcher for several processes (torch's elastic launch, gloo on
            // a CPU); `--cpu` would ask for MPI instead.
            if launch.world_size() > 1 {
                a.push("--multi_gpu".to_owned());
            }
            a.extend([
                "--mixed_precision=no".to_owned(),
                "--dynamo_backend=no".to_owned(),
            ]);
            a
        }
    };
    args.extend([
        files.program.display().to_string(),
        files.job.display().to_string(),
    ]);
    let Some(slurm) = slurm else {
        return Ok((python.to_owned(), args));
    };
    // A failed task ends them all.
    let mut srun = vec![
        format!("--nodes={nodes}"),
        "--ntasks-per-node=1".to_owned(),
        "--kill-on-bad-exit=1".to_owned(),
    ];
    if let Some(cpus) = &slurm.cpus_per_task {
        srun.push(format!("--cpus-per-task={cpus}"));
    }
    let line = std::iter::once(python.to_owned())
        .chain(args)
        .map(|a| match a.strip_suffix("$SLURM_NODEID") {
            Some(flag) => format!("{flag}\"$SLURM_NODEID\""),
            None => shell_quote(&a),
        })
        .collect::<Vec<_>>()
        .join(" ");
    srun.extend(["sh".to_owned(), "-c".to_owned(), format!("exec {line}")]);
    Ok(("srun".to_owned(), srun))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The allocation's first machine (where this node runs): the rendezvous host.
fn head_node() -> Result<String, PluginError> {
    let list = std::env::var("SLURM_JOB_NODELIST").unwrap_or_default();
    let out = std::process::Command::new("scontrol")
        .args(["show", "hostnames", &list])
        .output()
        .map_err(|e| PluginError::io("running scontrol show hostnames", e))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| PluginError::failed(format!("no host in the allocation `{list}`")))
}

/// The launcher's config file, absolute (the trainer runs in its own folder).
fn config_file(launch: &TorchTrainer, workflow_dir: &Path) -> Option<PathBuf> {
    let path = workflow_dir.join(launch.config.as_ref()?);
    Some(std::path::absolute(&path).unwrap_or(path))
}

/// A port free on this machine now, for the rendezvous.
fn free_port() -> Result<u16, PluginError> {
    let listener = std::net::TcpListener::bind("0.0.0.0:0")
        .map_err(|e| PluginError::io("finding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| PluginError::io("finding a free port", e))
}

/// Ask the launcher to stop (it stops its processes), then make sure.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// The steps' log kept with a saved state.
fn write_log(state: &Path, log: &[TrainStep]) -> Result<(), PluginError> {
    let text =
        serde_json::to_vec(log).map_err(|e| PluginError::failed(format!("the steps' log: {e}")))?;
    std::fs::write(state.join("log.json"), text)
        .map_err(|e| PluginError::io("writing the steps' log", e))
}

/// The log of the first `step` steps, saved with the state.
fn read_log(state: &Path, step: u64) -> Result<Vec<TrainStep>, PluginError> {
    let bytes = std::fs::read(state.join("log.json"))
        .map_err(|e| PluginError::io("reading the saved steps' log", e))?;
    let log: Vec<TrainStep> = serde_json::from_slice(&bytes)
        .map_err(|e| PluginError::failed(format!("the saved steps' log: {e}")))?;
    if log.len() as u64 != step {
        return Err(PluginError::failed(format!(
            "the saved state is at step {step} but its log has {} steps",
            log.len()
        )));
    }
    Ok(log)
}

/// The checkpoint: the starting one's config and tokenizer (its files other than the
/// weights) with the trained weights.
fn publish(init: &Path, files: &Files, out: &Path) -> Result<(), PluginError> {
    let io = |what: String, e: std::io::Error| PluginError::io(what, e);
    std::fs::create_dir_all(out).map_err(|e| io(format!("creating {}", out.display()), e))?;
    let entries =
        std::fs::read_dir(init).map_err(|e| io("reading the starting checkpoint".into(), e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let text = name.to_string_lossy();
        let weights = text.starts_with("model") && text.contains(".safetensors");
        if weights || !entry.path().is_file() {
            continue;
        }
        std::fs::copy(entry.path(), out.join(&name))
            .map_err(|e| io(format!("copying {}", name.to_string_lossy()), e))?;
    }
    let weights = files.out.join("model.safetensors");
    std::fs::copy(&weights, out.join("model.safetensors"))
        .map_err(|e| io(format!("copying {}", weights.display()), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use scorch_kinds::trainer::Strategy;

    fn two_by_eight(launcher: Launcher) -> (String, Vec<String>) {
        let launch = TorchTrainer {
            launcher,
            processes_per_node: 8,
            nodes: 2,
            strategy: Strategy::Fsdp,
            config: None,
        };
        let slurm = Allocation {
            job: "77".into(),
            head: "gpu-a01".into(),
            port: 29_500,
            cpus_per_task: Some("64".into()),
        };
        let files = Files::new(Path::new("/scratch/torch"));
        command(&launch, &files, Path::new("/wf"), "python3", Some(&slurm)).unwrap_or_default()
    }

    #[test]
    fn two_machines_of_eight_are_one_srun_task_each_launching_eight_processes() {
        let (program, args) = two_by_eight(Launcher::Torchrun);
        assert_eq!(program, "srun");
        assert_eq!(
            args[..4],
            [
                "--nodes=2",
                "--ntasks-per-node=1",
                "--kill-on-bad-exit=1",
                "--cpus-per-task=64"
            ]
        );
        assert_eq!(
            args[6],
            "exec 'python3' '-m' 'torch.distributed.run' '--nnodes=2' '--nproc_per_node=8' \
             '--rdzv_backend=c10d' '--rdzv_endpoint=gpu-a01:29500' '--rdzv_id=scorch-77' \
             '/scratch/torch/torch_trainer.py' '/scratch/torch/job.json'"
        );
        // Accelerate: every machine's rank from its own task's environment.
        let (_, args) = two_by_eight(Launcher::Accelerate);
        assert!(
            args[6].contains(
                "'--num_processes=16' '--num_machines=2' --machine_rank=\"$SLURM_NODEID\" \
                 '--main_process_ip=gpu-a01' '--main_process_port=29500' '--multi_gpu'"
            ),
            "{}",
            args[6]
        );
        // The shell reads the line as it is meant.
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "SLURM_NODEID=1; set -- {}; printf '%s\\n' \"$@\"",
                    &args[6][5..]
                ),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        assert!(out.lines().any(|l| l == "--machine_rank=1"), "{out}");
    }

    #[test]
    fn several_machines_without_an_allocation_are_refused() {
        let launch = TorchTrainer {
            launcher: Launcher::Torchrun,
            processes_per_node: 1,
            nodes: 2,
            strategy: Strategy::Ddp,
            config: None,
        };
        let files = Files::new(Path::new("/s"));
        let err = command(&launch, &files, Path::new("/wf"), "python3", None);
        assert!(err.is_err_and(|e| e.to_string().contains("executor: slurm")));
    }
}
