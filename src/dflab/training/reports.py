"""End-of-run reports: summary table, ROC curves, per-video predictions."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dflab.data.sources import VideoItem


def metrics_table(metrics: Mapping[str, float], title: str = "Results") -> str:
    """Rows ``frame``/``video`` x columns AUROC, ACC, EER, AP, LogLoss per stage prefix."""
    from rich.console import Console
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
    console = Console(width=100, record=True, force_terminal=False)
    with console.capture() as cap:
        console.print(table)
    return cap.get()


def roc_points(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates over all thresholds."""
    order = np.argsort(-probs, kind="stable")
    labels = labels[order].astype(bool)
    tp = np.concatenate([[0], np.cumsum(labels)])
    fp = np.concatenate([[0], np.cumsum(~labels)])
    return fp / max(1, fp[-1]), tp / max(1, tp[-1])


def plot_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path, title: str = "ROC") -> Path:
    """Plot one ROC curve per entry ``name -> (probs, labels)`` into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dflab.training.metrics import binary_scores

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    for name, (probs, labels) in curves.items():
        if len(np.unique(labels)) < 2:
            continue
        fpr, tpr = roc_points(np.asarray(probs), np.asarray(labels))
        import torch

        auc = float(binary_scores(torch.as_tensor(probs), torch.as_tensor(labels))["auroc"])
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_predictions(path: str | Path, items: Sequence[VideoItem], video_idx, probs, labels) -> Path:
    """CSV ``path,label,fake_probability,dataset,method`` per video."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "fake_probability", "dataset", "method"])
        for v, p, y in zip(video_idx.tolist(), probs.tolist(), labels.tolist(), strict=True):
            it = items[v]
            w.writerow([it.path, int(y), f"{p:.6f}", it.dataset, it.method])
    return path
