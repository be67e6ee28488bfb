"""Baseline for benches/parquet.rs: pyarrow's `write_table` (its defaults, Snappy) of a table
already in memory. Arguments: SOURCE.parquet OUT.parquet REPS. Prints the median wall time
and the mean CPU time (all threads) of a write, in ms."""
import statistics, sys, time

import pyarrow.parquet as pq

source, out, reps = sys.argv[1], sys.argv[2], int(sys.argv[3])
table = pq.read_table(source)
pq.write_table(table, out, compression="snappy")  # warm-up
times = []
cpu = time.process_time()
for _ in range(reps):
    t = time.perf_counter()
    pq.write_table(table, out, compression="snappy")
    times.append((time.perf_counter() - t) * 1e3)
print(statistics.median(times), (time.process_time() - cpu) * 1e3 / reps)
