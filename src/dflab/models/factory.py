"""The ``create_model`` factory: dflab's own networks by name, any timm backbone, and the
temporal and embedding heads around either.

Every model returned by :func:`create_model` takes RGB frames scaled to ``[0, 1]`` (a
:class:`~dflab.models.frame.FrameClassifier` inside); importing this module registers dflab's
own networks.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dflab.models import mesonet  # noqa: F401  (registers dflab's own models)
from dflab.models.embedding import EmbeddingClassifier
from dflab.models.frame import FrameClassifier
from dflab.models.registry import builder, list_models, registered_input_size
from dflab.models.temporal import TemporalClassifier


def default_image_size(name: str) -> int:
    """The input side a backbone expects: its registered size, or timm's pretrained config.

    Raises:
        ValueError: unknown model name.
    """
    size = registered_input_size(name)
    if size is not None:
        return size
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(name):
        raise ValueError(f"model.backbone: unknown model {name!r}")
    cfg = get_pretrained_cfg(name)
    return int(cfg.input_size[-1]) if cfg is not None else 224


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
    if embed_dim > 0:
        frames = create_model(name, img_size, pretrained_file, drop_rate, **kwargs)
        assert isinstance(frames, FrameClassifier)
        return EmbeddingClassifier(frames, embed_dim)
    if temporal != "none":
        frames = create_model(name, img_size, pretrained_file, drop_rate, **kwargs)
        assert isinstance(frames, FrameClassifier)
        return TemporalClassifier(frames, frames.embed_dim, temporal, temporal_hidden,
                                  temporal_layers, drop_rate=drop_rate)
    build = builder(name)
    if build is not None:
        model = build(img_size=img_size, drop_rate=drop_rate, **kwargs)
        if pretrained_file is not None:
            state = torch.load(pretrained_file, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state))
        return model if isinstance(model, FrameClassifier) else FrameClassifier(
            model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), (3, img_size, img_size))
    return _timm_model(name, img_size, pretrained_file, drop_rate)
