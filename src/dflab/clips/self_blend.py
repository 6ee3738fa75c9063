"""Self-blended images: pseudo-fakes made on the fly from real faces.

Detecting Deepfakes with Self-Blended Images -- Shiohara and Yamasaki, CVPR 2022
(https://arxiv.org/abs/2204.08376, code: https://github.com/mapooon/SelfBlendedImages). A real
face is blended with a slightly altered copy of itself (colour and frequency changes, a small
scale and shift) through a soft mask around the face's landmarks. The result has the blending
boundary and the statistical mismatch of a face swap, without any identity change, so a
detector trained on it learns the artefacts common to forgery methods rather than those of one.

dflab stores five landmarks per face, so the mask is an ellipse fitted to them (eyes, nose, mouth
corners: brows to chin after expansion) rather than the paper's 81-point convex hull; it is then
blurred and scaled by a random blend ratio as in the paper. One set of random parameters is used
for every frame of a clip, so temporal models see a consistent forgery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

_BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # the paper's choice, 1.0 most often


def _source_transform(rng: np.random.Generator, size: int) -> Callable[[np.ndarray], np.ndarray]:
    """One random appearance change (colour, then frequency) applied alike to every frame."""
    shift = rng.uniform(-20, 20, 3)
    gain = rng.uniform(0.9, 1.1)
    bias = rng.uniform(-10, 10)
    mode = rng.choice(["down_up", "sharpen", "blur"])
    factor = rng.uniform(0.5, 0.9)
    scale = rng.uniform(0.95, 1.05)
    move = rng.uniform(-0.03, 0.03, 2) * size

    def apply(face: np.ndarray) -> np.ndarray:
        img: Any = np.clip(face.astype(np.float32) * gain + bias + shift, 0, 255).astype(np.uint8)
        if mode == "down_up":
            small = max(8, int(size * factor))
            img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA),
                             (size, size), interpolation=cv2.INTER_LINEAR)
        elif mode == "sharpen":
            blurred = cv2.GaussianBlur(img, (0, 0), 1.0 + 2 * factor)
            img = cv2.addWeighted(img, 1.5, blurred, -0.5, 0)
        else:
            img = cv2.GaussianBlur(img, (0, 0), 0.5 + factor)
        m = cv2.getRotationMatrix2D((size / 2, size / 2), 0.0, scale)
        m[:, 2] = m[:, 2] + move
        return cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT)

    return apply


def face_mask(points: np.ndarray, size: int, width: float, height: float, blur: float) -> np.ndarray:
    """Soft ``(size, size)`` float32 mask in ``[0, 1]``: an ellipse on the five landmarks.

    Args:
        points: ``(5, 2)`` landmarks in crop pixels (eyes, nose, mouth corners).
        size: crop side.
        width: ellipse half-width relative to the eye distance.
        height: ellipse half-height relative to the eye-to-mouth distance.
        blur: Gaussian blur sigma relative to the crop side.
    """
    eyes, mouth = points[:2].mean(axis=0), points[3:].mean(axis=0)
    eye_vec = points[1] - points[0]
    angle = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    centre = (eyes + mouth) / 2 + (mouth - eyes) * 0.1
    axes = (max(2, int(width * np.linalg.norm(eye_vec))),
            max(2, int(height * np.linalg.norm(mouth - eyes))))
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), max(0.5, blur * size))


def self_blend_clip(crops: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Turn a real face clip into a self-blended pseudo-fake.

    Args:
        crops: ``(T, S, S, 3)`` uint8 face crops.
        points: ``(T, 5, 2)`` landmarks in crop pixels.
        rng: random generator (one draw of parameters for the whole clip).

    Returns:
        ``(T, S, S, 3)`` uint8: outside the mask the frames are unchanged.
    """
    size = crops.shape[1]
    transform = _source_transform(rng, size)
    width, height = rng.uniform(1.0, 1.3), rng.uniform(1.3, 1.7)
    blur, ratio = rng.uniform(0.01, 0.04), float(rng.choice(_BLEND_RATIOS))
    out = np.empty_like(crops)
    for k, (face, pts) in enumerate(zip(crops, points, strict=True)):
        mask = face_mask(pts, size, width, height, blur)[..., None] * ratio
        source = transform(face).astype(np.float32)
        out[k] = np.clip(mask * source + (1 - mask) * face.astype(np.float32) + 0.5, 0, 255)
    return out
