"""Calibrate a finished run on its validation videos and store the result with its checkpoint.

After the best checkpoint is chosen and validated again, a temperature is fitted on the
validation videos' logits and the verdict threshold is chosen on the calibrated scores
(:mod:`dflab.metrics.calibration`; ``calibration:`` in the experiment config). The result is written
into the checkpoint file as ``dflab_calibration`` (plain data: the file still loads with
``torch.load(weights_only=True)``), and logged to the run: ``calibration/temperature``,
``calibration/threshold``, ``calibration/ece_before``, ``calibration/ece_after``, the artifact
``calibration.json`` and the reliability diagram ``plots/reliability.png``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from dflab.config import ExperimentConfig
from dflab.datasets.sources import VideoItem
from dflab.metrics.calibration import Calibration, calibrate, reliability_diagram, video_logits
from dflab.metrics.predictions import keyed_predictions
from dflab.utils.atomic import atomic_write

log = logging.getLogger(__name__)


def calibrate_validation(cfg: ExperimentConfig, items: Sequence[VideoItem],
                         predictions: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> Calibration | None:
    """The calibration of a run from its validation video predictions ``(video_idx, prob, label)``;
    ``None`` (with a warning) when it cannot be fitted (one class only, too few videos)."""
    if not cfg.calibration.enabled:
        return None
    keyed = keyed_predictions(items, *predictions)
    keys = sorted(keyed)
    probs = torch.tensor([keyed[k].probability for k in keys], dtype=torch.float64)
    labels = torch.tensor([keyed[k].label for k in keys])
    c = cfg.calibration
    try:
        return calibrate(video_logits(probs), labels, keys, c.threshold, c.target_fpr, c.bins)
    except ValueError as err:
        log.warning("no calibration stored with the checkpoint: %s", err)
        return None


def store_in_checkpoint(path: str | Path, calibration: Calibration) -> None:
    """Add ``dflab_calibration`` to a checkpoint file (rewritten atomically)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["dflab_calibration"] = calibration.to_dict()
    with atomic_write(path) as fh:
        torch.save(ckpt, fh)


def log_calibration(client: Any, run_id: str, calibration: Calibration, folder: Path, step: int = 0,
                    title: str = "") -> None:
    """Log the calibration's metrics, ``calibration.json`` and the reliability diagram to a run."""
    for key in ("temperature", "threshold", "ece_before", "ece_after"):
        client.log_metric(run_id, f"calibration/{key}", float(getattr(calibration, key)), step=step)
    path = folder / "calibration.json"
    path.write_text(json.dumps(calibration.to_dict(), indent=1))
    client.log_artifact(run_id, str(path))
    logits = torch.tensor(calibration.val_logits, dtype=torch.float64)
    labels = torch.tensor(calibration.val_labels)
    plot = reliability_diagram(torch.sigmoid(logits), labels, torch.sigmoid(logits / calibration.temperature),
                               folder / "reliability.png", title=f"{title}: validation videos" if title else
                               "Reliability on the validation videos")
    client.log_artifact(run_id, str(plot), "plots")
