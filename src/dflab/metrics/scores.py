"""Detection metrics at frame (clip) and video level, one torchmetrics object per stage.

Per-clip scores, labels and ids are gathered across processes (``dist_reduce_fx="cat"``), so under
DDP the metrics cover the whole split, not one rank's shard. Clips duplicated by the distributed
sampler's padding are dropped by id before computing. In evaluation each face track of a video
is scored: a track's score is the mean of its clips' fake probabilities, and a video's score
combines its tracks' scores (``max`` by default, or ``mean``; ``main`` keeps only track 0). With
one track per video this is the mean of the video's clips. Frame-level metrics use every clip.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.functional.classification import (
    binary_accuracy,
    binary_auroc,
    binary_average_precision,
    binary_eer,
)

from dflab.metrics.video import COMBINE_MODES, video_scores

METRIC_NAMES = ("auroc", "acc", "eer", "ap", "logloss")


def equal_error_rate(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Equal error rate: where the false-positive and false-negative rates meet (lower is
    better); torchmetrics' :func:`~torchmetrics.functional.classification.binary_eer`."""
    return binary_eer(probs, labels.long())


def binary_scores(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """AUROC, accuracy (threshold 0.5), EER, average precision and log loss.

    Rank metrics are NaN when only one class is present (they are undefined then).
    """
    labels_i = labels.long()
    probs = probs.float().clamp(1e-7, 1 - 1e-7)
    out = {
        "acc": binary_accuracy(probs, labels_i),
        "logloss": F.binary_cross_entropy(probs, labels.float()),
    }
    if labels_i.min() == labels_i.max():
        nan = torch.tensor(math.nan, device=probs.device)
        out.update(auroc=nan, eer=nan, ap=nan)
    else:
        out.update(
            auroc=binary_auroc(probs, labels_i),
            eer=equal_error_rate(probs, labels_i),
            ap=binary_average_precision(probs, labels_i),
        )
    return {k: out[k] for k in METRIC_NAMES}


class DetectionMetrics(Metric):
    """Frame- and video-level AUROC, accuracy, EER, AP and log loss for one stage.

    ``compute()`` returns keys ``frame_<metric>`` and ``video_<metric>``.
    """

    full_state_update = False
    logits: list[torch.Tensor]
    labels: list[torch.Tensor]
    video_idx: list[torch.Tensor]
    clip_idx: list[torch.Tensor]
    track_idx: list[torch.Tensor]

    def __init__(self, combine: str = "max", **kwargs: Any) -> None:
        """Create the states.

        Args:
            combine: how a video's track scores combine (see :func:`video_scores`).
            **kwargs: passed to :class:`torchmetrics.Metric`.
        """
        super().__init__(**kwargs)
        if combine not in COMBINE_MODES:
            raise ValueError(f"unknown combine {combine!r}; choose from {', '.join(COMBINE_MODES)}")
        self.combine = combine
        for name in ("logits", "labels", "video_idx", "clip_idx", "track_idx"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, labels: torch.Tensor, video_idx: torch.Tensor,
               clip_idx: torch.Tensor, track_idx: torch.Tensor | None = None) -> None:
        """Add a batch of clips (``track_idx`` ``None``: all track 0)."""
        self.logits.append(logits.detach().float().reshape(-1))
        self.labels.append(labels.detach().long().reshape(-1))
        self.video_idx.append(video_idx.detach().long().reshape(-1))
        self.clip_idx.append(clip_idx.detach().long().reshape(-1))
        if track_idx is None:
            track_idx = torch.zeros_like(self.video_idx[-1])
        self.track_idx.append(track_idx.detach().long().reshape(-1).to(self.video_idx[-1].device))

    def _gathered(self) -> tuple[torch.Tensor, ...]:
        def cat(x):
            return torch.cat(x) if isinstance(x, list) else x

        logits, labels, vids, clips, tracks = (
            cat(s) for s in (self.logits, self.labels, self.video_idx, self.clip_idx, self.track_idx)
        )
        clips, keep = _first_occurrence(clips)
        return logits[keep], labels[keep], vids[keep], tracks[keep]

    def compute(self) -> dict[str, torch.Tensor]:
        return self.compute_values()

    def compute_values(self) -> dict[str, torch.Tensor]:
        """The metrics over the states as they are now (call inside ``sync_context`` under DDP)."""
        logits, labels, vids, tracks = self._gathered()
        probs = torch.sigmoid(logits)
        out = {f"frame_{k}": v for k, v in binary_scores(probs, labels).items()}
        _, vprobs, vlabels = video_scores(probs, labels, vids, tracks, self.combine)
        out.update({f"video_{k}": v for k, v in binary_scores(vprobs, vlabels).items()})
        return out

    def video_predictions(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(video_idx, fake probability, label)`` per video seen so far."""
        logits, labels, vids, tracks = self._gathered()
        return video_scores(torch.sigmoid(logits), labels, vids, tracks, self.combine)


def _first_occurrence(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique ids and the index of each one's first occurrence."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    order = torch.arange(len(ids), device=ids.device)
    first = torch.full((len(uniq),), len(ids), dtype=torch.long, device=ids.device)
    first.scatter_reduce_(0, inverse, order, reduce="amin")
    return uniq, first
