"""Albumentations pipelines applied identically to every frame of a clip."""

from __future__ import annotations

import os

import numpy as np


def build_transform(preset: str, num_frames: int):
    """A transform taking ``image`` (and ``image1`` … for more frames) with shared random params.

    Args:
        preset: ``none``, ``light`` or ``strong``.
        num_frames: frames per clip; every frame gets the same sampled parameters.

    Returns:
        An ``albumentations.Compose`` or ``None`` for ``none``.
    """
    if preset == "none":
        return None  # scoring and evaluation never import albumentations (about 0.5 s)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check on import
    import albumentations as A

    ops = [A.HorizontalFlip(p=0.5)]
    if preset in ("light", "strong"):
        ops += [
            A.RandomBrightnessContrast(0.1, 0.1, p=0.3),
            A.ImageCompression(quality_range=(60, 95), p=0.3),
        ]
    if preset == "strong":
        ops += [
            A.Affine(scale=(0.95, 1.05), translate_percent=(-0.03, 0.03), rotate=(-5, 5), p=0.5),
            A.GaussianBlur(blur_limit=(3, 5), p=0.1),
            A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
            A.HueSaturationValue(5, 10, 5, p=0.3),
        ]
    targets = {f"image{i}": "image" for i in range(1, num_frames)}
    return A.Compose(ops, additional_targets=targets)


def apply_to_clip(transform, frames: np.ndarray) -> np.ndarray:
    """Apply ``transform`` with one set of random parameters to all frames ``(T, H, W, 3)``."""
    if transform is None:
        return frames
    inputs = {"image": frames[0]} | {f"image{i}": f for i, f in enumerate(frames[1:], start=1)}
    out = transform(**inputs)
    return np.stack([out["image"]] + [out[f"image{i}"] for i in range(1, len(frames))])
