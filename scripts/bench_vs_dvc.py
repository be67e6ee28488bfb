"""scorch against DVC on the same generated pipeline of exec stages (scripts/bench-vs-dvc).

Each of N stages runs `python3 step.py IN OUT SCALE INDEX`: stage 0 writes a number, stage i
reads stage (i-1)//2's and writes its own plus its index, a binary tree. Stages 37 and up read
the parameter `scale_b`, the rest `scale` (so changing `scale_b` reruns 63 of 100 stages).
Every stage's command and result differ (its index), so each is work of its own. Timed, in
the same folder layout for both tools, `ROUNDS` times each (fresh folders per round), medians:
first run, a no-change rerun, `scorch plan` against `dvc status`, a run after changing
`scale_b`, and, as a row of its own, a first run of the same tree without the indices, whose
stages at each depth are the same command on the same input: scorch's content keys run such
identical work once (a feature), DVC runs every stage. Prints a Markdown table; peak memory of
each command from /usr/bin/time.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

N = int(os.environ.get("STAGES", "100"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
SCORCH = os.path.abspath(sys.argv[1])
DVC = os.path.abspath(sys.argv[2])
SPLIT = 37

STEP = """import sys
src, out, scale = sys.argv[1], sys.argv[2], float(sys.argv[3].split("=")[-1])
index = int(sys.argv[4].split("=")[-1]) if len(sys.argv) > 4 else 0
x = 1.0 if src == "-" else float(open(src).read())
import os
if os.path.isdir(out) or not out.endswith(".txt"):
    os.makedirs(out, exist_ok=True); out = os.path.join(out, "data.txt")
open(out, "w").write(str(x * scale + 1 + index))
"""


def param(i):
    return "scale_b" if i >= SPLIT else "scale"


def index_arg(i, distinct):
    return f', "--index={i}"' if distinct else ""


def scorch_project(d, distinct=True):
    lines = ["name: bench", "vars: {scale: 1, scale_b: 1}", "nodes:"]
    for i in range(N):
        p = param(i)
        ix = index_arg(i, distinct)
        if i == 0:
            lines.append(f'  s0: {{kind: exec, params: {{command: [python3, step.py, "-", "{{outputs.out}}", "--scale=${{vars.{p}}}"{ix}], outputs: {{out: {{type: blobs}}}}}}}}')
        else:
            src = (i - 1) // 2
            lines.append(f'  s{i}: {{kind: exec, params: {{command: [python3, step.py, "{{inputs.src}}/data.txt", "{{outputs.out}}", "--scale=${{vars.{p}}}"{ix}], blob_inputs: [src], outputs: {{out: {{type: blobs}}}}}}, inputs: {{src: {{from: s{src}.out}}}}}}')
    open(os.path.join(d, "wf.yaml"), "w").write("\n".join(lines) + "\n")
    open(os.path.join(d, "step.py"), "w").write(STEP)


def dvc_project(d, distinct=True):
    open(os.path.join(d, "step.py"), "w").write(STEP)
    open(os.path.join(d, "params.yaml"), "w").write("scale: 1\nscale_b: 1\n")
    stages = {}
    for i in range(N):
        p = param(i)
        src = "-" if i == 0 else f"data/s{(i - 1) // 2}.txt"
        deps = ["step.py"] + ([] if i == 0 else [src])
        ix = f" --index={i}" if distinct else ""
        stages[f"s{i}"] = {"cmd": f"python3 step.py {src} data/s{i}.txt --scale=${{{p}}}{ix}", "deps": deps,
                           "params": [p], "outs": [f"data/s{i}.txt"]}
    os.makedirs(os.path.join(d, "data"))
    open(os.path.join(d, "dvc.yaml"), "w").write(json.dumps({"stages": stages}))
    subprocess.run([DVC, "init", "--no-scm", "-q"], cwd=d, check=True)


def timed(cmd, cwd, env=None):
    """Seconds and peak KB of one command."""
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, cwd=cwd, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    secs = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"{cmd} failed in {cwd}:\n{r.stderr[-2000:]}")
    return secs, int(r.stderr.strip().splitlines()[-1])


def set_scale_b(d, value, tool):
    if tool == "dvc":
        open(os.path.join(d, "params.yaml"), "w").write(f"scale: 1\nscale_b: {value}\n")


def one_round(tool):
    out = {}
    for distinct in (True, False):
        d = tempfile.mkdtemp(prefix=f"bench-{tool}-")
        env = dict(os.environ, SCORCH_STORE=f"file://{d}/.scorch")
        (scorch_project if tool == "scorch" else dvc_project)(d, distinct)
        if tool == "scorch":
            run = [SCORCH, "run", "wf.yaml", "-q", "-j", "2"]
            cmds = {"first run": run, "no-change rerun": run, "plan / status": [SCORCH, "plan", "wf.yaml"],
                    "param change (63 stages)": run + ["--set", "vars.scale_b=2"]}
        else:
            cmds = {"first run": [DVC, "repro", "-q"], "no-change rerun": [DVC, "repro", "-q"],
                    "plan / status": [DVC, "status", "-q"], "param change (63 stages)": [DVC, "repro", "-q"]}
        if not distinct:
            # The same tree without indices: at each depth one command on one input.
            cmds = {"first run, stages identical at each depth": cmds["first run"]}
        for name, cmd in cmds.items():
            if name.startswith("param"):
                set_scale_b(d, 2, tool)
            out[name] = timed(cmd, d, env)
        shutil.rmtree(d, ignore_errors=True)
    return out


def main():
    ver = subprocess.run([DVC, "--version"], capture_output=True, text=True).stdout.strip()
    res = {"scorch": [], "dvc": []}
    for _ in range(ROUNDS):
        for tool in ("scorch", "dvc"):  # alternate: the machine's speed drifts
            res[tool].append(one_round(tool))
    print(f"{N} exec stages, {ROUNDS} rounds alternating the tools, medians; DVC {ver}; "
          f"peak memory of the command (MB)")
    print("| step | scorch | DVC | DVC / scorch | scorch peak | DVC peak |\n|---|---|---|---|---|---|")
    for step in res["scorch"][0]:
        s = statistics.median(r[step][0] for r in res["scorch"])
        v = statistics.median(r[step][0] for r in res["dvc"])
        sm = max(r[step][1] for r in res["scorch"]) / 1024
        vm = max(r[step][1] for r in res["dvc"]) / 1024
        print(f"| {step} | {s:.2f} s | {v:.2f} s | {v / s:.1f}x | {sm:.0f} | {vm:.0f} |")


main()
