"""Video scores from clip scores: clips averaged per face track, tracks combined per video.

Plain torch, no torchmetrics, so that scoring new files (``dflab predict``) combines a file's
tracks with exactly the code evaluation uses without importing the metric library.
"""

from __future__ import annotations

import math

import torch

__all__ = ["COMBINE_MODES", "video_scores"]

COMBINE_MODES = ("max", "mean", "main")


def video_scores(
    probs: torch.Tensor,
    labels: torch.Tensor,
    video_idx: torch.Tensor,
    track_idx: torch.Tensor | None = None,
    combine: str = "max",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fake probability and label per video, ordered by video index.

    Clips are first averaged per (video, track); the track scores of a video are then combined.

    Args:
        probs: ``(N,)`` clip fake probabilities.
        labels: ``(N,)`` clip labels (the video's label).
        video_idx: ``(N,)`` video of each clip.
        track_idx: ``(N,)`` face track of each clip; ``None`` means all track 0.
        combine: ``max`` (the highest track score), ``mean`` (mean of the track scores) or
            ``main`` (track 0's score; videos without a track-0 clip fall back to ``max``).

    Returns:
        ``(video_idx, probability, label)``, one entry per video.
    """
    if combine not in COMBINE_MODES:
        raise ValueError(f"unknown combine {combine!r}; choose from {', '.join(COMBINE_MODES)}")
    if track_idx is None:
        track_idx = torch.zeros_like(video_idx)
    units, unit_of = torch.unique(torch.stack([video_idx.long(), track_idx.long().to(video_idx.device)], 1),
                                  dim=0, return_inverse=True)
    sums = torch.zeros(len(units), dtype=torch.float64, device=probs.device)
    counts = torch.zeros_like(sums)
    sums.index_add_(0, unit_of, probs.double())
    counts.index_add_(0, unit_of, torch.ones_like(probs, dtype=torch.float64))
    unit_probs = sums / counts

    videos, video_of = torch.unique(units[:, 0], return_inverse=True)
    vlabels = torch.zeros(len(videos), dtype=labels.dtype, device=labels.device)
    vlabels[video_of[unit_of]] = labels
    out = torch.zeros(len(videos), dtype=torch.float64, device=probs.device)
    if combine == "mean":
        n = torch.zeros_like(out).index_add_(0, video_of, torch.ones_like(unit_probs))
        out.index_add_(0, video_of, unit_probs).div_(n)
    else:
        out.fill_(-math.inf).scatter_reduce_(0, video_of, unit_probs, reduce="amax")
        if combine == "main":
            main = units[:, 1] == 0
            out[video_of[main]] = unit_probs[main]
    return videos, out.float(), vlabels
