import csv
import math
import sqlite3
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.config import flatten, to_dict
from dflab.config.schema import OptimConfig
from dflab.experiment import build_experiment, load_experiment
from dflab.training.module import DetectorModule, NonFiniteLossError
from dflab.training.train import build_module, run_experiment

EXPERIMENTS = sorted(Path("experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_is_valid_as_shipped(path):
    cfg = load_experiment(path)  # checks data.options against the dataset adapter too
    assert cfg.name == path.stem
    assert not Path(cfg.data.root).is_absolute(), "shipped configs use relative paths"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_experiment_runs_one_batch(path, fast_overrides):
    cfg = load_experiment(path, fast_overrides)
    dm = DeepfakeDataModule(cfg.data, cfg.faces, progress=False)
    trainer = pl.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(build_module(cfg), datamodule=dm)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def _manifest_with_methods(small_manifest: Path, out: Path) -> Path:
    """The small demo manifest with its fakes dealt to two named methods."""
    with small_manifest.open() as fh:
        rows = list(csv.DictReader(fh))
    with out.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split", "group", "method"])
        for i, r in enumerate(rows):
            method = ("Alpha", "Beta")[i % 2] if r["label"] in ("1", "fake") else ""
            w.writerow([small_manifest.parent / r["path"], r["label"], r["split"], r["group"], method])
    return out


def test_run_logs_params_metrics_and_artifacts_to_mlflow(fast_overrides, small_manifest, tmp_path):
    manifest = _manifest_with_methods(small_manifest, tmp_path / "methods.csv")
    cfg = build_experiment({"name": "unit"}, [*fast_overrides, "trainer.max_epochs=2", f"data.root={manifest}"])
    result = run_experiment(cfg, progress=False)
    assert (tmp_path / "mlflow.db").is_file()
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # a real SQLite tracking store
        assert db.execute("select count(*) from runs").fetchone()[0] == 1
    client = MlflowClient(cfg.logging.tracking_uri)
    run = client.get_run(result.run_id)
    assert set(flatten(to_dict(cfg))) <= set(run.data.params)
    history = client.get_metric_history(result.run_id, "val/video_auroc")
    assert len(history) >= 2, "one validation value per epoch"
    for key in ("train/frame_auroc", "val/frame_eer", "val/video_ap", "val/video_logloss", "test/video_auroc"):
        assert key in run.data.metrics
    assert run.data.metrics["best/val/video_auroc"] == pytest.approx(result.best_score)
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "data_report.json", "checkpoints", "plots", "predictions", "reports"} <= artifacts
    # Test metrics broken down per manipulation method, as metrics and as a CSV.
    assert {"test/by_method/Alpha/video_auroc", "test/by_method/Beta/video_auroc"} <= set(run.data.metrics)
    local = client.download_artifacts(result.run_id, "reports/breakdown_test.csv", str(tmp_path))
    with open(local) as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"Alpha", "Beta"}
    assert all(int(r["n_real"]) > 0 and int(r["n_fake"]) > 0 for r in rows.values())
    ckpts = [a.path for a in client.list_artifacts(result.run_id, "checkpoints")]
    assert any(p.endswith(".ckpt") for p in ckpts)
    ckpt = torch.load(result.best_checkpoint, weights_only=False)
    assert ckpt["dflab_config"]["name"] == "unit"


class _NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x.flatten(1).mean(1) * self.w * float("nan")


def test_nan_loss_stops_with_a_clear_message():
    module = DetectorModule(_NaNNet(), OptimConfig(lr=0.5))
    batch = {"clip": torch.rand(2, 1, 3, 8, 8), "label": torch.tensor([0, 1]),
             "video_idx": torch.tensor([0, 1]), "clip_idx": torch.tensor([0, 1])}
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan .*optim.lr=0.5"):
        module.training_step(batch, 0)


@pytest.mark.slow
def test_resume_continues_the_run_optimizer_and_mlflow_history(fast_overrides, tmp_path):
    cfg = build_experiment({"name": "resumable"}, fast_overrides)
    first = run_experiment(cfg, progress=False)
    last = next(Path(cfg.logging.output_dir).glob(f"*/{first.run_id}/checkpoints/last.ckpt"))
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["dflab_mlflow_run_id"] == first.run_id and state["epoch"] == 0
    assert state["optimizer_states"] and state["lr_schedulers"]

    more = build_experiment({"name": "resumable"}, [*fast_overrides, "trainer.max_epochs=3"])
    resumed = run_experiment(more, progress=False, resume=first.run_id)  # by run id
    assert resumed.run_id == first.run_id
    client = MlflowClient(cfg.logging.tracking_uri)
    history = client.get_metric_history(first.run_id, "val/video_auroc")
    assert sorted(m.step for m in history) == sorted({m.step for m in history}) and len(history) == 3
    assert client.get_run(first.run_id).data.tags["dflab.resumed_from"] == str(last)
    final = torch.load(next(Path(cfg.logging.output_dir).glob(f"*/{first.run_id}/checkpoints/last.ckpt")),
                       map_location="cpu", weights_only=False)
    assert final["epoch"] >= 2 and final["global_step"] > state["global_step"]


def test_resume_names_what_it_could_not_find(tmp_path):
    from dflab.training.resume import resume_point

    with pytest.raises(FileNotFoundError, match=r"--resume abc123: not a checkpoint file"):
        resume_point("abc123", tmp_path)


@pytest.mark.slow
def test_resume_uses_the_checkpoint_config_and_refuses_a_different_one(fast_overrides, tmp_path, capsys):
    from dflab.cli.main import main

    cfg = build_experiment({"name": "resumable"}, [*fast_overrides, "optim.lr=0.002"])
    first = run_experiment(cfg, progress=False)
    last = next(Path(cfg.logging.output_dir).glob(f"*/{first.run_id}/checkpoints/last.ckpt"))
    # A different value of a key the run must keep is refused by name, before anything runs.
    assert main(["train", "experiments/mesonet4_demo.yaml", "model.backbone=resnet10t", "--resume", str(last)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dflab ")]
    assert len(err) == 1 and "model.backbone is 'resnet10t' here but 'meso4' in the checkpoint" in err[0]
    # Weights that do not fit the model are refused before the finished run is touched.
    state = torch.load(last, map_location="cpu", weights_only=True)
    state["state_dict"] = {"net.nothing": torch.zeros(1)}
    torch.save(state, tmp_path / "bad_weights.ckpt")
    assert main(["train", "experiments/mesonet4_demo.yaml", "--resume", str(tmp_path / "bad_weights.ckpt")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dflab ")]
    assert len(err) == 1 and "bad_weights.ckpt: its weights do not fit" in err[0]
    untouched = MlflowClient(cfg.logging.tracking_uri).get_run(first.run_id)
    assert untouched.info.status == "FINISHED" and "dflab.resumed_from" not in untouched.data.tags
    # None of the original overrides (dataset, MLflow store, lr) need repeating.
    assert main(["train", "experiments/mesonet4_demo.yaml", "trainer.max_epochs=2", "--resume", str(last)]) == 0
    client = MlflowClient(cfg.logging.tracking_uri)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.params["optim.lr"] == "0.002"
    history = client.get_metric_history(first.run_id, "val/video_auroc")
    assert sorted(m.step for m in history) == sorted({m.step for m in history}) and len(history) == 2
    best = client.get_metric_history(first.run_id, "best/val/video_auroc")
    assert len({m.step for m in best}) == len(best) == 2  # one value per training segment, not repeated
