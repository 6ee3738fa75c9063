"""Resolve an experiment's ``data`` section into the list of videos with their splits.

Kept free of torch and Lightning so that ``dflab data check`` starts in a moment.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from dflab.config.schema import DataConfig
from dflab.datasets import scan_dataset
from dflab.datasets.check import check_dataset
from dflab.datasets.sources import DatasetLayoutError, VideoItem, assign_splits

__all__ = ["dataset_roots", "refuse_train_without_fakes", "resolve_items"]


def resolve_items(data: DataConfig, progress: bool = True, check: bool = True) -> list[VideoItem]:
    """List the dataset's videos with a split each (generating the demo dataset if needed).

    Args:
        data: the dataset settings.
        progress: progress bar while the demo dataset is generated.
        check: run :func:`dflab.datasets.check.check_dataset` (without decoding) and refuse a
            dataset with missing or empty videos, duplicates or leakage between splits.

    Raises:
        DatasetLayoutError: the dataset does not match the layout ``data.source`` names, or
            the check found a problem (the message lists them, naming the files).
    """
    items = scan_dataset(data.source, data.root, source_options(data), progress=progress)
    for extra in data.extra_sources:
        name = extra.name or extra.source
        items += [replace(it, dataset=name) for it in scan_dataset(extra.source, extra.root, extra.options)]
    items = assign_splits(items, data.val_fraction, data.test_fraction, data.split_seed)
    if check:
        check_dataset(items, f"{data.source} at {data.root}").raise_if_broken()
    return items


def source_options(data: DataConfig) -> dict[str, Any]:
    """``data.options`` of the main source; for the demo, ``data.demo_seed`` is its ``seed`` option
    unless ``data.options.seed`` is given."""
    if data.source == "demo":
        return {"seed": data.demo_seed, **data.options}
    return dict(data.options)


def refuse_train_without_fakes(items: list[VideoItem], data: DataConfig) -> None:
    """A training split of reals only needs self-blended pseudo-fakes (``data.self_blend`` > 0).

    Raises:
        DatasetLayoutError: the train split holds no fake video and self-blending is off.
    """
    train = [it.label for it in items if it.split == "train"]
    if train and 1 not in train and data.self_blend <= 0:
        raise DatasetLayoutError(
            f"{data.root}: the train split holds only real videos ({len(train)}) and no fake; add fake "
            "videos or turn on data.self_blend (data.self_blend=1.0 trains from real videos alone "
            "on self-blended pseudo-fakes)")


def dataset_roots(data: DataConfig) -> dict[str, Path]:
    """The folder of each dataset of a config, by the name its videos carry (``VideoItem.dataset``):
    paths in reports are written relative to it. A manifest's folder stands for the manifest."""
    named = [("demo" if data.source == "demo" else data.source, data.root)]
    named += [(extra.name or extra.source, extra.root) for extra in data.extra_sources]
    out = {}
    for name, root in named:
        folder = Path(root).expanduser().resolve()
        out[name] = folder.parent if folder.is_file() else folder
    return out
