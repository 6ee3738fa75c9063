"""Triplet-loss siamese training in two stages, each its own MLflow run linked to the other.

Stage 1 trains the embedding (backbone + projection, L2-normalised) with a triplet margin loss:
anchor and positive of one class, negative of the other, mined within the batch. Stage 2 freezes
the embedding and trains a linear head with binary cross-entropy; it is an ordinary detector
run (the same metrics, checkpoints, export and evaluation). See
:mod:`dflab.models.embedding` for the references.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F

from dflab.clips.batch import ClipBatch
from dflab.config import ExperimentConfig, to_dict
from dflab.models.checkpoint import build_net, load_checkpoint
from dflab.tracking.mlflow_utils import client as mlflow_client
from dflab.training.fit import fit_experiment
from dflab.training.freeze import BackboneFreeze
from dflab.training.module import DetectorModule

MINING = ("batch_hard", "batch_all", "random")


def triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float,
                 mining: str = "batch_hard", generator: torch.Generator | None = None) -> torch.Tensor:
    """Triplet margin loss over a batch.

    Args:
        embeddings: ``(B, D)``.
        labels: ``(B,)`` class of each embedding.
        margin: required gap between the negative and the positive distance.
        mining: ``batch_hard`` (each anchor's farthest positive and nearest negative),
            ``batch_all`` (every valid triplet; the mean over those violating the margin), or
            ``random`` (one random positive and negative per anchor).
        generator: random source for ``random`` mining.

    Returns:
        Scalar loss; zero (with a gradient path) when the batch has no valid triplet.
    """
    if mining not in MINING:
        raise ValueError(f"triplet.mining: {mining!r} is not one of {', '.join(MINING)}")
    dist = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(1) & neg_mask.any(1)
    if not valid.any():
        return embeddings.sum() * 0.0
    if mining == "batch_hard":
        pos = dist.masked_fill(~pos_mask, float("-inf")).amax(1)
        neg = dist.masked_fill(~neg_mask, float("inf")).amin(1)
        return F.relu(pos - neg + margin)[valid].mean()
    if mining == "batch_all":
        loss = F.relu(dist[:, :, None] - dist[:, None, :] + margin)
        triplets = pos_mask[:, :, None] & neg_mask[:, None, :]
        values = loss[triplets]
        active = values > 0
        return values[active].mean() if active.any() else values.sum() * 0.0
    rand = torch.rand(dist.shape, generator=generator).to(dist.device)
    pos_idx = rand.masked_fill(~pos_mask, -1.0).argmax(1)
    neg_idx = rand.masked_fill(~neg_mask, -1.0).argmax(1)
    rows = torch.arange(len(labels), device=labels.device)
    return F.relu(dist[rows, pos_idx] - dist[rows, neg_idx] + margin)[valid].mean()


class TripletModule(DetectorModule):
    """Stage 1: trains ``net.embed`` with :func:`triplet_loss`; logs ``<stage>/loss`` only."""

    def __init__(self, net: Any, cfg: ExperimentConfig) -> None:
        super().__init__(net, cfg.optim, config=to_dict(cfg))
        self.margin, self.mining = cfg.triplet.margin, cfg.triplet.mining

    def clip_embeddings(self, clips: torch.Tensor) -> torch.Tensor:
        """One unit embedding per clip: the mean of its frames', renormalised."""
        b, t = clips.shape[:2]
        net: Any = self.net
        frames = net.embed(clips.flatten(0, 1)).view(b, t, -1)
        return F.normalize(frames.mean(dim=1), dim=-1)

    def model_step(self, batch: ClipBatch, stage: str) -> torch.Tensor | None:
        if batch["clip"].shape[0] == 0:  # every clip of the batch failed to decode
            return None
        loss = triplet_loss(self.clip_embeddings(batch["clip"]), batch["label"], self.margin, self.mining)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True,
                 prog_bar=stage != "test", batch_size=len(batch["label"]), sync_dist=stage != "train")
        return loss

    def _log_epoch(self, stage: str) -> None:  # no detection metrics in the embedding stage
        return None


def run_triplet(cfg: ExperimentConfig, **kwargs: Any) -> Any:
    """Run both stages; returns the classification stage's :class:`RunResult`.

    Stage 1 runs ``triplet.embed_epochs`` epochs as ``<name>-embed`` (monitor ``val/loss``);
    stage 2 starts from its best weights, freezes everything but the head and runs
    ``trainer.max_epochs`` epochs as ``<name>``. The runs carry each other's id in the tags
    ``dflab.classifier_run`` and ``dflab.embedding_run``.
    """
    tags = dict(kwargs.pop("tags", None) or {})
    embed_cfg = replace(cfg, name=f"{cfg.name}-embed", monitor="val/loss",
                        trainer=replace(cfg.trainer, max_epochs=cfg.triplet.embed_epochs),
                        logging=replace(cfg.logging, run_name=f"{cfg.logging.run_name or cfg.name}-embed"))
    stage1 = fit_experiment(embed_cfg, module=TripletModule(build_net(cfg), embed_cfg),
                            tags={**tags, "dflab.stage": "embed"}, **kwargs)
    _, net = load_checkpoint(stage1.best_checkpoint)
    module = DetectorModule(net, cfg.optim, config=to_dict(cfg), track_score=cfg.faces.track_score)
    freeze = BackboneFreeze(cfg.trainer.max_epochs)  # the head alone trains, every epoch
    extra = [*kwargs.pop("callbacks", ()), freeze]
    stage2 = fit_experiment(cfg, module=module, callbacks=extra,
                            tags={**tags, "dflab.stage": "classify", "dflab.embedding_run": str(stage1.run_id)},
                            **kwargs)
    mlflow_client(cfg.logging).set_tag(stage1.run_id, "dflab.classifier_run", str(stage2.run_id))
    return stage2
