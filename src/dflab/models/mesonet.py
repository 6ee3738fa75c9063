"""MesoNet-4 and MesoInception-4 for face-forgery detection.

Paper: "MesoNet: a Compact Facial Video Forgery Detection Network", Afchar, Nozick, Yamagishi and
Echizen, WIFS 2018 (https://arxiv.org/abs/1809.00888). Original Keras code:
https://github.com/DariusAf/MesoNet (``classifiers.py``). At the paper's 256x256 input the
networks have 27,977 (Meso-4) and 28,615 (MesoInception-4) trainable parameters, as in the
paper; other input sizes change only the first dense layer's width. Layer order follows the
Keras code: convolution with ReLU, then batch normalisation, then max pooling ("same" padding).
"""

from __future__ import annotations

import torch
from torch import nn

from dflab.models.registry import register_model


def _block(cin: int, cout: int, kernel: int, pool: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(cout),
        nn.MaxPool2d(pool, pool, ceil_mode=True),  # Keras padding="same"
    )


def _pooled_side(img_size: int) -> int:
    side = img_size
    for pool in (2, 2, 2, 4):
        side = -(-side // pool)
    return side


def _head(features: int, drop_rate: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(drop_rate),
        nn.Linear(features, 16),
        nn.LeakyReLU(0.1),
        nn.Dropout(drop_rate),
        nn.Linear(16, 1),
    )


class _MesoNet(nn.Module):
    """Shared part of the MesoNets: the subclass's ``features`` and the two-layer head."""

    num_features = 16  # the head's hidden layer, used as the frame embedding

    def __init__(self, features: nn.Module, img_size: int, drop_rate: float) -> None:
        super().__init__()
        self.features = features
        self.head = _head(16 * _pooled_side(img_size) ** 2, drop_rate)

    def embed(self, x):
        """The 16-d hidden layer of the head (after LeakyReLU)."""
        return self.head[:4](self.features(x))

    def forward(self, x):
        return self.head(self.features(x))


class Meso4(_MesoNet):
    """MesoNet-4: four conv blocks and a two-layer head; outputs ``(B, 1)`` logits.

    Args:
        img_size: input side (256 in the paper).
        drop_rate: dropout in the head (0.5 in the paper).
    """

    def __init__(self, img_size: int = 256, drop_rate: float = 0.5) -> None:
        features = nn.Sequential(
            _block(3, 8, 3, 2), _block(8, 8, 5, 2), _block(8, 16, 5, 2), _block(16, 16, 5, 4)
        )
        super().__init__(features, img_size, drop_rate)


def _conv_relu(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel - 1) // 2  # Keras padding="same"
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation), nn.ReLU(inplace=True)
    )


class InceptionLayer(nn.Module):
    """MesoInception's modified Inception module: a 1x1 branch and three 1x1 -> 3x3 branches
    with dilation 1, 2 and 3, concatenated (``a + b + c + d`` channels)."""

    def __init__(self, cin: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList([
            _conv_relu(cin, a, 1),
            nn.Sequential(_conv_relu(cin, b, 1), _conv_relu(b, b, 3)),
            nn.Sequential(_conv_relu(cin, c, 1), _conv_relu(c, c, 3, dilation=2)),
            nn.Sequential(_conv_relu(cin, d, 1), _conv_relu(d, d, 3, dilation=3)),
        ])

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class MesoInception4(_MesoNet):
    """MesoInception-4: two Inception blocks, two 5x5 conv blocks and the Meso-4 head.

    Args:
        img_size: input side (256 in the paper).
        drop_rate: dropout in the head (0.5 in the paper).
    """

    def __init__(self, img_size: int = 256, drop_rate: float = 0.5) -> None:
        def pooled(module: nn.Module, channels: int, pool: int) -> nn.Sequential:
            return nn.Sequential(module, nn.BatchNorm2d(channels),
                                 nn.MaxPool2d(pool, pool, ceil_mode=True))

        features = nn.Sequential(
            pooled(InceptionLayer(3, 1, 4, 4, 2), 11, 2),
            pooled(InceptionLayer(11, 2, 4, 4, 2), 12, 2),
            _block(12, 16, 5, 2),
            _block(16, 16, 5, 4),
        )
        super().__init__(features, img_size, drop_rate)


@register_model("meso4")
def meso4(img_size: int = 256, drop_rate: float = 0.5, **_: object) -> Meso4:
    """MesoNet-4 (Afchar et al., 2018)."""
    return Meso4(img_size=img_size, drop_rate=drop_rate)


@register_model("meso_inception4")
def meso_inception4(img_size: int = 256, drop_rate: float = 0.5, **_: object) -> MesoInception4:
    """MesoInception-4 (Afchar et al., 2018)."""
    return MesoInception4(img_size=img_size, drop_rate=drop_rate)
