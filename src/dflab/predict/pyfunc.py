"""The MLflow ``python_function`` loader of a registered dflab detector.

``mlflow.pyfunc.load_model("models:/dflab-demo@champion")`` imports this module and calls
:func:`_load_pyfunc` with the model's export folder; nothing is unpickled. The loaded model's
``predict`` takes a DataFrame whose ``path`` column (or first column) lists video or image
files and returns one row per file: ``path``, ``status``, ``score`` (calibrated fake
probability, NaN when not scored), ``verdict``, ``threshold``, ``faces``, ``reason``. The same
model serves over HTTP with ``mlflow models serve -m models:/dflab-demo@champion --env-manager local``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from dflab.predict.models import ModelLoadError, OnnxScorer, find_export


class DetectorModel:
    """A detector that scores files listed in a DataFrame (see the module docstring)."""

    def __init__(self, scorer: OnnxScorer, frames: int | None = None) -> None:
        from dflab.predict.run import choose_threshold
        from dflab.predict.score import model_detector

        self.scorer, self.frames = scorer, frames
        self.threshold = choose_threshold(scorer)
        self.detector = model_detector(scorer)

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        """Score the files of ``model_input`` (DataFrame, list of paths or one path)."""
        import pandas as pd

        from dflab.predict.inputs import kind_of
        from dflab.predict.score import score_file

        if isinstance(model_input, pd.DataFrame):
            column = "path" if "path" in model_input.columns else model_input.columns[0]
            paths = [str(p) for p in model_input[column]]
        else:
            paths = [str(model_input)] if isinstance(model_input, (str, Path)) else [str(p) for p in model_input]
        rows = []
        th = self.threshold.value
        for path in paths:
            result = score_file(path, kind_of(path), self.scorer, self.detector, th, self.frames).result
            rows.append({"path": path, "status": result.status,
                         "score": math.nan if result.score is None else result.score,
                         "verdict": result.verdict or "", "threshold": th, "faces": len(result.tracks),
                         "reason": result.reason})
        return pd.DataFrame(rows, columns=["path", "status", "score", "verdict", "threshold", "faces", "reason"])


def _load_pyfunc(data_path: str) -> DetectorModel:
    """MLflow's entry point: the export folder saved with the model."""
    folder = Path(data_path)
    found = folder if (folder / "export.json").is_file() else find_export(folder)
    if found is None:
        raise ModelLoadError(f"{data_path}: no dflab export (model.onnx with export.json) in the MLflow model")
    return DetectorModel(OnnxScorer(found))
