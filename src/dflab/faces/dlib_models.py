"""Locate dlib's model files shipped by the ``face_recognition_models`` package.

The package's ``__init__`` imports ``pkg_resources``, which a fresh environment may lack, so the
files are found from the package's location without importing it.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "mmod": "mmod_human_face_detector.dat",
}


@cache
def dlib_model_file(kind: str) -> Path:
    """Return the path of a dlib model file (``landmarks68``, ``landmarks5`` or ``mmod``).

    Raises:
        FileNotFoundError: the ``face_recognition_models`` package is not installed.
    """
    if kind not in _FILES:
        raise KeyError(f"unknown dlib model {kind!r}; choose from {sorted(_FILES)}")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "dlib model files not found: install the 'face-recognition-models' package "
            "(`make install` does)"
        )
    path = Path(spec.origin).parent / "models" / _FILES[kind]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dlib model file missing from face_recognition_models")
    return path
