"""Model registry and the ``create_model`` factory.

dflab models are registered by name with :func:`register_model`; any other name is looked up in
timm. Every model returned by :func:`create_model` is a :class:`FrameClassifier`: it takes RGB
frames scaled to ``[0, 1]`` and returns one fake-logit per frame, with the backbone's input
normalisation built in (so exported models need no separate preprocessing).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

ModelFn = Callable[..., nn.Module]
_REGISTRY: dict[str, ModelFn] = {}
_INPUT_SIZE: dict[str, int] = {}


def register_model(name: str, input_size: int = 256) -> Callable[[ModelFn], ModelFn]:
    """Decorator registering a function that builds a backbone returning ``(B, 1)`` logits.

    Args:
        name: registry name.
        input_size: the input side the model was designed for (``data.image_size: null``).
    """

    def wrap(fn: ModelFn) -> ModelFn:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        _INPUT_SIZE[name] = input_size
        return fn

    return wrap


def default_image_size(name: str) -> int:
    """The input side a backbone expects: its registered size, or timm's pretrained config.

    Raises:
        ValueError: unknown model name.
    """
    from dflab.models import mesonet  # noqa: F401  (registers dflab's own models)

    if name in _INPUT_SIZE:
        return _INPUT_SIZE[name]
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(name):
        raise ValueError(f"model.backbone: unknown model {name!r}")
    cfg = get_pretrained_cfg(name)
    return int(cfg.input_size[-1]) if cfg is not None else 224


def list_models() -> list[str]:
    """Names of dflab's own models (any timm model name works too)."""
    return sorted(_REGISTRY)


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


def _timm_model(name: str, img_size: int, pretrained_file: str | None, drop_rate: float) -> FrameClassifier:
    import timm

    if not timm.is_model(name):
        raise ValueError(
            f"model.backbone: unknown model {name!r}; use a dflab model ({', '.join(list_models())}) "
            "or a timm model name (see timm.list_models())"
        )
    kwargs: dict = {"num_classes": 1, "drop_rate": drop_rate}
    if pretrained_file is not None:
        if not Path(pretrained_file).is_file():
            raise FileNotFoundError(f"model.pretrained_file: {pretrained_file} does not exist")
        kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained_file), "num_classes": 0}
    try:  # models with position embeddings (ViT, Swin, ...) are built for the crop size
        model = timm.create_model(name, pretrained=pretrained_file is not None, img_size=img_size,
                                  **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
        model = timm.create_model(name, pretrained=pretrained_file is not None, **kwargs)
    cfg = timm.data.resolve_data_config({}, model=model)
    return FrameClassifier(model, cfg["mean"], cfg["std"], (3, img_size, img_size))


def create_model(name: str, img_size: int = 224, pretrained_file: str | None = None,
                 drop_rate: float = 0.0, temporal: str = "none", temporal_hidden: int = 256,
                 temporal_layers: int = 1, embed_dim: int = 0, **kwargs) -> nn.Module:
    """Build a frame classifier, or a temporal clip classifier around one, by name.

    Args:
        name: a dflab model (see :func:`list_models`) or any timm model name.
        img_size: side of the square input crops.
        pretrained_file: local weights file (never downloaded from a hub).
        drop_rate: dropout before the classifier.
        temporal: ``none`` (a :class:`FrameClassifier` scoring frames) or ``lstm``, ``gru``,
            ``transformer`` (a :class:`~dflab.models.temporal.TemporalClassifier` scoring
            ``(B, T, 3, H, W)`` windows from the backbone's embeddings).
        temporal_hidden: hidden size of the temporal head.
        temporal_layers: layers of the temporal head.
        embed_dim: if > 0, an :class:`~dflab.models.embedding.EmbeddingClassifier` (unit
            embedding of this size and a linear head) for triplet-loss training.
        **kwargs: passed to a dflab model's builder.

    Raises:
        ValueError: unknown model name.
        FileNotFoundError: ``pretrained_file`` does not exist.
    """
    from dflab.models import mesonet  # noqa: F401  (registers dflab's own models)

    if embed_dim > 0:
        from dflab.models.embedding import EmbeddingClassifier

        frames = create_model(name, img_size, pretrained_file, drop_rate, **kwargs)
        assert isinstance(frames, FrameClassifier)
        return EmbeddingClassifier(frames, embed_dim)
    if temporal != "none":
        from dflab.models.temporal import TemporalClassifier

        frames = create_model(name, img_size, pretrained_file, drop_rate, **kwargs)
        assert isinstance(frames, FrameClassifier)
        return TemporalClassifier(frames, frames.embed_dim, temporal, temporal_hidden,
                                  temporal_layers, drop_rate=drop_rate)
    if name in _REGISTRY:
        model = _REGISTRY[name](img_size=img_size, drop_rate=drop_rate, **kwargs)
        if pretrained_file is not None:
            state = torch.load(pretrained_file, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state))
        return model if isinstance(model, FrameClassifier) else FrameClassifier(
            model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (3, img_size, img_size))
    return _timm_model(name, img_size, pretrained_file, drop_rate)
