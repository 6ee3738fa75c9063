"""Ensembles: several trained detectors scoring the same clips together.

Averaging the logits of independently trained networks is the standard way the top DFDC
solutions combined models (Seferbekov's winning entry, https://github.com/selimsef/dfdc_deepfake_challenge,
averaged seven EfficientNet-B7s); it needs nothing but the members' outputs. Members may mix
frame and temporal networks as long as they read the same crops.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

COMBINE = ("mean_logit", "mean_prob")


def clip_logits(net: nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """``(B,)`` logits of a frame network (mean over the window's frames) or a temporal one."""
    if getattr(net, "takes_clips", False):
        return net(clips)
    b, t = clips.shape[:2]
    return net(clips.flatten(0, 1)).view(b, t).mean(dim=1)


class EnsembleClassifier(nn.Module):
    """Score clips ``(B, T, 3, H, W)`` with every member and combine the scores.

    Args:
        members: trained networks (frame or temporal).
        combine: ``mean_logit`` (default) or ``mean_prob`` (the logit of the mean probability).
    """

    takes_clips = True

    def __init__(self, members: Sequence[nn.Module], combine: str = "mean_logit") -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if combine not in COMBINE:
            raise ValueError(f"combine: {combine!r} is not one of {', '.join(COMBINE)}")
        self.members = nn.ModuleList(members)
        self.combine = combine

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([clip_logits(m, clips) for m in self.members])
        if self.combine == "mean_logit":
            return logits.mean(dim=0)
        return torch.logit(torch.sigmoid(logits).mean(dim=0), eps=1e-6)
