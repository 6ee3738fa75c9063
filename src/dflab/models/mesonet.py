"""MesoNet-4 for face-forgery detection.

Paper: "MesoNet: a Compact Facial Video Forgery Detection Network", Afchar, Nozick, Yamagishi and
Echizen, WIFS 2018 (https://arxiv.org/abs/1809.00888). Original Keras code:
https://github.com/DariusAf/MesoNet. At the paper's 256x256 input the network has 27,977
trainable parameters; other input sizes change only the first dense layer's width.
"""

from __future__ import annotations

from torch import nn

from dflab.models.registry import register_model


def _block(cin: int, cout: int, kernel: int, pool: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(cout),
        nn.MaxPool2d(pool, pool, ceil_mode=True),  # Keras padding="same"
    )


class Meso4(nn.Module):
    """MesoNet-4: four conv blocks and a two-layer head; outputs ``(B, 1)`` logits.

    Args:
        img_size: input side (256 in the paper).
        drop_rate: dropout in the head (0.5 in the paper).
    """

    def __init__(self, img_size: int = 256, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(3, 8, 3, 2), _block(8, 8, 5, 2), _block(8, 16, 5, 2), _block(16, 16, 5, 4)
        )
        side = img_size
        for pool in (2, 2, 2, 4):
            side = -(-side // pool)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(drop_rate),
            nn.Linear(16 * side * side, 16),
            nn.LeakyReLU(0.1),
            nn.Dropout(drop_rate),
            nn.Linear(16, 1),
        )

    def forward(self, x):
        return self.head(self.features(x))


@register_model("meso4")
def meso4(img_size: int = 256, drop_rate: float = 0.5, **_: object) -> Meso4:
    """MesoNet-4 (Afchar et al., 2018)."""
    return Meso4(img_size=img_size, drop_rate=drop_rate)
