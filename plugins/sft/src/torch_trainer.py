"""scorch's external trainer: fine-tunes every weight of a Qwen2 checkpoint with PyTorch, one
process per device, under `torchrun` or `accelerate launch` (which set RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous), with DDP, FSDP (`fully_shard` per decoder layer) or DeepSpeed
ZeRO stage 3.

Plain PyTorch on a transformers model rather than transformers' Trainer: the `sft` node has
already fixed everything a Trainer would decide (the sequences, their loss masks, which
sequences make each step and each micro-batch, the learning rate of every step), and this
program only carries them out, so that its loss curve can be held against the embedded
trainer's step by step. Its arithmetic is the embedded trainer's: the masked negative
log-likelihood summed over a step's micro-batches and divided by the targets the step scores,
global-norm clipping, AdamW (betas, epsilon 1e-8, decoupled weight decay on every weight).

Usage: torch_trainer.py JOB.json, where the node's JSON says:
  sequences   Parquet of `train_sequences` rows (index, ids, loss_mask)
  plan        Parquet of `train_plan` rows (step, micro, sequence, scored, lr)
  init        the checkpoint to start from (an HF folder)
  out         where to write the trained `model.safetensors` (the init's names and dtypes)
  state       the folder of the resumable state; `resume` true: go on from it
  steps, save_every, betas, eps, weight_decay, clip, pad, seed
  strategy    ddp | fsdp | deepspeed_zero3;  device  cpu | cuda;  bf16  autocast products in bfloat16
  threads     intra-op threads per process on a CPU
  gradient_checkpointing
  ack         the file the node writes a save's step into once it has kept it
  watch_pid, watch_host   the node's process: the trainer ends when it is gone

Rank 0 writes one JSON object a line on stdout: {"step", "loss", "lr", "grad_norm"} after each
step; {"saved": N} after writing the state of N steps into `state` (it then waits for the
node to write N into `ack`: the node copies the folder into the store meanwhile).
Everything else goes to stderr.
"""
import json
import math
import os
import sys
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist


def log(*args):
    print("torch_trainer:", *args, file=sys.stderr, flush=True)


def emit(rank, **fields):
    if rank == 0:
        print(json.dumps(fields), flush=True)


def read_plan(sequences, plan):
    """{step: [micro-batch rows in order]}, each row (ids, loss_mask); each step's (scored, lr)."""
    import pyarrow.parquet as pq

    seqs = pq.read_table(sequences, columns=["index", "ids", "loss_mask"])
    rows = dict(zip(seqs.column("index").to_pylist(),
                    zip(seqs.column("ids").to_pylist(), seqs.column("loss_mask").to_pylist())))
    table = pq.read_table(plan, columns=["step", "micro", "sequence", "scored", "lr"])
    cols = {name: table.column(name).to_pylist() for name in table.column_names}
    steps, meta = {}, {}
    for i, step in enumerate(cols["step"]):
        micros = steps.setdefault(step, {})
        micros.setdefault(cols["micro"][i], []).append(rows[cols["sequence"][i]])
        meta[step] = (cols["scored"][i], cols["lr"][i])
    return {s: [m[k] for k in sorted(m)] for s, m in steps.items()}, meta


def collate(rows, pad, device):
    """Right-padded ids, attention mask, and the mask of targets (token t + 1 for position t)."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
    for r, (seq, m) in enumerate(rows):
        ids[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        att[r, : len(seq)] = 1
        mask[r, : len(seq) - 1] = torch.tensor(m[1:], dtype=torch.float32)
    return ids.to(device), att.to(device), mask.to(device)


def wrap(model, strategy, device, cuda):
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if cuda else None, gradient_as_bucket_view=True
    )


def syncing(model, strategy, last):
    """Gradients are reduced over the processes on a step's last micro-batch only."""
    if strategy == "fsdp":
        model.set_requires_gradient_sync(last)
        return nullcontext()
    return nullcontext() if last else model.no_sync()


def full_state(model, opt):
    """Whole model and optimiser state dicts on rank 0 (empty elsewhere)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_weights(state, path, names=None):
    from safetensors.torch import save_file

    names = names or {k: v.dtype for k, v in state.items()}
    save_file({k: state[k].detach().to(dtype).contiguous().clone() for k, dtype in names.items()}, path)


def save_state(job, rank, trainer, step):
    """The state after `step` steps into `job["state"]` (flat files: the node keeps the
    folder's files in the store); then wait until the node says it has kept them."""
    state = job["state"]
    if rank == 0:
        os.makedirs(state, exist_ok=True)
    dist.barrier()
    trainer.save(state, rank)
    if rank == 0:
        with open(os.path.join(state, "position.json"), "w") as f:
            json.dump({"step": step}, f)
        emit(rank, saved=step)
        ack = job["ack"]
        while True:
            try:
                with open(ack) as f:
                    if f.read().strip() == str(step):
                        break
            except FileNotFoundError:
                pass
            time.sleep(0.02)
    dist.barrier()


def masked_share(logits, ids, mask, scored, weight):
    """This pass's share of the step's loss: its masked negative log-likelihood over the
    targets the whole step scores."""
    logp = logits[:, :-1].float().log_softmax(-1)
    token = logp.gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return -(token * mask).sum() / scored * weight


class TorchParallel:
    """PyTorch's DDP or FSDP (`fully_shard`) with torch's AdamW; state through
    `torch.distributed.checkpoint`'s state-dict API (whole tensors, so DDP and FSDP alike)."""

    def __init__(self, model, job, device, cuda):
        self.strategy = job["strategy"]
        self.model = wrap(model, self.strategy, device, cuda)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=0.0, betas=tuple(job["betas"]),
                                     eps=job["eps"], weight_decay=job["weight_decay"])
        self.clip = job["clip"] if job["clip"] > 0 else math.inf

    def pass_(self, batch, scored, weight, last, world, autocast):
        ids, att, mask = batch
        with syncing(self.model, self.strategy, last):
            with autocast():
                logits = self.model(input_ids=ids, attention_mask=att).logits
            share = masked_share(logits, ids, mask, scored, weight)
            # DDP and FSDP average the processes' gradients: the sum is wanted.
            (share * world).backward()
        return share

    def step(self, lr):
        for group in self.opt.param_groups:
            group["lr"] = lr
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(norm)

    def save(self, state, rank):
        msd, osd = full_state(self.model, self.opt)
        if rank == 0:
            save_weights(msd, os.path.join(state, "model.safetensors"))
            torch.save(osd, os.path.join(state, "optimizer.pt"))

    def load(self, state):
        from safetensors.torch import load_file
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        msd = load_file(os.path.join(state, "model.safetensors"))
        osd = torch.load(os.path.join(state, "optimizer.pt"), weights_only=True)
        set_state_dict(self.model, self.opt, model_state_dict=msd, optim_state_dict=osd,
                       options=StateDictOptions(full_state_dict=True))

    def weights(self):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


class DeepSpeedZero3:
    """DeepSpeed ZeRO stage 3: weights, gradients and AdamW's state partitioned over the
    processes. Accumulation over a step's passes by DeepSpeed's own boundary (one optimiser
    step at the last pass); its clipping and AdamW (torch's, `torch_adam`); its checkpoints,
    one file per process, packed into one archive in the state folder."""

    def __init__(self, model, job, device, cuda):
        import deepspeed

        config = {
            "train_micro_batch_size_per_gpu": 1,
            "gradient_accumulation_steps": 1,
            "zero_optimization": {"stage": 3},
            "gradient_clipping": job["clip"],
            "optimizer": {"type": "AdamW", "params": {
                "lr": 0.0, "betas": list(job["betas"]), "eps": job["eps"],
                "weight_decay": job["weight_decay"], "torch_adam": True}},
            "steps_per_print": 1 << 30,
        }
        self.engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(),
                                                    config=config)

    def pass_(self, batch, scored, weight, last, world, autocast):
        ids, att, mask = batch
        self.engine.set_gradient_accumulation_boundary(last)
        with autocast():
            logits = self.engine(input_ids=ids, attention_mask=att).logits
        share = masked_share(logits, ids, mask, scored, weight)
        # DeepSpeed averages the processes' gradients: the sum is wanted.
        self.engine.backward(share * world)
        return share

    def step(self, lr):
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm if norm is not None else 0.0)

    def save(self, state, rank):
        import shutil
        import tarfile

        staging = os.path.join(state, "deepspeed")
        self.engine.save_checkpoint(staging, tag="state")
        dist.barrier()
        if rank == 0:
            with tarfile.open(os.path.join(state, "deepspeed.tar"), "w") as tar:
                tar.add(staging, arcname="deepspeed")
            shutil.rmtree(staging)

    def load(self, state):
        import tarfile

        if int(os.environ.get("RANK", "0")) == 0:
            with tarfile.open(os.path.join(state, "deepspeed.tar")) as tar:
                tar.extractall(state, filter="data")
        dist.barrier()
        self.engine.load_checkpoint(os.path.join(state, "deepspeed"), tag="state")

    def weights(self):
        # Gathered to rank 0 a module at a time (as HF Accelerate reads a ZeRO-3 model).
        return self.engine._zero3_consolidated_16bit_state_dict() or {}


def watch(pid):
    """End this process when the node's process (on this machine) is gone: a node killed
    outright leaves no trainer behind."""
    import threading

    def loop():
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(3)
            except PermissionError:
                pass
            time.sleep(1.0)

    threading.Thread(target=loop, daemon=True).start()


def main():
    # A rank's exception goes to the launcher's error file, so that torchrun's and
    # Accelerate's failure summary names its traceback as the root cause.
    from torch.distributed.elastic.multiprocessing.errors import record

    record(train)()
    # Everything is written and the process group destroyed: leave without the interpreter's
    # teardown, where a native thread a library left running aborts the process now and
    # then ("terminate called without an active exception": DeepSpeed ZeRO-3 on a busy CPU,
    # after the last step; one run in a few when three ran at once on two cores).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def train():
    with open(sys.argv[1]) as f:
        job = json.load(f)
    if job.get("watch_host") == os.uname().nodename:
        watch(job["watch_pid"])
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = job["device"] == "cuda"
    if cuda:
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, int(job["threads"])))
    dist.init_process_group("nccl" if cuda else "gloo")
    torch.manual_seed(job["seed"])
    torch.use_deterministic_algorithms(not cuda)

    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    # The starting weights' names and dtypes (one file, or an HF index's shards): the
    # trained ones are written under the same.
    import glob

    names = {}
    for path in sorted(glob.glob(os.path.join(job["init"], "model*.safetensors"))):
        with safe_open(path, "pt") as f:
            names.update({k: f.get_slice(k).get_dtype() for k in f.keys()})
    dtypes = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
    names = {k: dtypes.get(d, torch.float32) for k, d in names.items()}
    # Float32 master weights, as the embedded trainer keeps.
    model = AutoModelForCausalLM.from_pretrained(job["init"], torch_dtype=torch.float32).to(device)
    model.config.use_cache = False
    if job["gradient_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    strategy = job["strategy"]
    trainer = (DeepSpeedZero3 if strategy == "deepspeed_zero3" else TorchParallel)(model, job, device, cuda)
    plan, meta = read_plan(job["sequences"], job["plan"])
    steps = job["steps"]
    start = 0
    if job["resume"]:
        trainer.load(job["state"])
        with open(os.path.join(job["state"], "position.json")) as f:
            start = json.load(f)["step"]
    log(f"rank {rank} of {world}, {strategy}, {device}, steps {start}..{steps}")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if job["bf16"] else nullcontext
    for step in range(start, steps):
        micros = plan[step]
        scored, lr = meta[step]
        # This process's share of the step's micro-batches; where it has fewer than another,
        # it passes over one with weight 0 so that every process reduces at the same pass.
        mine = micros[rank::world]
        passes = math.ceil(len(micros) / world)
        total = torch.zeros((), dtype=torch.float64)
        for i in range(passes):
            rows, weight = (mine[i], 1.0) if i < len(mine) else (micros[0], 0.0)
            share = trainer.pass_(collate(rows, job["pad"], device), scored, weight,
                                  i == passes - 1, world, autocast)
            total += share.detach().double().cpu()
        if world > 1:
            dist.all_reduce(total)
        norm = trainer.step(lr)
        emit(rank, step=step, loss=total.item(), lr=lr, grad_norm=norm)
        done = step + 1
        if job["save_every"] > 0 and done % job["save_every"] == 0 and done < steps:
            save_state(job, rank, trainer, done)
    msd = trainer.weights()
    if rank == 0:
        os.makedirs(job["out"], exist_ok=True)
        save_weights(msd, os.path.join(job["out"], "model.safetensors"), names)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
