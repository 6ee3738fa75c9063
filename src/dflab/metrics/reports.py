"""End-of-run reports: summary table, ROC curves, per-video predictions."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dflab.metrics.predictions import VideoPrediction
from dflab.utils.tables import render_table


def metrics_table(metrics: Mapping[str, float], title: str = "Results") -> str:
    """Rows ``frame``/``video`` x columns AUROC, ACC, EER, AP, LogLoss per stage prefix."""
    from rich.table import Table

    table = Table(title=title)
    cols = ("auroc", "acc", "eer", "ap", "logloss")
    table.add_column("split/level")
    for c in cols:
        table.add_column(c.upper() if c != "logloss" else "LogLoss", justify="right")
    stages = sorted({k.split("/")[0] for k in metrics if "/" in k})
    for stage in stages:
        for level in ("frame", "video"):
            vals = [metrics.get(f"{stage}/{level}_{c}") for c in cols]
            if all(v is None for v in vals):
                continue
            table.add_row(f"{stage}/{level}", *("-" if v is None or math.isnan(v) else f"{v:.4f}" for v in vals))
    return render_table(table, 100)


def roc_curve(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """False- and true-positive rates over all thresholds, and the area under them.

    torchmetrics' :func:`~torchmetrics.functional.classification.binary_roc`: tied scores make
    one threshold (one diagonal step), so the area equals ``binary_auroc`` whatever the input
    order.
    """
    import torch
    from torchmetrics.functional.classification import binary_auroc, binary_roc

    p, y = torch.as_tensor(np.asarray(probs), dtype=torch.float32), torch.as_tensor(np.asarray(labels)).long()
    fpr, tpr, _ = binary_roc(p, y)
    return fpr.numpy(), tpr.numpy(), float(binary_auroc(p, y))


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "ROC"):
    """A matplotlib figure with one ROC curve per entry ``name -> (probs, labels)``, each with
    its AUROC (the area under the plotted curve) in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    for name, (probs, labels) in curves.items():
        if len(np.unique(labels)) < 2:
            continue
        fpr, tpr, auc = roc_curve(probs, labels)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(title, fontsize=9, wrap=True)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "ROC") -> Path:
    """Save :func:`roc_figure` as a PNG; returns the file."""
    import matplotlib.pyplot as plt

    fig = roc_figure(curves, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def model_description(model: Any, data: Any, triplet: Any = None) -> str:
    """What was trained, for plot titles: ``resnet10t, 96 px`` or ``efficientnet_b0 + lstm, 8x224 px``."""
    what = model.backbone if model.temporal == "none" else f"{model.backbone} + {model.temporal}"
    if triplet is not None and triplet.enabled:
        what += " (triplet)"
    frames = f"{data.frames_per_clip}x" if data.frames_per_clip > 1 else ""
    return f"{what}, {frames}{data.image_size} px"


def write_predictions(path: str | Path, predictions: Mapping[str, VideoPrediction],
                      roots: Mapping[str, Path] | None = None) -> Path:
    """CSV ``path,label,fake_probability,dataset,method`` per video, from predictions keyed by
    video (:func:`~dflab.metrics.predictions.keyed_predictions`).

    ``path`` is relative to the video's dataset folder (``roots``, by dataset name; see
    :func:`dflab.datasets.resolve.dataset_roots`), so the file reads the same on any machine; a video
    outside its dataset's folder keeps its absolute path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "fake_probability", "dataset", "method"])
        for pred in predictions.values():
            it = pred.item
            w.writerow([_relative(it.path, (roots or {}).get(it.dataset)), pred.label, f"{pred.probability:.6f}",
                        it.dataset, it.method])
    return path


def _relative(video: str, root: Path | None) -> str:
    if root is None:
        return video
    try:
        return Path(video).resolve().relative_to(root).as_posix()
    except ValueError:
        return video
