"""DDP with two real CPU processes (gloo), launched through the CLI as a user would."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def test_ddp_two_processes_validate_on_the_whole_split(fast_overrides, tmp_path):
    args = [*fast_overrides, "trainer.devices=2", "trainer.strategy=ddp", "trainer.max_epochs=2",
            "data.eval_clips_per_video=3", "name=ddp"]
    proc = subprocess.run([sys.executable, "-m", "dflab", "train", "experiments/mesonet4_demo.yaml", *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "gloo" in proc.stderr + proc.stdout or "GLOBAL_RANK: 1" in proc.stderr + proc.stdout

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, "rank 1 must not open a second MLflow run"
    run = runs[0]
    local = client.download_artifacts(run.info.run_id, "predictions/predictions_val.csv", str(tmp_path))
    with open(local) as fh:
        rows = list(csv.DictReader(fh))
    report_path = client.download_artifacts(run.info.run_id, "data_report.json", str(tmp_path))
    report = json.loads(Path(report_path).read_text())
    n_val = report["videos"]["val"]["real"] + report["videos"]["val"]["fake"]
    assert len(rows) == n_val, "validation predictions must cover every val video, not one rank's shard"
    assert len({r["path"] for r in rows}) == n_val
    assert len(client.get_metric_history(run.info.run_id, "val/video_auroc")) == 2


def test_two_nodes_with_torchrun_train_one_run(fast_overrides, tmp_path):
    """``torchrun --nnodes=2 --nproc-per-node=1`` on 127.0.0.1: two "nodes" (two torchrun agents),
    Lightning's own TorchElastic environment, one MLflow run opened by global rank 0 only."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = [*fast_overrides, "trainer.num_nodes=2", "trainer.devices=1", "trainer.strategy=ddp",
            "trainer.max_epochs=1", "name=two-nodes"]
    torchrun = Path(sys.executable).with_name("torchrun")
    nodes = [subprocess.Popen([str(torchrun), "--nnodes=2", "--nproc-per-node=1", f"--node-rank={rank}",
                               "--master-addr=127.0.0.1", f"--master-port={port}", "-m", "dflab", "train",
                               "experiments/mesonet4_demo.yaml", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [o[-6000:] for o in outs]
    both = "\n".join(outs)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in both and "GLOBAL_RANK: 0, MEMBER: 1/2" in both
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1, "only global rank 0 opens an MLflow run"
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.params["trainer.num_nodes"] == "2"
    assert "MLflow run" in outs[0] and "MLflow run" not in outs[1]
