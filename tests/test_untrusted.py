"""Untrusted files run no code: crafted checkpoints are refused with one line, wherever they come from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from dflab.cli.main import main
from dflab.models.checkpoint import CheckpointError, read_checkpoint


class _Payload:
    """Unpickling this object would create the marker file (what a malicious checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def _crafted(path: Path, marker: Path) -> Path:
    """A file shaped like a dflab checkpoint whose unpickling runs the payload."""
    torch.save({"state_dict": {}, "dflab_config": {"name": "x"}, "callbacks": {"evil": _Payload(marker)}}, path)
    return path


@pytest.fixture
def crafted(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-ran"
    return _crafted(tmp_path / "best-epoch00.ckpt", marker), marker


def test_the_payload_really_runs_when_unpickled(crafted) -> None:
    path, marker = crafted
    torch.load(path, weights_only=False)  # the danger the loader avoids
    assert marker.exists()


def test_a_crafted_checkpoint_is_refused_and_its_payload_never_runs(crafted) -> None:
    path, marker = crafted
    with pytest.raises(CheckpointError, match=r"best-epoch00\.ckpt: refused.*makedirs"):
        read_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"", "not a PyTorch checkpoint"),
    (b"name: not a checkpoint\n", "not a PyTorch checkpoint"),
    (b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n", "not a PyTorch checkpoint"),
    ("config-text", "not a dflab checkpoint"),
    (None, "not a dflab checkpoint"),
])
def test_files_that_are_not_checkpoints_are_named(tmp_path: Path, content, message) -> None:
    path = tmp_path / "model.ckpt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)
    elif content == "config-text":  # shaped like a dflab checkpoint, but its config is a string
        torch.save({"state_dict": {}, "dflab_config": "garbage"}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=rf"model\.ckpt: {message}"):
        read_checkpoint(path)


def _cli(capsys, *argv: str) -> tuple[int, str]:
    """Exit status and dflab's own error lines (MLflow's log and download bars left out)."""
    code = main(list(argv))
    lines = capsys.readouterr().err.splitlines()
    return code, "\n".join(line for line in lines if line.startswith("dflab "))


def test_evaluate_and_resume_refuse_a_crafted_checkpoint(crafted, fast_overrides, capsys) -> None:
    path, marker = crafted
    experiment = "experiments/mesonet4_demo.yaml"
    code, err = _cli(capsys, "evaluate", experiment, "--checkpoint", str(path),
                     *[f"--set={o}" for o in fast_overrides])
    assert code == 2 and "refused" in err and str(path) in err and len(err.splitlines()) == 1
    code, err = _cli(capsys, "train", experiment, *fast_overrides, "--resume", str(path))
    assert code == 2 and "refused" in err and str(path) in err and len(err.splitlines()) == 1
    assert not marker.exists()


def test_export_refuses_a_crafted_artifact_from_the_tracking_store(crafted, tmp_path, capsys) -> None:
    from mlflow import MlflowClient

    path, marker = crafted
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("shared", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment).info.run_id
    client.log_artifact(run, str(path), "checkpoints")
    empty = client.create_run(experiment).info.run_id  # a trial killed before its first checkpoint
    code, err = _cli(capsys, "export", "--run-id", run, "--tracking-uri", uri)
    assert code == 2 and "refused" in err and "best-epoch00.ckpt" in err and len(err.splitlines()) == 1
    assert not marker.exists()
    code, err = _cli(capsys, "export", "--run-id", empty, "--tracking-uri", uri)
    assert code == 2 and empty in err and "no best checkpoint" in err
    code, err = _cli(capsys, "export", "--run-id", "0123abcd", "--tracking-uri", uri)
    assert code == 2 and "'0123abcd' does not exist" in err
    code, err = _cli(capsys, "evaluate", "experiments/mesonet4_demo.yaml", "--run-id", "0123abcd",
                     "--tracking-uri", uri)
    assert code == 2 and "'0123abcd' does not exist" in err


def test_debug_shows_the_traceback(crafted) -> None:
    path, _ = crafted
    with pytest.raises(CheckpointError):
        main(["--debug", "evaluate", "experiments/mesonet4_demo.yaml", "--checkpoint", str(path)])


def test_a_genuine_checkpoint_loads(tmp_path: Path) -> None:
    """Everything a dflab checkpoint holds passes the restricted loader (one is made by training
    in tests/test_training.py; here its shape: Lightning's entries and dflab's)."""
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
    path = tmp_path / "ok.ckpt"
    torch.save({"state_dict": {"net.w": torch.ones(2)}, "dflab_config": {"name": "x", "seed": 1},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3, "params": [0]}]}],
                "callbacks": {"ModelCheckpoint{'monitor': 'val/auroc'}": {"best_model_score": torch.tensor(0.9),
                                                                          "best_model_path": "/x/best.ckpt"}},
                "dflab_mlflow_run_id": "abc"}, path)
    assert read_checkpoint(path)["dflab_mlflow_run_id"] == "abc"
