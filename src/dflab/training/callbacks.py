"""The Lightning callbacks a run adds from its config: early stopping, the frozen-backbone warm-up,
and the MLflow dataset inputs of every split."""

from __future__ import annotations

import hashlib

import pytorch_lightning as pl
from pytorch_lightning.callbacks import (
    Callback,
    EarlyStopping,
)
from pytorch_lightning.loggers import MLFlowLogger

from dflab.clips.datamodule import DeepfakeDataModule
from dflab.config import ExperimentConfig
from dflab.tracking.mlflow_utils import (
    log_dataset_inputs,
)
from dflab.training.freeze import BackboneFreeze


def extra_callbacks(cfg: ExperimentConfig) -> list[Callback]:
    """Early stopping and the frozen-backbone warm-up, when configured."""
    extra: list[Callback] = []
    if cfg.trainer.early_stopping_patience > 0:
        extra.append(EarlyStopping(monitor=cfg.monitor, mode=monitor_mode(cfg.monitor),
                                   patience=cfg.trainer.early_stopping_patience))
    if cfg.optim.freeze_backbone_epochs > 0:
        extra.append(BackboneFreeze(cfg.optim.freeze_backbone_epochs))
    return extra


class LogDatasetInputs(Callback):
    """At the start of training, log every split as an MLflow dataset input of the run (with a
    digest of its videos, labels and face settings) and the tag ``dflab.data_digest``, so two
    runs on different data are never compared unknowingly."""

    def __init__(self, logger: MLFlowLogger) -> None:
        self.logger = logger

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        run_id = self.logger.run_id
        if not trainer.is_global_zero or not isinstance(datamodule, DeepfakeDataModule) or run_id is None:
            return
        digests = datamodule.dataset_digests()
        client = self.logger.experiment
        log_dataset_inputs(client, run_id, digests)
        combined = hashlib.sha256("".join(d["digest"] for d in digests).encode()).hexdigest()[:16]
        client.set_tag(run_id, "dflab.data_digest", combined)


def monitor_mode(monitor: str) -> str:
    return "min" if monitor.endswith("loss") else "max"


