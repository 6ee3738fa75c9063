"""Reading dflab checkpoints without running anything stored in them.

A Lightning checkpoint is a pickle inside a zip file, and unpickling can call any Python function
the file names: a checkpoint found on a shared tracking server or downloaded with a paper is
untrusted input. Every dflab path that reads a checkpoint (``evaluate``, ``export``, ``train
--resume``, the triplet stage's frozen embedding, Lightning's own restore) therefore loads it with
``torch.load(weights_only=True)`` (PyTorch's restricted unpickler: tensors, numbers, strings,
lists, dicts) and refuses anything else with one line naming the file.

A dflab checkpoint holds, besides Lightning's entries (``state_dict``, ``optimizer_states``,
``loops``, ``callbacks``, ...), ``dflab_config`` (the experiment config as plain data) and
``dflab_mlflow_run_id``.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import nn

    from dflab.config import ExperimentConfig


class CheckpointError(ValueError):
    """A file is not a dflab checkpoint, or would run code when loaded (the message names it)."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a dflab checkpoint's contents onto the CPU, executing nothing from the file.

    Args:
        path: a ``.ckpt`` file written by dflab's training.

    Returns:
        The checkpoint dict; ``dflab_config`` is the experiment config as plain data and
        ``state_dict`` maps ``net.*`` names to tensors.

    Raises:
        CheckpointError: the file is missing, not a PyTorch checkpoint, not one of dflab's,
            or references Python objects beyond plain data (it would run code if unpickled).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if found is None:  # not a pickle torch understands at all
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable pickle data)") from None
        raise CheckpointError(f"{path}: refused: loading it would call or build {found.group(1)}, "
                              "beyond weights and plain data; dflab loads checkpoints with "
                              "torch.load(weights_only=True)") from None
    except Exception as err:  # torch.load meets garbage in many ways (IndexError, KeyError, ...)
        detail = str(err).split(". ")[0].strip()
        detail = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({detail[:160]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "dflab_config" not in ckpt:
        raise CheckpointError(f"{path}: not a dflab checkpoint (no state_dict and dflab_config entries)")
    if not isinstance(ckpt["dflab_config"], dict) or not isinstance(ckpt["state_dict"], dict):
        raise CheckpointError(f"{path}: not a dflab checkpoint (its dflab_config or state_dict is not a mapping)")
    return ckpt


def build_net(cfg: ExperimentConfig) -> nn.Module:
    """The network an experiment config describes (:func:`~dflab.models.create_model` with the
    config's backbone, input size, temporal head and embedding), weights as configured."""
    from dflab.models import create_model

    assert cfg.data.image_size is not None, "data.image_size is resolved at config load"
    return create_model(cfg.model.backbone, img_size=cfg.data.image_size,
                        pretrained_file=cfg.model.pretrained_file, drop_rate=cfg.model.drop_rate,
                        temporal=cfg.model.temporal, temporal_hidden=cfg.model.temporal_hidden,
                        temporal_layers=cfg.model.temporal_layers,
                        embed_dim=cfg.triplet.embed_dim if cfg.triplet.enabled else 0)


def load_checkpoint(path: str | Path) -> tuple[ExperimentConfig, nn.Module]:
    """Rebuild the network of a dflab checkpoint in eval mode, with its experiment config.

    Shared by evaluation, export, the triplet stage and (later) prediction; the file is read
    with :func:`read_checkpoint` (nothing in it runs).

    Raises:
        CheckpointError: not a dflab checkpoint, a file that would run code, a stored config
            that is not valid here, or weights that do not fit the network (names the file).
    """
    return checkpoint_net(read_checkpoint(path), path)


def checkpoint_net(ckpt: dict[str, Any], path: str | Path) -> tuple[ExperimentConfig, nn.Module]:
    """:func:`load_checkpoint` for contents already read with :func:`read_checkpoint` (``path``
    names the file in messages), so a caller that also needs other entries reads the file once."""
    from dflab.config import ConfigError, build_config

    try:
        cfg = build_config(ckpt["dflab_config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: its stored config is not valid here ({err})") from None
    cfg.model.pretrained_file = None  # the checkpoint holds the weights
    net = build_net(cfg)
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise CheckpointError(f"{path}: its weights do not fit {cfg.model.backbone} ({detail[:200]})") from None
    return cfg, net.eval()
