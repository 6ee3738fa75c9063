"""Logs people can read: a cluster job's log gets one line per epoch, no library noise, and the
files a run leaves behind read the same on any machine."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient


@pytest.mark.slow
def test_a_run_logged_to_a_file_reads_well(fast_overrides, small_manifest, tmp_path):
    args = [*fast_overrides, "trainer.max_epochs=2", "name=logged"]
    proc = subprocess.run([sys.executable, "-m", "dflab", "train", "experiments/mesonet4_demo.yaml", *args],
                          capture_output=True, text=True, timeout=600)  # stdout is a pipe, as under nohup
    assert proc.returncode == 0, proc.stderr[-3000:]
    out, err = proc.stdout, proc.stderr
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"], out[-2000:]
    assert all(re.search(r"train/loss [\d.]+ .*val/loss [\d.]+ .*val/video_auroc [\d.]+ .*lr (?!0 )[\d.e+-]+  [\d.]+ s", line) for line in epochs)
    assert "ETA" in epochs[0] and "\r" not in out  # no progress bar written into the file
    for noise in ("LeafSpec", "smaller than the logging interval", "exists and is not empty"):
        assert noise not in err
    assert "Total FLOPs: 0" not in out and re.search(r"Total FLOPs: [\d.]+ [KMG]", out)

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    local = client.download_artifacts(run.info.run_id, "predictions/predictions_val.csv", str(tmp_path))
    with open(local) as fh:
        paths = [row["path"] for row in csv.DictReader(fh)]
    assert paths and all(not p.startswith("/") and (small_manifest.parent / p).is_file() for p in paths)

    # The best checkpoint is on disk once: the MLflow artifact is the file training wrote.
    artifact = Path(run.info.artifact_uri.removeprefix("file://")) / "checkpoints"
    (stored,) = artifact.glob("best-*.ckpt")
    (local_best,) = Path(tmp_path / "outputs").glob(f"*/{run.info.run_id}/checkpoints/best-*.ckpt")
    assert os.path.samefile(stored, local_best)


def test_library_output_goes_through_a_logger(capsys):
    import logging

    from dflab.utils.report import report

    report("table\n")
    assert capsys.readouterr().out == "table\n"  # by default: the plain text on stdout
    log = logging.getLogger("dflab.report")
    level = log.level
    log.setLevel(logging.WARNING)  # a user (or a notebook) silences it like any logger
    try:
        report("hidden")
        assert capsys.readouterr().out == ""
    finally:
        log.setLevel(level)
