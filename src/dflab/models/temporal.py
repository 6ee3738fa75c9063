"""Temporal detectors: a frame backbone's embeddings over a window of N frames, then an LSTM,
a GRU or a small transformer encoder, then one fake-logit per window.

Recurrent heads follow Güera and Delp, "Deepfake Video Detection Using Recurrent Neural
Networks", AVSS 2018 (CNN features into an LSTM), and Sabir et al., "Recurrent Convolutional
Strategies for Face Manipulation Detection in Videos", CVPR Workshops 2019 (bidirectional
recurrent units over face crops). The transformer head is a standard pre-norm encoder over the
frame embeddings with learned positions and a class token (Vaswani et al., 2017; the class token
as in ViT, Dosovitskiy et al., 2021).

A window's score aggregates into the video score like any clip's (mean of clip probabilities).
In eval mode the output is deterministic: recurrent states start at zero and dropout is off.
"""

from __future__ import annotations

import torch
from torch import nn

from dflab.models.frame import FrameClassifier

TEMPORAL_HEADS = ("lstm", "gru", "transformer")


class TemporalClassifier(nn.Module):
    """Score clips ``(B, T, 3, H, W)`` in ``[0, 1]`` with a frame embedder and a temporal head.

    Args:
        embedder: a :class:`FrameClassifier` whose backbone returns ``(B, D)`` embeddings.
        dim: the embedding size ``D``.
        head: ``lstm``, ``gru`` or ``transformer``.
        hidden: recurrent hidden size (per direction) or transformer width.
        layers: stacked recurrent or encoder layers.
        max_frames: longest window the transformer's position table holds.
        drop_rate: dropout on the embeddings and before the classifier.
    """

    takes_clips = True  # the training module passes whole clips, not frames

    def __init__(self, embedder: FrameClassifier, dim: int, head: str = "lstm", hidden: int = 256,
                 layers: int = 1, max_frames: int = 64, drop_rate: float = 0.0) -> None:
        super().__init__()
        if head not in TEMPORAL_HEADS:
            raise ValueError(f"model.temporal: {head!r} is not one of {', '.join(TEMPORAL_HEADS)}")
        self.embedder, self.head_name = embedder, head
        self.input_size = embedder.input_size
        self.drop = nn.Dropout(drop_rate)
        if head in ("lstm", "gru"):
            rnn = nn.LSTM if head == "lstm" else nn.GRU
            self.rnn = rnn(dim, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                           dropout=drop_rate if layers > 1 else 0.0)
            out = 2 * hidden
        else:
            self.project = nn.Linear(dim, hidden)
            self.cls = nn.Parameter(torch.zeros(1, 1, hidden))
            self.position = nn.Parameter(torch.zeros(1, max_frames + 1, hidden))
            nn.init.trunc_normal_(self.position, std=0.02)
            layer = nn.TransformerEncoderLayer(hidden, nhead=max(1, hidden // 64),
                                               dim_feedforward=2 * hidden, dropout=drop_rate,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(hidden)
            out = hidden
        self.classifier = nn.Linear(out, 1)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` RGB in ``[0, 1]`` -> ``(B,)`` logits."""
        b, t = clips.shape[:2]
        x = self.drop(self.embedder.embed(clips.flatten(0, 1)).view(b, t, -1))
        if self.head_name in ("lstm", "gru"):
            seq, _ = self.rnn(x)  # states start at zero: deterministic
            half = seq.shape[-1] // 2
            # last step of the forward direction, first step of the backward one
            pooled = torch.cat([seq[:, -1, :half], seq[:, 0, half:]], dim=-1)
        else:
            if t + 1 > self.position.shape[1]:
                raise ValueError(f"window of {t} frames exceeds the transformer's "
                                 f"{self.position.shape[1] - 1}; raise max_frames")
            x = torch.cat([self.cls.expand(b, -1, -1), self.project(x)], dim=1)
            pooled = self.norm(self.encoder(x + self.position[:, : t + 1]))[:, 0]
        return self.classifier(self.drop(pooled)).reshape(-1)
