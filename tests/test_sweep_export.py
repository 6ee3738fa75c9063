"""End to end: a 2-trial sweep (real Optuna storage, real MLflow database), then a third trial
added to the same study, then export of the best checkpoint with a parity check."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from dflab.experiment import load_experiment
from dflab.export.export import export_run
from dflab.models.checkpoint import load_checkpoint
from dflab.predict.run import predict
from dflab.sweeps.space import load_sweep
from dflab.sweeps.sweep import run_sweep

pytestmark = pytest.mark.slow


@pytest.fixture
def sweep_file(tmp_path, fast_overrides):
    spec = {
        "experiment": "experiments/mesonet4_demo.yaml",
        "study": "unit",
        "storage": f"sqlite:///{tmp_path}/optuna.db",
        "n_trials": 2,
        "mlflow_experiment": "unit-sweeps",
        "overrides": fast_overrides,
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "params": {"optim.lr": {"low": 1e-3, "high": 1e-2, "log": True},
                   "model.backbone": {"choices": ["meso4", "resnet10t"]}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def small_manifest_root(cfg) -> Path:
    """The folder of the sweep's dataset (a manifest CSV beside its videos)."""
    return Path(load_experiment(cfg.experiment, cfg.overrides).data.root).parent


def test_sweep_resumes_study_logs_children_and_exports_best(sweep_file, tmp_path):
    cfg = load_sweep(sweep_file)
    study = run_sweep(cfg, progress=False)
    assert len(study.trials) == 2

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("unit-sweeps")
    parents = client.search_runs([exp.experiment_id], "tags.`dflab.kind` = 'sweep'")
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 2
    keys = [set(c.data.params) for c in children]
    assert keys[0] == keys[1] and {"optim.lr", "model.backbone", "trainer.max_epochs"} <= keys[0]
    assert parent.info.status == "FINISHED"
    assert all("error" not in t.user_attrs for t in study.trials)
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["optuna.state"] == "COMPLETE"
        assert "dflab.error" not in child.data.tags
        assert "val/video_auroc" in child.data.metrics
        assert "checkpoints" in {a.path for a in client.list_artifacts(child.info.run_id)}
    best_run = parent.data.tags["best_run_id"]
    assert best_run == study.best_trial.user_attrs["mlflow_run_id"]
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    parent_files = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "trials.csv", "plots"} <= parent_files
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "plots")] == [
        "plots/parallel_coordinates.png", "plots/sweep_report.html"]
    page = Path(client.download_artifacts(parent.info.run_id, "plots/sweep_report.html", str(tmp_path))).read_text()
    assert page.count("plotly-graph-div") >= 2 and "video_auroc" in page and "Parallel coordinates" in page

    # The best trial is exported and registered as dflab-<study>, its version the champion.
    assert parent.data.tags["dflab.registered_model"] == "dflab-unit"
    champion = client.get_model_version_by_alias("dflab-unit", "champion")
    assert champion.run_id == best_run and str(champion.version) == parent.data.tags["dflab.registered_version"]
    assert {"model/MLmodel"} <= {a.path for a in client.list_artifacts(best_run, "model")}

    # Running the sweep again adds to the same study and the same parent run.
    study = run_sweep(load_sweep(sweep_file, ["n_trials=1"]), progress=False)
    reloaded = optuna.load_study(study_name="unit", storage=cfg.storage)
    assert len(reloaded.trials) == 3
    assert len(client.search_runs([exp.experiment_id], "tags.`dflab.kind` = 'sweep'")) == 1
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 3

    # The champion moved only if the best trial changed to a better one.
    versions = client.search_model_versions("name='dflab-unit'")
    assert len(versions) == 2
    champion = client.get_model_version_by_alias("dflab-unit", "champion")
    assert champion.run_id == client.get_run(parent.info.run_id).data.tags["best_run_id"]

    # `dflab predict` with no model scores with that champion.
    videos = sorted(str(p) for p in Path(small_manifest_root(cfg)).rglob("*.mp4"))[:2]
    scored = predict(videos, out=tmp_path / "predict", tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                     progress=False)
    assert scored.model_id == f"models:/dflab-unit/{champion.version}"
    assert all(r.scored for r in scored.results)

    # Export the best checkpoint of the latest sweep (no run id given).
    result = export_run(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", out_dir=tmp_path / "export")
    best_run = client.get_run(parent.info.run_id).data.tags["best_run_id"]
    assert result.onnx_path.parent.name == best_run
    assert result.onnx_max_abs_diff <= 1e-4 and result.pt2_max_abs_diff <= 1e-4
    assert result.num_frames > 4
    exported = {a.path for a in client.list_artifacts(best_run, "export")}
    assert {"export/model.onnx", "export/model.pt2", "export/export.json"} <= exported
    meta = json.loads((result.onnx_path.parent / "export.json").read_text())
    assert meta["face_detector"] == "blazeface" and meta["face_crop"] == "box"
    assert "export/onnx_max_abs_diff" in client.get_run(best_run).data.metrics

    # The exported files score like the checkpoint on new input, batch size free.
    ckpt = next(Path(client.download_artifacts(best_run, "checkpoints", str(tmp_path))).glob("best*.ckpt"))
    cfg_run, net = load_checkpoint(ckpt)
    size = cfg_run.data.image_size
    x = torch.rand(5, 3, size, size)
    with torch.no_grad():
        eager = net(x).numpy()
    onnx_logit = ort.InferenceSession(str(result.onnx_path)).run(["logit"], {"frames": x.numpy()})[0]
    pt2_logit = torch.export.load(result.pt2_path).module()(x)[0].detach().numpy()
    np.testing.assert_allclose(onnx_logit, eager, atol=1e-4)
    np.testing.assert_allclose(pt2_logit, eager, atol=1e-5)
