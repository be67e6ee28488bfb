"""Memory and time of `scorch import` on a large reference file (scripts/bench-import).

Writes a JSONL file of RECORDS records (default 100,000) from the reference files in
../shared/reference (teacher trajectories, every 25th a mentored-solving record with its
repairs; each record gets its own id), about 200 MB, then runs `scorch import`
on it under /usr/bin/time and prints wall time and peak memory as a Markdown row."""
import json, os, subprocess, sys, tempfile, time

scorch, shared = sys.argv[1], sys.argv[2]
records = int(os.environ.get("RECORDS", "100000"))
def read(name):
    with open(os.path.join(shared, "reference", name)) as f:
        return [json.loads(l) for l in f if l.strip()]
plain, mentored = read("math_bc_init_trajectories.jsonl"), read("math_mps_trajectories.jsonl")
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "big.jsonl")
    with open(path, "w") as f:
        for i in range(records):
            r = json.loads(json.dumps(mentored[i // 25 % len(mentored)] if i % 25 == 0 else plain[i % len(plain)]))
            r["original_task_info"]["id"] = f"big-{i}"
            f.write(json.dumps(r) + "\n")
    size = os.path.getsize(path)
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", scorch, "import", path, "--out", os.path.join(d, "out")],
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"scorch import failed: {p.stderr}")
    peak_kb = int(p.stderr.strip().splitlines()[-1])
    import pyarrow.parquet as pq
    meta = pq.ParquetFile(os.path.join(d, "out", "trajectories.parquet")).metadata
    assert meta.num_rows == records, meta.num_rows
    repairs = pq.ParquetFile(os.path.join(d, "out", "repairs.parquet")).metadata.num_rows
    assert repairs == (records + 24) // 25, repairs
    print(f"| `scorch import`, {records:,} records, {size / 1e6:.0f} MB JSONL | {wall:.2f} s | "
          f"{peak_kb / 1024:.0f} MB | {meta.num_row_groups} row groups |")
