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
