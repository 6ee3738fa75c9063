"""Frozen-backbone warm-up: train only the classifier head for the first epochs.

A new head on a pretrained backbone sends large, random gradients into the backbone at first;
freezing the backbone until the head has settled (the "linear probe, then fine-tune" schedule
of Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution", ICLR 2022) protects the pretrained features. While frozen, the backbone's
batch-norm statistics are frozen too.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from torch import nn

from dflab.models.frame import FrameClassifier


def backbone_and_head(net: nn.Module) -> tuple[nn.Module, list[nn.Module]]:
    """The part a warm-up freezes and the head modules inside or beside it that keep training."""
    from dflab.models.embedding import EmbeddingClassifier
    from dflab.models.temporal import TemporalClassifier

    if isinstance(net, EmbeddingClassifier):
        return net, [net.head]  # the triplet head stage: only the linear head trains
    if isinstance(net, TemporalClassifier):
        return net.embedder, []  # the temporal head and classifier sit outside the embedder
    if isinstance(net, FrameClassifier):
        bb: Any = net.backbone
        if hasattr(bb, "get_classifier"):  # timm
            return bb, [bb.get_classifier()]
        if hasattr(bb, "head"):  # MesoNets: the two dense layers
            return bb, [bb.head]
    raise TypeError(f"cannot tell the backbone from the head of {type(net).__name__}")


class BackboneFreeze(pl.Callback):
    """Freeze the backbone for the first ``epochs`` training epochs.

    Args:
        epochs: epochs with a frozen backbone (0: never frozen).
    """

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        backbone, heads = backbone_and_head(pl_module.net)  # type: ignore[arg-type]
        frozen = trainer.current_epoch < self.epochs
        for p in backbone.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            backbone.eval()  # keep batch-norm statistics fixed as well
        for head in heads:
            head.train()
            for p in head.parameters():
                p.requires_grad_(True)
