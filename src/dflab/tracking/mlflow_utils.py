"""MLflow helpers: explicit tracking URI, experiments with a local artifact root, run lookup."""

from __future__ import annotations

import os
from pathlib import Path

from dflab.config.schema import LoggingConfig


def prepare_tracking(cfg: LoggingConfig) -> str:
    """Create the folders behind a SQLite tracking URI and return the URI."""
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        db.parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.artifact_location).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", uri)
    return uri


def client(cfg: LoggingConfig):
    """An ``MlflowClient`` on the configured tracking URI."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=prepare_tracking(cfg))


def ensure_experiment(cfg: LoggingConfig, name: str | None = None) -> str:
    """Id of the MLflow experiment ``name`` (default ``cfg.experiment``), created if missing."""
    c = client(cfg)
    name = name or cfg.experiment
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = Path(cfg.artifact_location).resolve().as_uri()
    return c.create_experiment(name, artifact_location=f"{location}/{name}")
