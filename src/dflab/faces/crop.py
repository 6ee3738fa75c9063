"""Square face crops around a detected box, padded where they leave the frame."""

from __future__ import annotations

import cv2
import numpy as np

_BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def square_box(box: np.ndarray | list[float], margin: float = 1.3) -> np.ndarray:
    """Square ``x1, y1, x2, y2`` box around the centre of ``box``.

    Args:
        box: ``x1, y1, x2, y2`` in pixels.
        margin: side of the square relative to the longer side of ``box``.

    Returns:
        ``(4,)`` float32 square box (may extend outside the image).
    """
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = margin * max(x2 - x1, y2 - y1) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float32)


def crop_face(
    frame: np.ndarray,
    box: np.ndarray | list[float],
    size: int,
    margin: float = 1.3,
    border: str = "constant",
) -> np.ndarray:
    """Cut the square around ``box`` out of ``frame`` and resize it to ``size`` x ``size``.

    Parts of the square outside the frame are filled with zeros (``border="constant"``) or with
    the nearest edge pixels (``border="replicate"``). Shrinking uses ``INTER_AREA``, enlarging
    ``INTER_LINEAR``.

    Args:
        frame: ``(H, W, 3)`` ``uint8`` image.
        box: face box ``x1, y1, x2, y2`` in pixels of ``frame``.
        size: side of the output crop in pixels.
        margin: side of the square relative to the longer side of ``box``.
        border: ``constant`` (zeros) or ``replicate``.

    Returns:
        ``(size, size, 3)`` ``uint8`` crop.

    Raises:
        ValueError: the box is not finite or has no area, or ``border`` is unknown.
    """
    if border not in _BORDERS:
        raise ValueError(f"unknown border {border!r}; choose from {sorted(_BORDERS)}")
    box = np.asarray(box, dtype=np.float64)
    if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"invalid face box {box.tolist()}")
    sq = square_box(box, margin)
    side = max(1, round(float(sq[2] - sq[0])))
    x1, y1 = round(float(sq[0])), round(float(sq[1]))
    x2, y2 = x1 + side, y1 + side
    h, w = frame.shape[:2]
    inside = frame[max(y1, 0) : min(y2, h), max(x1, 0) : min(x2, w)]
    pads = (max(-y1, 0), max(y2 - h, 0), max(-x1, 0), max(x2 - w, 0))  # top, bottom, left, right
    if inside.size == 0:  # the square lies entirely outside the frame
        patch = np.zeros((side, side, frame.shape[2]), dtype=frame.dtype)
    elif any(pads):
        patch = cv2.copyMakeBorder(inside, *pads, _BORDERS[border], value=0)
    else:
        patch = inside
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(patch, (size, size), interpolation=interpolation))
