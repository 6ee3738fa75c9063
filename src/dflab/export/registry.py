"""An exported detector as an MLflow Model in the model registry, with a ``champion`` alias.

The export folder (ONNX graph, ``export.json`` with crop settings and calibration, slim
checkpoint) is saved as an MLflow Model of the ``python_function`` flavour whose loader is
:mod:`dflab.predict.pyfunc` (``loader_module``: nothing is pickled, loading imports dflab and
reads the files). It is logged to the run under ``model/`` with a signature (input: a column
``path`` of video or image files; output: one row per file with its score and verdict) and
registered as a new version of a registered model. The alias ``champion`` moves to the new
version only when it is better than the current champion on the same validation metric, so
``models:/<name>@champion`` always names the best model registered so far; each version carries
the metric as tags ``dflab.metric`` / ``dflab.metric_value``.

See https://mlflow.org/docs/latest/ml/model-registry/ (aliases) and
https://mlflow.org/docs/latest/ml/traditional-ml/tutorials/creating-custom-pyfunc/ (loader modules).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dflab.utils.report import report

LOADER_MODULE = "dflab.predict.pyfunc"
CHAMPION = "champion"


@dataclass
class RegisteredVersion:
    """A registered model version and what happened to the champion alias.

    Attributes:
        name: registered model name; ``version`` the new version.
        metric: the validation metric the alias compares (``best/val/video_auroc``, ...).
        value: the new version's value of it.
        champion: the alias now points at the new version.
        previous: version the alias pointed at before (``None``: there was none).
        previous_value: that version's value of the metric.
    """

    name: str
    version: str
    metric: str
    value: float
    champion: bool
    previous: str | None = None
    previous_value: float | None = None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def signature() -> Any:
    """Input: ``path`` (string); output: one row per file."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    outputs: list[ColSpec | Any] = [ColSpec("string", "path"), ColSpec("string", "status"), ColSpec("double", "score"),
               ColSpec("string", "verdict"), ColSpec("double", "threshold"), ColSpec("long", "faces"),
               ColSpec("string", "reason")]
    inputs: list[ColSpec | Any] = [ColSpec("string", "path")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


def log_pyfunc_model(client: Any, run_id: str, export_dir: str | Path) -> str:
    """Save the export folder as an MLflow pyfunc model and log it to the run under ``model/``.

    Returns:
        The model's artifact URI (the registry's ``source``).
    """
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        with warnings.catch_warnings():  # an input example would have to be a real video file
            warnings.filterwarnings("ignore", message=".*input example was not provided.*")
            mlflow.pyfunc.save_model(str(folder), loader_module=LOADER_MODULE, data_path=str(export_dir),
                                     signature=signature(), pip_requirements=["dflab", "onnxruntime"])
        client.log_artifacts(run_id, str(folder), "model")
    return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"


def _value(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def register(client: Any, name: str, run_id: str, source: str, metric: str, value: float,
             higher_is_better: bool = True) -> RegisteredVersion:
    """Register ``source`` as a new version of ``name``; move ``champion`` to it if it is better
    than the current champion on ``metric`` (or there is none).

    A champion recorded under another metric is never compared (the alias stays; the report
    says why).
    """
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description="dflab deepfake detector (python_function: "
                                       "scores a DataFrame with a `path` column of videos and images)")
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    version = client.create_model_version(name, source, run_id=run_id,
                                          tags={"dflab.metric": metric, "dflab.metric_value": repr(value)})
    out = RegisteredVersion(name, str(version.version), metric, value, champion=False)
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        current = None
    if current is None:
        out.champion = True
    else:
        out.previous = str(current.version)
        out.previous_value = _value(current.tags.get("dflab.metric_value"))
        same = current.tags.get("dflab.metric") == metric and out.previous_value is not None
        if same and math.isfinite(value):
            prev = out.previous_value
            assert prev is not None
            out.champion = value > prev if higher_is_better else value < prev
        elif not same:
            report(f"{name}@{CHAMPION} (version {current.version}) was chosen on another metric "
                   f"({current.tags.get('dflab.metric')}); the alias stays")
    if out.champion:
        client.set_registered_model_alias(name, CHAMPION, out.version)
    was = "" if out.previous_value is None else f", {metric}={out.previous_value:.4f}"
    if out.champion:
        moved = f"now version {out.version}" + ("" if out.previous is None else f" (was {out.previous}{was})")
    else:
        moved = f"stays version {out.previous}{was}"
    report(f"registered {out.uri} ({metric}={value:.4f}); {name}@{CHAMPION} {moved}")
    return out
