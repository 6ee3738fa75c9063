"""Face detectors behind one small protocol, with a name-based registry.

Every detector takes an RGB ``uint8`` image and returns :class:`Detection` objects with a box,
a score and the five insightface landmarks (left eye, right eye, nose tip, left and right mouth
corner; left/right as seen in the image, the order of ``insightface``'s ``arcface_dst``), so
the aligner and cropper downstream never depend on which detector ran.

Detectors build their native models lazily on the first :meth:`detect` call and drop them when
pickled, so a detector object can be sent to worker processes (dlib objects cannot be pickled).

Add a detector by decorating a class (or factory) with :func:`register_detector`::

    @register_detector("scrfd")
    class ScrfdDetector: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from dflab.faces.dlib_models import dlib_model_file


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes:
        box: ``(4,)`` float32 ``x1, y1, x2, y2`` in pixels of the image given to the detector.
        score: detector confidence (scale depends on the detector; higher is more confident).
        landmarks: ``(5, 2)`` float32 ``(x, y)`` points in insightface order: left eye, right
            eye, nose tip, left mouth corner, right mouth corner (image left/right).
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        w, h = self.box[2] - self.box[0], self.box[3] - self.box[1]
        return float(max(w, 0.0) * max(h, 0.0))


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces in an RGB ``uint8`` image."""

    @property
    def name(self) -> str:
        """Stable id including every setting that changes results (used in cache keys)."""
        ...

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Return the faces found in ``image`` (``(H, W, 3)`` RGB ``uint8``)."""
        ...


_REGISTRY: dict[str, Callable[..., FaceDetector]] = {}


def register_detector(
    name: str,
) -> Callable[[Callable[..., FaceDetector]], Callable[..., FaceDetector]]:
    """Class decorator that makes a detector available to :func:`create_detector` by ``name``."""

    def add(factory: Callable[..., FaceDetector]) -> Callable[..., FaceDetector]:
        if name in _REGISTRY:
            raise ValueError(f"face detector {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return add


_BUILTIN_MODULES = ("dflab.faces.blazeface", "dflab.faces.scrfd")


def _load_builtin() -> None:
    """Import the modules whose detectors register themselves (once; cheap afterwards)."""
    import importlib

    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def available_detectors() -> list[str]:
    """Names accepted by :func:`create_detector`."""
    _load_builtin()
    return sorted(_REGISTRY)


def detector_factory(name: str) -> Callable[..., FaceDetector]:
    """The class (or factory) registered as ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown face detector {name!r}; choose from {available_detectors()}")
    return _REGISTRY[name]


def create_detector(name: str, **kwargs: Any) -> FaceDetector:
    """Build a detector by registry name; ``kwargs`` go to its constructor.

    Raises:
        ValueError: unknown name (the message lists the choices).
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown face detector {name!r}; choose from {available_detectors()}")
    return _REGISTRY[name](**kwargs)


def landmarks68_to_5(points: np.ndarray) -> np.ndarray:
    """Reduce dlib's 68 landmarks ``(68, 2)`` to the five insightface points ``(5, 2)``."""
    points = np.asarray(points, dtype=np.float32)
    return np.stack(
        [
            points[36:42].mean(axis=0),  # eye on the image left (the subject's right eye)
            points[42:48].mean(axis=0),
            points[30],  # nose tip
            points[48],  # mouth corner on the image left
            points[54],
        ]
    ).astype(np.float32)


class _DlibDetector:
    """Shared code of the dlib detectors: optional downscale, 68-point landmarks, lazy models.

    Args:
        upsample: times dlib upsamples the image before detecting (finds smaller faces, slower).
        max_side: if set, images whose longer side exceeds it are shrunk to it for detection
            (boxes are mapped back; landmarks are fitted on the full image).
    """

    prefix = "dlib"

    def __init__(self, upsample: int = 1, max_side: int | None = None) -> None:
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        if max_side is not None and max_side < 32:
            raise ValueError(f"max_side must be >= 32 (or None), got {max_side}")
        self.upsample = int(upsample)
        self.max_side = None if max_side is None else int(max_side)
        self._detector: Any = None
        self._predictor: Any = None

    @property
    def name(self) -> str:
        """Registry name plus the settings that change results, e.g. ``dlib_hog-up1-max0``."""
        return f"{self.prefix}-up{self.upsample}-max{self.max_side or 0}{self._name_suffix()}"

    def _name_suffix(self) -> str:
        return ""

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_detector"] = state["_predictor"] = None  # dlib objects do not pickle
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    def _load(self) -> None:
        import dlib

        if self._predictor is None:
            self._predictor = dlib.shape_predictor(str(dlib_model_file("landmarks68")))
        if self._detector is None:
            self._detector = self._make_detector(dlib)

    def _make_detector(self, dlib: Any) -> Any:
        raise NotImplementedError

    def _raw(self, image: np.ndarray) -> list[tuple[Any, float]]:
        """Return ``(dlib.rectangle, score)`` pairs for ``image``."""
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Find faces in an RGB ``uint8`` image ``(H, W, 3)``."""
        import dlib

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}"
            )
        self._load()
        image = np.ascontiguousarray(image)
        scale = 1.0
        small = image
        if self.max_side is not None and max(image.shape[:2]) > self.max_side:
            scale = self.max_side / max(image.shape[:2])
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        out = []
        for rect, score in self._raw(small):
            box = np.array(
                [rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], dtype=np.float32
            ) / np.float32(scale)
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            full = rect if scale == 1.0 else dlib.rectangle(x1, y1, x2 - 1, y2 - 1)
            shape = self._predictor(image, full)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            out.append(Detection(box=box, score=float(score), landmarks=landmarks68_to_5(points)))
        return out


@register_detector("dlib_hog")
class DlibHogDetector(_DlibDetector):
    """dlib's HOG + linear SVM frontal face detector (fast on CPU, frontal faces only).

    Args:
        upsample: times dlib upsamples the image before detecting (finds smaller faces, slower).
        max_side: if set, images whose longer side exceeds it are shrunk to it for detection.
        adjust_threshold: added to the SVM threshold; negative finds more (weaker) faces.
    """

    prefix = "dlib_hog"

    def __init__(
        self, upsample: int = 1, max_side: int | None = None, adjust_threshold: float = 0.0
    ) -> None:
        super().__init__(upsample, max_side)
        self.adjust_threshold = float(adjust_threshold)

    def _name_suffix(self) -> str:
        return f"-t{self.adjust_threshold:g}" if self.adjust_threshold else ""

    def _make_detector(self, dlib: Any) -> Any:
        return dlib.get_frontal_face_detector()

    def _raw(self, image: np.ndarray) -> list[tuple[Any, float]]:
        rects, scores, _ = self._detector.run(image, self.upsample, self.adjust_threshold)
        return list(zip(rects, scores, strict=True))


@register_detector("dlib_cnn")
class DlibCnnDetector(_DlibDetector):
    """dlib's MMOD CNN face detector (more robust to pose than HOG, slow on CPU)."""

    prefix = "dlib_cnn"

    def _make_detector(self, dlib: Any) -> Any:
        return dlib.cnn_face_detection_model_v1(str(dlib_model_file("mmod")))

    def _raw(self, image: np.ndarray) -> list[tuple[Any, float]]:
        return [(d.rect, float(d.confidence)) for d in self._detector(image, self.upsample)]
