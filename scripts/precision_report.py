"""Compare the two arms of workflows/benchmarks/precision.yaml from a run record
(`scorch show RUN --json` on stdin): the warm start's loss curve in f32 and in bf16, step by
step, and the test accuracy of each with its Wilson 95% interval. Exits 1 if the stated
tolerance is not met: every logged loss within 5% of f32's, and each final accuracy inside
the other's interval."""
import json, math, sys

TOLERANCE = 0.05


def wilson(k, n, z=1.96):
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


run = json.load(sys.stdin)
nodes = {n["id"]: n for n in run["nodes"]}
curves, durations, acc = {}, {}, {}
for p in ("f32", "bf16"):
    sft = nodes[f"warm_sft[precision={p}]"]
    curves[p] = {m["step"]: m["value"] for m in sft["metrics"] if m["name"] == "loss" and "step" in m}
    durations[p] = sft.get("duration_ms", 0) / 1000
    ev = nodes[f"eval_warm[precision={p}]"]
    acc[p] = next(m["value"] for m in ev["metrics"] if m["name"].startswith("accuracy."))
n = int(run["vars"].get("eval_tasks", 300))
print(f"run {run['id']}: warm start of {run['vars'].get('warm_steps')} steps x {run['vars'].get('batch')}")
print("| step | loss f32 | loss bf16 | bf16 / f32 - 1 |\n|---|---|---|---|")
worst = 0.0
for step in sorted(curves["f32"]):
    a, b = curves["f32"][step], curves["bf16"].get(step, float("nan"))
    rel = b / a - 1
    worst = max(worst, abs(rel))
    print(f"| {step} | {a:.4f} | {b:.4f} | {rel:+.2%} |")
ci = {p: wilson(round(acc[p] * n), n) for p in acc}
for p in acc:
    print(f"test accuracy {p}: {acc[p]:.1%} [{ci[p][0]:.1%}, {ci[p][1]:.1%}] (n={n}); training {durations[p]:.0f} s")
inside = ci["bf16"][0] <= acc["f32"] <= ci["bf16"][1] and ci["f32"][0] <= acc["bf16"] <= ci["f32"][1]
ok = worst <= TOLERANCE and inside
print(f"largest loss difference {worst:.2%} (tolerance {TOLERANCE:.0%}); accuracies inside each other's "
      f"intervals: {inside}; bf16 took {durations['bf16'] / max(durations['f32'], 1e-9):.1f}x f32's time")
print("equal-loss check:", "met" if ok else "NOT met")
sys.exit(0 if ok else 1)
