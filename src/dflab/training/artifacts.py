"""What a finished run leaves in MLflow: best metrics, config, data report, predictions, breakdowns,
ROC plot and the best checkpoint; and a failed run ended FAILED (KILLED on Ctrl-C)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pytorch_lightning.callbacks import (
    ModelCheckpoint,
)
from pytorch_lightning.loggers import MLFlowLogger

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.config import ExperimentConfig
from dflab.datasets.resolve import dataset_roots
from dflab.metrics.breakdown import breakdown, breakdown_metrics, breakdown_table, write_breakdown
from dflab.metrics.predictions import keyed_predictions
from dflab.metrics.reports import model_description, plot_roc, write_predictions
from dflab.tracking.mlflow_utils import save_redacted
from dflab.training.calibration import log_calibration
from dflab.training.result import RunResult
from dflab.utils.report import report

log = logging.getLogger(__name__)


def end_failed_run(logger: MLFlowLogger, err: BaseException) -> None:
    """End the run ``FAILED`` (``KILLED`` on Ctrl-C) with the error as tag ``dflab.error``,
    unless it already ended; never hide ``err`` behind a tracking error."""
    run_id = getattr(logger, "_run_id", None)
    if run_id is None:  # the run was never opened
        return
    try:
        client = logger.experiment
        if client.get_run(run_id).info.status != "RUNNING":
            return
        interrupted = isinstance(err, KeyboardInterrupt) or (
            isinstance(err, SystemExit) and isinstance(err.__context__, KeyboardInterrupt))
        client.set_tag(run_id, "dflab.error", f"{type(err).__name__}: {err}"[:5000])
        client.set_terminated(run_id, "KILLED" if interrupted else "FAILED")
    except Exception as tracking:  # the original error matters more
        log.warning("MLflow run %s could not be marked failed: %s", run_id, tracking)


def store_checkpoint(client: Any, run_id: str, path: Path) -> None:
    """Log a checkpoint as an artifact of the run under ``checkpoints/``.

    With a local artifact store on the same file system the artifact is a hard link to the file
    training wrote, so the weights are on disk once; otherwise the file is uploaded (copied).
    """
    uri = client.get_run(run_id).info.artifact_uri
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file"):  # a local folder; mlflow-artifacts:, s3:, http: ... are uploaded
        target = Path(uri.removeprefix("file://")) / "checkpoints" / path.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            os.link(path, target)
            return
        except OSError:  # another file system, or links not allowed: copy instead
            pass
    client.log_artifact(run_id, str(path), "checkpoints")


def log_run_artifacts(cfg: ExperimentConfig, logger: MLFlowLogger, datamodule: DeepfakeDataModule,
                   checkpoint: ModelCheckpoint, curves: Mapping[str, tuple[Any, Any, Any]],
                   result: RunResult, step: int = 0) -> None:
    client, run_id = logger.experiment, logger.run_id
    # Metrics of the selected checkpoint: validation under best/, test under test/, at the
    # run's last step (a resumed run adds its new values rather than repeating step 0).
    client.log_metric(run_id, f"best/{cfg.monitor}", result.best_score, step=step)
    for key, value in result.metrics.items():
        if key != cfg.monitor:
            client.log_metric(run_id, f"best/{key}" if key.startswith("val/") else key, value, step=step)
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        client.log_artifact(run_id, str(save_redacted(cfg, tmpdir / "config.yaml")))
        client.log_artifact(run_id, str(datamodule.write_report(tmpdir / "data_report.json")))
        probs_by_stage = {}
        for stage, (vids, probs, labels) in curves.items():
            predictions = keyed_predictions(datamodule.split_items[stage], vids, probs, labels)
            client.log_artifact(run_id, str(write_predictions(tmpdir / f"predictions_{stage}.csv", predictions,
                                                              dataset_roots(cfg.data))),
                                "predictions")
            probs_by_stage[f"{stage} (video)"] = (probs.numpy(), labels.numpy())
            rows = breakdown(predictions)
            if rows:
                for key, value in breakdown_metrics(stage, rows).items():
                    client.log_metric(run_id, key, value, step=step)
                client.log_artifact(run_id, str(write_breakdown(tmpdir / f"breakdown_{stage}.csv", stage, rows)),
                                    "reports")
                report(breakdown_table(stage, rows))
        title = f"{cfg.logging.run_name or cfg.name}: {model_description(cfg.model, cfg.data, cfg.triplet)}"
        if probs_by_stage:
            client.log_artifact(run_id, str(plot_roc(probs_by_stage, tmpdir / "roc.png", title)), "plots")
        cal = result.calibration
        if cal is not None:
            log_calibration(client, str(run_id), cal, tmpdir, step, title)
            rule = "equal-error-rate point" if cal.rule == "eer" else f"false-positive rate <= {cal.target_fpr:g}"
            report(f"calibration on {cal.n_videos} validation videos: temperature {cal.temperature:.3f}, "
                   f"ECE {cal.ece_before:.3f} -> {cal.ece_after:.3f}; verdict threshold {cal.threshold:.4f} ({rule})")
    if cfg.logging.log_checkpoint and result.best_checkpoint:
        store_checkpoint(client, str(run_id), Path(result.best_checkpoint))
    if datamodule.excluded:
        log.warning("%d videos left out (see data_report.json): %s", len(datamodule.excluded),
                    "; ".join(e["reason"] for e in datamodule.excluded[:5]))
