"""Metrics broken down per dataset and per manipulation method.

A run over FaceForensics++ reports one AUROC per method (the method's fakes against the reals of
the same dataset), and a combined or cross-dataset run one per dataset, so a detector that only
catches one kind of forgery shows it. The same :func:`~dflab.metrics.scores.binary_scores` as
the overall metrics computes every row.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from dflab.metrics.predictions import VideoPrediction, as_arrays
from dflab.metrics.scores import binary_scores
from dflab.utils.tables import render_table

COLUMNS = ("auroc", "ap", "acc", "eer", "logloss")


@dataclass(frozen=True)
class BreakdownRow:
    """Video-level metrics of one slice of a split.

    Attributes:
        by: ``dataset`` or ``method``.
        name: the dataset or method name (``dataset/method`` when several datasets are mixed).
        n_real: real videos in the slice.
        n_fake: fake videos in the slice.
        scores: metric name to value (NaN when undefined, e.g. AUROC with one class).
    """

    by: str
    name: str
    n_real: int
    n_fake: int
    scores: dict[str, float]


def _row(by: str, name: str, probs: torch.Tensor, labels: torch.Tensor) -> BreakdownRow:
    scores = {k: float(v) for k, v in binary_scores(probs, labels).items()}
    n_fake = int(labels.sum())
    return BreakdownRow(by, name, len(labels) - n_fake, n_fake, scores)


def breakdown(predictions: Mapping[str, VideoPrediction]) -> list[BreakdownRow]:
    """Per-dataset and per-method video metrics.

    Args:
        predictions: the split's video predictions, keyed by video
            (:func:`~dflab.metrics.predictions.keyed_predictions`).

    Returns:
        One row per dataset when there are several, and one per manipulation method (its fakes
        scored against the reals of its dataset) when the fakes name their methods.
    """
    meta = [p.item for p in predictions.values()]
    probs, labels = as_arrays(predictions)
    datasets = sorted({it.dataset for it in meta})
    rows = []
    if len(datasets) > 1:
        for ds in datasets:
            mask = torch.tensor([it.dataset == ds for it in meta])
            rows.append(_row("dataset", ds or "-", probs[mask], labels[mask]))
    methods = sorted({(it.dataset, it.method) for it in meta if it.label == 1 and it.method})
    for ds, method in methods:
        mask = torch.tensor([it.dataset == ds and (it.label == 0 or it.method == method) for it in meta])
        name = f"{ds}/{method}" if len(datasets) > 1 else method
        rows.append(_row("method", name, probs[mask], labels[mask]))
    return rows


def breakdown_metrics(stage: str, rows: Sequence[BreakdownRow]) -> dict[str, float]:
    """MLflow metric names for the rows, e.g. ``test/by_method/Deepfakes/video_auroc``."""
    out = {}
    for r in rows:
        for k, v in r.scores.items():
            if not math.isnan(v):
                out[f"{stage}/by_{r.by}/{r.name}/video_{k}"] = v
    return out


def write_breakdown(path: str | Path, stage: str, rows: Sequence[BreakdownRow]) -> Path:
    """CSV ``stage,by,name,n_real,n_fake,<metrics>``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["stage", "by", "name", "n_real", "n_fake", *(f"video_{c}" for c in COLUMNS)])
        for r in rows:
            w.writerow([stage, r.by, r.name, r.n_real, r.n_fake, *(f"{r.scores[c]:.6f}" for c in COLUMNS)])
    return path


def breakdown_table(stage: str, rows: Sequence[BreakdownRow]) -> str:
    """The rows as a text table (rich)."""
    from rich.table import Table

    table = Table(title=f"{stage}: video metrics per dataset and method")
    for col in ("by", "name", "real", "fake", *(c.upper() if c != "logloss" else "LogLoss" for c in COLUMNS)):
        table.add_column(col, justify="left" if col in ("by", "name") else "right")
    for r in rows:
        table.add_row(r.by, r.name, str(r.n_real), str(r.n_fake),
                      *("-" if math.isnan(r.scores[c]) else f"{r.scores[c]:.4f}" for c in COLUMNS))
    return render_table(table, 110)
