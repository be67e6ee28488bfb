"""Reads what a scorch run sent to TensorBoard and MLflow with their own readers, and prints
it as one JSON document for tests/trackers.rs to check.

usage: trackers_check.py TB_DIR MLFLOW_URI EXPERIMENT RUN_ID
"""
import json
import os
import sys
import tempfile

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
import mlflow
from mlflow.tracking import MlflowClient

tb_dir, uri, experiment, run_id = sys.argv[1:5]

tensorboard = {}
run_dir = os.path.join(tb_dir, run_id)
for node in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
    acc = EventAccumulator(os.path.join(run_dir, node))
    acc.Reload()
    tensorboard[node] = {
        tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]
    }

mlflow.set_tracking_uri(uri)
client = MlflowClient(uri)
exp = client.get_experiment_by_name(experiment)
runs = client.search_runs([exp.experiment_id])
parent = next(r for r in runs if r.info.run_name == run_id)
children = {}
for r in runs:
    if r.data.tags.get("mlflow.parentRunId") != parent.info.run_id:
        continue
    history = {
        key: [[m.step, m.value] for m in client.get_metric_history(r.info.run_id, key)]
        for key in r.data.metrics
    }
    with tempfile.TemporaryDirectory() as d:
        files = {a.path for a in client.list_artifacts(r.info.run_id)}
        log = None
        if "node.log" in files:
            log = open(client.download_artifacts(r.info.run_id, "node.log", d)).read()
    children[r.info.run_name] = {
        "status": r.info.status,
        "params": r.data.params,
        "tags": {k: v for k, v in r.data.tags.items() if k.startswith("scorch.")},
        "metrics": history,
        "log": log,
    }
with tempfile.TemporaryDirectory() as d:
    record = json.load(open(client.download_artifacts(parent.info.run_id, "run.json", d)))
print(json.dumps({
    "tensorboard": tensorboard,
    "mlflow": {
        "parent": {
            "status": parent.info.status,
            "params": parent.data.params,
            "metrics": parent.data.metrics,
            "record_id": record["id"],
        },
        "children": children,
    },
}))
