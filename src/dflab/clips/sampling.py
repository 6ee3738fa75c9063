"""Clip samplers: which frame indices of a video form a clip."""

from __future__ import annotations

import numpy as np


def clip_span(frames_per_clip: int, stride: int) -> int:
    """Number of video frames a clip covers."""
    return (frames_per_clip - 1) * stride + 1


def random_clip(num_frames: int, frames_per_clip: int, stride: int, rng: np.random.Generator,
                lo: int = 0, hi: int | None = None) -> np.ndarray:
    """A clip starting at a uniformly random frame within ``[lo, hi)`` (clamped to the video)."""
    hi = num_frames if hi is None else min(hi, num_frames)
    span = clip_span(frames_per_clip, stride)
    last_start = max(lo, hi - span)
    start = int(rng.integers(lo, last_start + 1))
    return np.minimum(start + stride * np.arange(frames_per_clip), num_frames - 1)


def uniform_clips(num_frames: int, frames_per_clip: int, stride: int, count: int,
                  lo: int = 0, hi: int | None = None) -> np.ndarray:
    """``count`` clips with evenly spaced starts within ``[lo, hi)``; shape ``(count, frames_per_clip)``."""
    hi = num_frames if hi is None else min(hi, num_frames)
    span = clip_span(frames_per_clip, stride)
    starts = np.linspace(lo, max(lo, hi - span), count).round().astype(np.int64)
    return np.minimum(starts[:, None] + stride * np.arange(frames_per_clip)[None, :], num_frames - 1)
