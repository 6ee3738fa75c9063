"""Face crops: a square around the detected box, or aligned on the five landmarks.

Both are padded where they leave the frame. :func:`crop_face` cuts a square box crop;
:func:`crop_face_aligned` warps the frame with the similarity transform that puts the five
landmarks on insightface's ArcFace template, zoomed out by the margin.
"""

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


# insightface's ArcFace five-point template (``insightface.utils.face_align.arcface_dst``) for a
# 112 x 112 crop: left eye, right eye, nose tip, left and right mouth corner, as ``(x, y)``.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)  # fmt: skip
_TEMPLATE_SIDE = 112.0
# The margin that gives the template's own 112 x 112 framing. A dlib HOG face box measures about
# 112 / 1.3 template pixels, so an aligned crop shows the same context as a box crop of the same
# margin, and the default margin 1.3 reproduces ``insightface.utils.face_align.norm_crop``.
TEMPLATE_MARGIN = 1.3


def aligned_template(size: int, margin: float = 1.3) -> np.ndarray:
    """Where :func:`crop_face_aligned` puts the five landmarks in a ``size`` x ``size`` crop.

    The crop covers a square of ``112 * margin / 1.3`` template pixels centred on the centre of
    the 112 x 112 ArcFace template, scaled to ``size``: margin 1.3 is the ArcFace framing itself,
    a larger margin zooms out around the template centre, a smaller one zooms in.

    Args:
        size: side of the crop in pixels.
        margin: crop side relative to the face size (``112 / 1.3`` template pixels).

    Returns:
        ``(5, 2)`` float64 ``(x, y)`` points in crop pixels.
    """
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    side = _TEMPLATE_SIDE * margin / TEMPLATE_MARGIN
    return (ARCFACE_TEMPLATE - _TEMPLATE_SIDE / 2) * (size / side) + size / 2


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to ``dst``.

    The same estimate as ``skimage.transform.SimilarityTransform`` (Umeyama, no reflection).

    Args:
        src: ``(N, 2)`` points.
        dst: ``(N, 2)`` points.

    Returns:
        ``(2, 3)`` float64 matrix for ``cv2.warpAffine``.

    Raises:
        ValueError: the ``src`` points all coincide.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - src_mean, dst - dst_mean
    norm = float((s**2).sum())
    if norm <= 1e-12:
        raise ValueError("landmarks coincide; no transform fits them")
    a = float((s * d).sum()) / norm  # scale * cos(angle)
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm  # scale * sin(angle)
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (dst_mean - rot @ src_mean)[:, None]])


def crop_face_aligned(
    frame: np.ndarray,
    landmarks5: np.ndarray | list[list[float]],
    size: int,
    margin: float = 1.3,
    border: str = "constant",
) -> np.ndarray:
    """Warp ``frame`` so the five landmarks land on the ArcFace template scaled to ``size``.

    The similarity transform is the least-squares fit of the landmarks to
    :func:`aligned_template` (eyes level, face upright, fixed scale). Parts of the crop outside
    the frame are zeros (``border="constant"``) or the nearest edge pixels
    (``border="replicate"``). When the face shrinks, the region it covers is first reduced with
    ``INTER_AREA`` (as :func:`crop_face` does); the warp itself is bilinear.

    Args:
        frame: ``(H, W, 3)`` ``uint8`` image.
        landmarks5: ``(5, 2)`` ``(x, y)`` points in pixels of ``frame``, insightface order: left
            eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right).
        size: side of the output crop in pixels.
        margin: crop side relative to the face size; 1.3 is the ArcFace 112 x 112 framing and
            shows about the context of :func:`crop_face` with the same margin.
        border: ``constant`` (zeros) or ``replicate``.

    Returns:
        ``(size, size, 3)`` ``uint8`` crop.

    Raises:
        ValueError: the landmarks are not ``(5, 2)``, not finite or all at one point, or
            ``border`` is unknown.
    """
    if border not in _BORDERS:
        raise ValueError(f"unknown border {border!r}; choose from {sorted(_BORDERS)}")
    points = np.asarray(landmarks5, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"invalid face landmarks {points.tolist()}")
    matrix = similarity_transform(points, aligned_template(size, margin))
    scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
    if scale < 1.0:
        frame, matrix = _shrink_region(frame, matrix, size, scale)
    warped = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=_BORDERS[border], borderValue=0)
    return np.ascontiguousarray(warped)


def _shrink_region(
    frame: np.ndarray, matrix: np.ndarray, size: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the part of ``frame`` the crop covers, shrink it by ``scale`` and adapt ``matrix``.

    ``cv2.warpAffine`` has no area filter, so shrinking in the warp alone would alias. The
    region is cut up to the frame edges only, so ``replicate`` borders still copy frame edges.
    """
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    source = corners @ inverse[:, :2].T + inverse[:, 2]
    pad = 2.0 / scale + 1.0  # keep ~2 output pixels of real context around the crop
    h, w = frame.shape[:2]
    x1, y1 = (max(int(np.floor(v - pad)), 0) for v in source.min(axis=0))
    x2 = min(int(np.ceil(source[:, 0].max() + pad)), w)
    y2 = min(int(np.ceil(source[:, 1].max() + pad)), h)
    if x2 - x1 < 2 or y2 - y1 < 2:  # the crop lies (almost) entirely outside the frame
        return frame, matrix
    out_w, out_h = max(1, round((x2 - x1) * scale)), max(1, round((y2 - y1) * scale))
    small = cv2.resize(frame[y1:y2, x1:x2], (out_w, out_h), interpolation=cv2.INTER_AREA)
    ratio = np.array([out_w / (x2 - x1), out_h / (y2 - y1)])
    # small pixel q is frame point (q + 0.5) / ratio - 0.5 + origin (pixel centres, as
    # cv2.resize); fold that into the matrix
    linear = matrix[:, :2] / ratio
    offset = matrix[:, :2] @ (np.array([x1, y1]) + 0.5 / ratio - 0.5) + matrix[:, 2]
    return small, np.hstack([linear, offset[:, None]])
