"""Cross-dataset evaluation of a trained run: one table over several test sets, logged to MLflow."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from dflab.evaluate.cross_dataset import cross_dataset_evaluation
from dflab.experiment import build_experiment
from dflab.training.train import run_experiment

pytestmark = pytest.mark.slow


def _dataset_yaml(path: Path, name: str, manifest: Path, face_cache: Path) -> Path:
    path.write_text(f"name: {name}\ndata:\n  source: manifest\n  root: {manifest}\n  num_workers: 0\n"
                    "  eval_clips_per_video: 2\n"
                    f"faces:\n  cache_dir: {face_cache}\n  num_frames: 4\n  workers: 0\n"
                    "trainer:\n  accelerator: cpu\n")
    return path


def test_one_table_over_several_test_sets(fast_overrides, small_manifest, face_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outputs/evaluation/ lands here
    cfg = build_experiment({"name": "src"}, fast_overrides)
    run = run_experiment(cfg, progress=False)

    # A second, test-only dataset: the fakes and reals of two test identities only.
    with small_manifest.open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    keep = sorted({r["group"] for r in rows})[:1]
    subset = tmp_path / "subset.csv"
    with subset.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "split", "group"])
        for r in rows:
            if r["group"] in keep:
                w.writerow([small_manifest.parent / r["path"], r["label"], "test", r["group"]])

    sets = [_dataset_yaml(tmp_path / "a.yaml", "demo-all", small_manifest, face_cache),
            _dataset_yaml(tmp_path / "b.yaml", "demo-one-id", subset, face_cache)]
    results = cross_dataset_evaluation(sets, run_id=run.run_id, tracking_uri=cfg.logging.tracking_uri,
                                       progress=False)
    assert [r.name for r in results] == ["demo-all", "demo-one-id"]
    for r in results:
        assert r.n_real > 0 and r.n_fake > 0
        assert math.isfinite(r.metrics["video_auroc"]) and math.isfinite(r.metrics["frame_auroc"])
    assert results[0].n_real + results[0].n_fake > results[1].n_real + results[1].n_fake
    # The full test set here is the run's own test split: the same video AUROC as training logged.
    client = MlflowClient(cfg.logging.tracking_uri)
    logged = client.get_run(run.run_id).data.metrics
    assert results[0].metrics["video_auroc"] == pytest.approx(logged["test/video_auroc"], abs=1e-6)
    assert logged["eval/demo-one-id/video_auroc"] == pytest.approx(results[1].metrics["video_auroc"])
    names = {Path(a.path).name for a in client.list_artifacts(run.run_id, "evaluation")}
    assert {"cross_dataset.csv", "cross_dataset_roc.png", "predictions_demo-one-id.csv"} <= names
    table = client.download_artifacts(run.run_id, "evaluation/cross_dataset.csv", str(tmp_path))
    with open(table) as fh:
        assert [r["test_set"] for r in csv.DictReader(fh)] == ["demo-all", "demo-one-id"]


def test_ensemble_of_two_runs_averages_logits(fast_overrides, small_manifest, face_cache, tmp_path, monkeypatch):
    import torch

    from dflab.models.checkpoint import load_checkpoint
    from dflab.models.ensemble import EnsembleClassifier

    monkeypatch.chdir(tmp_path)
    runs = [run_experiment(build_experiment({"name": f"member{k}"}, [*fast_overrides, f"seed={k}",
                                        f"model.backbone={name}"]), progress=False)
            for k, name in enumerate(("meso4", "resnet10t"))]
    uri = build_experiment({}, fast_overrides).logging.tracking_uri
    sets = [_dataset_yaml(tmp_path / "a.yaml", "demo-all", small_manifest, face_cache)]
    ids = [r.run_id for r in runs]
    single = [cross_dataset_evaluation(sets, run_id=rid, tracking_uri=uri, progress=False)[0] for rid in ids]
    both = cross_dataset_evaluation(sets, run_id=ids, tracking_uri=uri, progress=False)[0]
    assert both.n_real == single[0].n_real and math.isfinite(both.metrics["video_auroc"])
    # the ensemble's results go to a new run that names its members
    client = MlflowClient(uri)
    ensembles = client.search_runs([client.get_run(ids[0]).info.experiment_id], "tags.`dflab.kind` = 'ensemble'")
    assert len(ensembles) == 1 and ensembles[0].data.tags["dflab.members"] == ",".join(ids)
    assert ensembles[0].data.metrics["eval/demo-all/video_auroc"] == pytest.approx(both.metrics["video_auroc"])
    # mean of logits, member by member
    nets = [load_checkpoint(r.best_checkpoint)[1].eval() for r in runs]
    clips = torch.rand(3, 1, 3, 64, 64)
    with torch.no_grad():
        expected = (nets[0](clips[:, 0]) + nets[1](clips[:, 0])) / 2
        got = EnsembleClassifier(nets)(clips)
        prob = EnsembleClassifier(nets, "mean_prob")(clips)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(torch.sigmoid(prob), (torch.sigmoid(nets[0](clips[:, 0])) +
                                                torch.sigmoid(nets[1](clips[:, 0]))) / 2, atol=1e-5)


def test_ensemble_members_must_read_the_same_crops(fast_overrides):
    from dflab.evaluate.cross_dataset import check_members_agree

    a = build_experiment({}, fast_overrides)
    b = build_experiment({}, [*fast_overrides, "faces.margin=1.5"])
    check_members_agree([("a", a), ("a2", a)])
    with pytest.raises(ValueError, match=r"faces.margin is 1.3 in a but 1.5 in b"):
        check_members_agree([("a", a), ("b", b)])
