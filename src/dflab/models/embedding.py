"""A frame backbone with an L2-normalised embedding and a light classification head, the network
of the triplet-loss siamese detectors.

Siamese training for face-forgery detection with a triplet loss follows Kumar et al.,
"Detecting Deepfakes with Metric Learning", IWBF 2020 (https://arxiv.org/abs/2003.08645); the
triplet margin loss and batch-hard mining are from Schroff et al., "FaceNet", CVPR 2015, and
Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification", 2017.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dflab.models.frame import FrameClassifier


class EmbeddingClassifier(nn.Module):
    """``frames -> backbone embedding -> linear projection -> L2 normalise -> linear head``.

    The first stage trains :meth:`embed` with a triplet loss; the second trains ``head`` on the
    frozen embedding. Forward returns the head's logits, so the network trains, evaluates and
    exports like any frame classifier.

    Args:
        frames: a :class:`FrameClassifier` (its own classifier is not used).
        dim: embedding size.
    """

    def __init__(self, frames: FrameClassifier, dim: int = 128) -> None:
        super().__init__()
        self.frames = frames
        self.input_size = frames.input_size
        self.project = nn.Linear(frames.embed_dim, dim)
        self.head = nn.Linear(dim, 1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Unit-length embeddings ``(B, dim)`` of frames in ``[0, 1]``."""
        return F.normalize(self.project(self.frames.embed(x)), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x)).reshape(-1)
