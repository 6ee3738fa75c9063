"""The frame classifier every dflab network is: normalisation built in, one logit per frame.

It takes RGB frames scaled to ``[0, 1]`` and returns one fake-logit per frame, with the
backbone's input normalisation built in (so exported models need no separate preprocessing).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence

import torch
from torch import nn


class FrameClassifier(nn.Module):
    """Normalise frames, run a backbone, return one logit per frame.

    Args:
        backbone: module mapping ``(B, 3, H, W)`` normalised images to ``(B, 1)`` logits.
        mean: per-channel mean used for normalisation.
        std: per-channel standard deviation.
        input_size: ``(3, H, W)`` the backbone expects.
    """

    def __init__(self, backbone: nn.Module, mean: Sequence[float], std: Sequence[float],
                 input_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Score frames.

        Args:
            x: ``(B, 3, H, W)`` RGB in ``[0, 1]``.

        Returns:
            ``(B,)`` logits; positive means fake.
        """
        return self.backbone(self._normalise(x)).reshape(-1)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = typing.cast(torch.Tensor, self.mean), typing.cast(torch.Tensor, self.std)
        return (x - mean) / std

    @property
    def embed_dim(self) -> int:
        """Size of :meth:`embed`'s output."""
        bb: typing.Any = self.backbone
        return int(getattr(bb, "head_hidden_size", None) or bb.num_features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pre-logit embedding ``(B, embed_dim)`` of frames in ``[0, 1]``."""
        x = self._normalise(x)
        bb: typing.Any = self.backbone
        if hasattr(bb, "embed"):  # dflab models
            return bb.embed(x)
        return bb.forward_head(bb.forward_features(x), pre_logits=True)  # timm models
