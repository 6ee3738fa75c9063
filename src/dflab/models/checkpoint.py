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
from typing import Any

import torch


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
