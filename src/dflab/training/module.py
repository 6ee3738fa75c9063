"""The LightningModule: a thin wrapper around an injected frame classifier.

One shared :meth:`DetectorModule.model_step` serves train, validation and test; each stage owns
one :class:`~dflab.metrics.scores.DetectionMetrics` object, so the metric code is identical in
every stage. Logged names follow ``<stage>/<level>_<metric>``, e.g. ``val/video_auroc``.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from dflab.clips.batch import ClipBatch
from dflab.config.schema import OptimConfig
from dflab.metrics.scores import DetectionMetrics
from dflab.models.ensemble import clip_logits


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class DetectorModule(pl.LightningModule):
    """Train and evaluate a real/fake classifier on face clips.

    Args:
        net: maps ``(N, 3, H, W)`` frames in ``[0, 1]`` to ``(N,)`` logits.
        optim: optimizer and schedule settings.
        config: the full resolved experiment config (a plain dict), stored in checkpoints so that
            export and prediction can rebuild the network.
        track_score: how a video's face-track scores combine into its video score (``max``,
            ``mean`` or ``main``; see :func:`~dflab.metrics.scores.video_scores`).
    """

    def __init__(self, net: nn.Module, optim: OptimConfig, config: dict[str, Any] | None = None,
                 track_score: str = "max") -> None:
        super().__init__()
        self.net = net
        self.optim_cfg = optim
        self.config = config or {}
        self.train_metrics = DetectionMetrics(track_score)
        self.val_metrics = DetectionMetrics(track_score)
        self.test_metrics = DetectionMetrics(track_score)
        #: per stage, the last epoch's ``(video_idx, fake probability, label)`` over all processes;
        #: :func:`dflab.metrics.predictions.keyed_predictions` joins them to their videos
        self.predictions: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def stage_metrics(self, stage: str) -> DetectionMetrics:
        """The metric object of ``train``, ``val`` or ``test``."""
        return getattr(self, f"{stage}_metrics")

    def set_track_score(self, track_score: str) -> None:
        """Change how track scores combine into video scores in every stage's metrics."""
        for stage in ("train", "val", "test"):
            self.stage_metrics(stage).combine = track_score

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """Score clips ``(B, T, 3, H, W)``: a temporal network scores the window, a frame
        network each frame (the clip's logit is then the mean of the frames'); shape ``(B,)``."""
        return clip_logits(self.net, clips)

    def model_step(self, batch: ClipBatch, stage: str) -> torch.Tensor | None:
        """Loss of a batch, with the stage's metrics updated; ``None`` for an empty batch
        (every clip of it failed to decode and was recorded by the data module)."""
        if batch["clip"].shape[0] == 0:
            return None
        logits = self(batch["clip"])
        labels = batch["label"].float()
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        self.stage_metrics(stage).update(logits, labels, batch["video_idx"], batch["clip_idx"],
                                         batch.get("track_idx"))
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True,
                 prog_bar=stage != "test", batch_size=len(labels), sync_dist=stage != "train")
        return loss

    def training_step(self, batch: ClipBatch, batch_idx: int) -> torch.Tensor | None:
        loss = self.model_step(batch, "train")
        if loss is None:
            return None  # Lightning skips the optimizer step
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, step {self.global_step} "
                f"(optim.lr={self.optim_cfg.lr}); lower optim.lr or set trainer.gradient_clip_val"
            )
        return loss

    def validation_step(self, batch: ClipBatch, batch_idx: int) -> None:
        self.model_step(batch, "val")

    def test_step(self, batch: ClipBatch, batch_idx: int) -> None:
        self.model_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        metric = self.stage_metrics(stage)
        if not metric.update_count:
            return
        with metric.sync_context():  # gathers every process's clips (no-op without DDP)
            values = metric.compute_values()
            vids, probs, labels = metric.video_predictions()
            self.predictions[stage] = (vids.cpu(), probs.cpu(), labels.cpu())
        for key, value in values.items():
            self.log(f"{stage}/{key}", value, prog_bar=stage != "train" and key == "video_auroc")
        metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_epoch("val")
        else:
            self.val_metrics.reset()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        cfg = self.optim_cfg
        params = list(self.parameters())  # frozen warm-up parameters join when they thaw
        if cfg.name == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                                         weight_decay=cfg.weight_decay, nesterov=True)
        elif cfg.name == "adam":
            opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        total = max(1, self.trainer.max_epochs or 1)
        warm = cfg.warmup_epochs

        def factor(epoch: int) -> float:
            if epoch < warm:
                return (epoch + 1) / (warm + 1)
            if cfg.scheduler == "none":
                return 1.0
            progress = (epoch - warm) / max(1, total - warm)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    #: MLflow run the module logs to (saved in checkpoints so a resumed run continues it)
    mlflow_run_id: str | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["dflab_config"] = self.config
        checkpoint["dflab_mlflow_run_id"] = self.mlflow_run_id
