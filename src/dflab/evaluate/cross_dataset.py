"""Cross-dataset evaluation: score one checkpoint on the test split of several datasets.

The protocol of the field's generalisation tables (train on FaceForensics++, test on Celeb-DF,
DFDC, ...): the checkpoint's own crop settings (image size, frames per clip, face margin) are
kept, each dataset contributes only its data and face-detection settings, and every test set
gets the same metrics as training reports (frame and video AUROC, AP, accuracy, EER, log loss)
plus its per-method breakdown. The table, a ROC plot of all sets and every set's per-video
predictions are logged to the checkpoint's MLflow run under ``evaluation/``.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.config import ExperimentConfig
from dflab.datasets.resolve import dataset_roots
from dflab.experiment import load_experiment
from dflab.metrics.breakdown import BreakdownRow, breakdown, breakdown_table, write_breakdown
from dflab.metrics.predictions import as_arrays, keyed_predictions
from dflab.metrics.reports import plot_roc, write_predictions
from dflab.training.module import DetectorModule
from dflab.utils.report import report
from dflab.utils.tables import render_table
from dflab.utils.threads import set_training_threads

LEVEL_METRICS = ("frame_auroc", "video_auroc", "video_ap", "video_acc", "video_eer", "video_logloss")


@dataclass
class TestSetResult:
    """The scores of one test set.

    Attributes:
        name: the test set's name (its experiment name).
        n_real: real test videos scored.
        n_fake: fake test videos scored.
        excluded: test videos left out (no face, unreadable), each with its reason.
        metrics: ``frame_auroc``, ``video_auroc``, ... of the whole test split.
        rows: per-dataset and per-method breakdown.
    """

    name: str
    n_real: int
    n_fake: int
    excluded: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    rows: list[BreakdownRow] = field(default_factory=list)


def _test_config(trained: ExperimentConfig, target: ExperimentConfig) -> ExperimentConfig:
    """The target's data and faces with the checkpoint's crop settings (size, margin, mode)."""
    data = replace(target.data, image_size=trained.data.image_size,
                   frames_per_clip=trained.data.frames_per_clip, frame_stride=trained.data.frame_stride)
    faces = replace(target.faces, margin=trained.faces.margin, crop=trained.faces.crop)
    return replace(target, data=data, faces=faces)


def evaluate_on(module: DetectorModule, trained: ExperimentConfig, target: ExperimentConfig,
                progress: bool = True) -> tuple[TestSetResult, Any]:
    """Score ``module`` on the test split of ``target``'s dataset.

    Returns:
        The result and the video predictions keyed by video (for plots and prediction files).
    """
    cfg = _test_config(trained, target)
    set_training_threads(cfg.trainer.num_threads, cfg.data.num_workers)
    dm = DeepfakeDataModule(cfg.data, cfg.faces, seed=cfg.seed, progress=progress, required=("test",))
    module.set_track_score(cfg.faces.track_score)
    trainer = pl.Trainer(accelerator=trained.trainer.accelerator, devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=progress,
                         enable_model_summary=False)
    out = trainer.test(module, datamodule=dm, verbose=False)
    metrics = {k.removeprefix("test/"): float(v) for k, v in (out[0] if out else {}).items()}
    vids, probs, labels = module.predictions["test"]
    predictions = keyed_predictions(dm.split_items["test"], vids, probs, labels)
    n_fake = int(labels.sum())
    result = TestSetResult(cfg.name, len(labels) - n_fake, n_fake,
                           [e for e in dm.report()["excluded"] if e["split"] == "test"],
                           {k: metrics[k] for k in LEVEL_METRICS if k in metrics},
                           breakdown(predictions))
    return result, predictions


def results_table(results: Sequence[TestSetResult], title: str) -> str:
    """One row per test set: videos, frame and video AUROC, video AP/ACC/EER/log loss."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("test set", "real", "fake", "left out", "frame AUROC", "video AUROC", "video AP",
                "video ACC", "video EER", "video LogLoss"):
        table.add_column(col, justify="left" if col == "test set" else "right")
    for r in results:
        vals = [r.metrics.get(k, math.nan) for k in LEVEL_METRICS]
        table.add_row(r.name, str(r.n_real), str(r.n_fake), str(len(r.excluded)),
                      *("-" if math.isnan(v) else f"{v:.4f}" for v in vals))
    return render_table(table, 130)


def write_results(path: str | Path, results: Sequence[TestSetResult]) -> Path:
    """CSV ``test_set,n_real,n_fake,n_left_out,<metrics>``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["test_set", "n_real", "n_fake", "n_left_out", *LEVEL_METRICS])
        for r in results:
            w.writerow([r.name, r.n_real, r.n_fake, len(r.excluded),
                        *(f"{r.metrics.get(k, math.nan):.6f}" for k in LEVEL_METRICS)])
    return path


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return [value] if isinstance(value, (str, Path)) else list(value)


def check_members_agree(configs: Sequence[tuple[str, ExperimentConfig]]) -> None:
    """Ensemble members must read the same crops.

    Raises:
        ValueError: a crop setting differs (names the key, both members and values).
    """
    keys = {"data.image_size": lambda c: c.data.image_size,
            "data.frames_per_clip": lambda c: c.data.frames_per_clip,
            "data.frame_stride": lambda c: c.data.frame_stride,
            "faces.margin": lambda c: c.faces.margin, "faces.crop": lambda c: c.faces.crop}
    first_name, first = configs[0]
    for name, cfg in configs[1:]:
        for key, get in keys.items():
            if get(cfg) != get(first):
                raise ValueError(f"ensemble members read different crops: {key} is {get(first)!r} "
                                 f"in {first_name} but {get(cfg)!r} in {name}")


def cross_dataset_evaluation(
    datasets: Sequence[str | Path], *, run_id: str | Sequence[str] | None = None,
    checkpoint: str | Path | Sequence[str | Path] | None = None,
    tracking_uri: str | None = None, overrides: Sequence[str] = (),
    combine: str = "mean_logit", progress: bool = True,
) -> list[TestSetResult]:
    """Score a checkpoint, or an ensemble of several, on the test split of every dataset and
    log one table.

    Args:
        datasets: experiment (or dataset-only) YAML files naming the test sets.
        run_id: MLflow run(s) whose best checkpoint is scored; by default the best trial of the
            latest sweep. One run gets the results logged to it; several form an ensemble whose
            results go to a new MLflow run tagged with its members.
        checkpoint: local checkpoint file(s) instead of runs (results are only printed and
            written under ``outputs/evaluation/``).
        tracking_uri: MLflow tracking URI of the runs (default: ``$MLFLOW_TRACKING_URI``, else
            ``sqlite:///mlruns/mlflow.db``).
        overrides: ``key=value`` overrides applied to every dataset config.
        combine: how an ensemble combines its members: ``mean_logit`` or ``mean_prob``.
        progress: progress bars.
    """
    from dflab.models.checkpoint import load_checkpoint
    from dflab.models.ensemble import EnsembleClassifier
    from dflab.tracking.mlflow_utils import (
        existing_store_client,
        latest_sweep_best_run,
        run_checkpoint,
    )

    run_ids, checkpoints = _as_list(run_id), _as_list(checkpoint)
    if run_ids and checkpoints:
        raise ValueError("give run ids or checkpoints, not both")
    targets = [load_experiment(path, overrides) for path in datasets]  # refuse bad configs first
    client = existing_store_client(tracking_uri) if not checkpoints else None
    if client is not None and not run_ids:
        run_ids = [latest_sweep_best_run(client)]
    members: list[tuple[str, ExperimentConfig, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, rid in enumerate(run_ids):
            checkpoints.append(run_checkpoint(client, rid, f"{tmp}/{i}"))
        names = run_ids or [Path(c).stem for c in checkpoints]
        for name, ckpt in zip(names, checkpoints, strict=True):
            members.append((name, *load_checkpoint(ckpt)))
    check_members_agree([(name, cfg) for name, cfg, _ in members])
    trained = members[0][1]
    net = members[0][2] if len(members) == 1 else EnsembleClassifier([m[2] for m in members], combine)
    module = DetectorModule(net, trained.optim)
    if len(members) > 1 and client is not None:
        run_id = _ensemble_run(client, run_ids, combine, trained)
    else:
        run_id = run_ids[0] if run_ids else None

    results, curves = [], {}
    for target in targets:
        result, predictions = evaluate_on(module, trained, target, progress)
        results.append(result)
        curves[result.name] = predictions

    what = (f"{trained.name} ({trained.model.backbone})" if len(members) == 1 else
            f"ensemble of {len(members)} ({combine}: {', '.join(m[1].model.backbone for m in members)})")
    title = f"{what} on {len(results)} test set(s)"
    report(results_table(results, title))
    for r in results:
        if r.rows:
            report(breakdown_table(f"{r.name} test", r.rows))
        if r.excluded:
            report(f"{r.name}: {len(r.excluded)} test video(s) left out and not scored: "
                  + "; ".join(f"{Path(e['path']).name} ({e['reason']})" for e in r.excluded[:5]))

    out = Path("outputs/evaluation") / (run_id or "-".join(Path(c).stem for c in checkpoints))
    files = [write_results(out / "cross_dataset.csv", results)]
    arrays = {name: as_arrays(c) for name, c in curves.items()}
    files.append(plot_roc({name: (probs.numpy(), labels.numpy()) for name, (probs, labels) in arrays.items()},
                          out / "cross_dataset_roc.png", title))
    for r, target in zip(results, targets, strict=True):
        files.append(write_predictions(out / f"predictions_{r.name}.csv", curves[r.name],
                                       dataset_roots(target.data)))
        if r.rows:
            files.append(write_breakdown(out / f"breakdown_{r.name}.csv", r.name, r.rows))
    if client is not None and run_id is not None:
        for path in files:
            client.log_artifact(run_id, str(path), "evaluation")
        for r in results:
            for k, v in r.metrics.items():
                if not math.isnan(v):
                    client.log_metric(run_id, f"eval/{r.name}/{k}", v)
        report(f"logged the table, ROC plot and predictions to MLflow run {run_id} (artifacts/evaluation)")
    else:
        report(f"wrote the table, ROC plot and predictions to {out}")
    return results


def _ensemble_run(client: Any, run_ids: Sequence[str], combine: str, first: ExperimentConfig) -> str:
    """A new MLflow run (in the first member's experiment) for an ensemble's results."""
    experiment = client.get_run(run_ids[0]).info.experiment_id
    run = client.create_run(experiment, run_name=f"ensemble-{len(run_ids)}", tags={
        "dflab.kind": "ensemble", "dflab.members": ",".join(run_ids), "dflab.experiment": first.name})
    client.log_param(run.info.run_id, "ensemble.combine", combine)
    for k, rid in enumerate(run_ids):
        client.log_param(run.info.run_id, f"ensemble.member{k}", rid)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)
