#!/usr/bin/env python3
"""SCoRe-RL with LoRA, rollouts in process against rollouts on `scorch serve` (the adapter
loaded into the server after every update), on the same seeds.

Runs workflows/score.yaml once with `vars.lora` (everything up to SCoRe-RL is shared), then,
for each seed, `score_rl` and its test evaluation both ways, and prints each run's reward
curve and test accuracy with the paired differences (server minus in-process): their mean and
a 95% t-interval over the seeds.

Usage: scripts/rl_server_compare.py [--seeds 1 2 3] [--store URL] [--rl-lr 0.0001]
Environment: SCORCH_BIN (default target/debug/scorch).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

BIN = os.environ.get("SCORCH_BIN", "target/debug/scorch")
WF = "workflows/score.yaml"
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def run(store, sets, only=()):
    cmd = [BIN, "run", WF, "--store", store, "--json"]
    for s in sets:
        cmd += ["--set", s]
    for o in only:
        cmd += ["--only", o]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def node(record, node_id):
    return next(n for n in record["nodes"] if n["id"] == node_id)


def metrics(n):
    return n.get("metrics") or []


def measure(record):
    rl = node(record, "score_rl")
    curve = sorted((m["step"], m["value"]) for m in metrics(rl)
                   if m["name"] == "reward" and m.get("step") is not None)
    ev = node(record, "eval_score_rl[split=test]")
    acc = next(m["value"] for m in metrics(ev) if m["name"].startswith("accuracy.") and m["name"].endswith(".test"))
    return {"curve": [v for _, v in curve], "accuracy": acc, "outcome": rl["outcome"]}


def interval(diffs):
    n = len(diffs)
    mean = statistics.fmean(diffs)
    if n < 2:
        return mean, float("nan")
    half = T975.get(n - 1, 1.96) * statistics.stdev(diffs) / n ** 0.5
    return mean, half


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--store", default="file://.scorch-compare")
    ap.add_argument("--rl-lr", default="0.0001")
    ap.add_argument("--lora-rank", default="8")
    a = ap.parse_args()
    base = [f"vars.lora={{rank: {a.lora_rank}}}", f"vars.rl_lr={a.rl_lr}"]
    print(f"rl-server-compare: the shared pipeline (store {a.store})", file=sys.stderr)
    run(a.store, base)
    server = subprocess.Popen([BIN, "serve", "warm_sft", "--store", a.store, "--device", "cpu",
                               "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        url = server.stdout.readline().strip().removeprefix("listening on ")
        only = ["score_rl", "eval_score_rl[split=test]"]
        rows = []
        for seed in a.seeds:
            seeded = base + [f"nodes.score_rl.seed={seed}"]
            local = measure(run(a.store, seeded, only))
            remote = measure(run(a.store, seeded + [
                f"vars.rl_rollout={{kind: endpoint, base_url: '{url}'}}"], only))
            rows.append((seed, local, remote))
            print(f"seed {seed}: in process {local['accuracy']:.4f}, server {remote['accuracy']:.4f}",
                  file=sys.stderr)
    finally:
        server.kill()
    print("| seed | rollouts | reward per step | mean reward | test accuracy |")
    print("|---|---|---|---|---|")
    for seed, local, remote in rows:
        for label, m in (("in process", local), ("server", remote)):
            curve = " ".join(f"{v:.3f}" for v in m["curve"])
            print(f"| {seed} | {label} | {curve} | {statistics.fmean(m['curve']):.3f} | "
                  f"{100 * m['accuracy']:.1f}% |")
    for name, get in (("mean reward", lambda m: statistics.fmean(m["curve"])),
                      ("test accuracy (points)", lambda m: 100 * m["accuracy"])):
        diffs = [get(r) - get(l) for _, l, r in rows]
        mean, half = interval(diffs)
        print(f"\nserver - in process, {name}: {mean:+.3f} ± {half:.3f} (95% paired t, "
              f"{len(diffs)} seeds; differences {', '.join(f'{d:+.3f}' for d in diffs)})")


if __name__ == "__main__":
    main()
