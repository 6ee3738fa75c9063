"""Per-video predictions keyed by video id, joined to their videos in one place.

The metrics gather ``(video_idx, fake probability, label)`` over every process, where
``video_idx`` is the video's position in the split the DataLoader read. :func:`keyed_predictions`
turns that into one :class:`VideoPrediction` per video, keyed by :func:`prediction_key` (the
dataset name and the video's id within it), after checking that every label agrees with the
video it names, so a prediction can never be attached to the wrong video silently. Reports,
breakdowns and prediction files read the keyed mapping, never list positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from dflab.datasets.sources import VideoItem

__all__ = ["VideoPrediction", "keyed_predictions", "prediction_key"]


def prediction_key(item: VideoItem) -> str:
    """``<dataset>/<video id>`` (the id is unique within a dataset; see ``VideoItem.key``), or the
    id alone for a video without a dataset name."""
    return f"{item.dataset}/{item.video_id}" if item.dataset else item.video_id


@dataclass(frozen=True)
class VideoPrediction:
    """One video's score.

    Attributes:
        item: the video.
        probability: fake probability in ``[0, 1]`` (the sigmoid of the video logit, after its
            face tracks and clips are combined as ``faces.track_score`` says).
        label: the ground truth, 1 = fake.
    """

    item: VideoItem
    probability: float
    label: int

    @property
    def key(self) -> str:
        """The video's key in :func:`keyed_predictions` (see :func:`prediction_key`)."""
        return prediction_key(self.item)


def keyed_predictions(items: Sequence[VideoItem], video_idx: torch.Tensor, probs: torch.Tensor,
                      labels: torch.Tensor) -> dict[str, VideoPrediction]:
    """Join gathered per-video scores to their videos, keyed by video.

    Args:
        items: the split's videos, in the order the split's dataset holds them.
        video_idx: ``(V,)`` int64 positions into ``items``, one per scored video.
        probs: ``(V,)`` float fake probabilities in ``[0, 1]``.
        labels: ``(V,)`` the labels the metrics saw.

    Returns:
        ``{prediction_key(item): VideoPrediction}``, in ``video_idx`` order.

    Raises:
        ValueError: the tensors differ in length, an index is outside ``items``, a video appears
            twice, or a label disagrees with the video's own label (the scores do not belong to
            these videos).
    """
    if not (len(video_idx) == len(probs) == len(labels)):
        raise ValueError(f"predictions: {len(video_idx)} video indices, {len(probs)} probabilities and "
                         f"{len(labels)} labels; they must be one per video")
    out: dict[str, VideoPrediction] = {}
    for v, p, y in zip(video_idx.tolist(), probs.tolist(), labels.tolist(), strict=True):
        if not 0 <= int(v) < len(items):
            raise ValueError(f"predictions: video index {v} is outside the split's {len(items)} videos")
        item = items[int(v)]
        if int(y) != item.label:
            raise ValueError(f"predictions: {item.path} is labelled {item.label} but its score came with "
                             f"label {int(y)}; the scores do not belong to these videos")
        key = prediction_key(item)
        if key in out:
            raise ValueError(f"predictions: {key} is scored twice")
        out[key] = VideoPrediction(item, float(p), int(y))
    return out


def as_arrays(predictions: Mapping[str, VideoPrediction]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(probs, labels)`` tensors ``(V,)`` float32 and int64, in the mapping's order."""
    values = list(predictions.values())
    return (torch.tensor([p.probability for p in values], dtype=torch.float32),
            torch.tensor([p.label for p in values], dtype=torch.long))
