"""One registry of dataset adapters: a name, a typed options dataclass and a scan function.

An adapter turns a dataset root on disk (the official layout, as downloaded) into a list of
:class:`~dflab.datasets.sources.VideoItem` with labels, splits, groups, manipulation methods and
source links. Its options come from ``data.options`` in an experiment and are checked against
the adapter's dataclass like every other config key (an unknown option is refused by name).
Adapters raise :class:`~dflab.datasets.sources.DatasetLayoutError` for a broken layout (a missing
folder or split file); a video a split file names but that is missing on disk is still
listed, so :func:`dflab.datasets.check.check_dataset` can report it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dflab.datasets.sources import DatasetLayoutError, VideoItem

ScanFn = Callable[[Path, Any], list[VideoItem]]
PrepareFn = Callable[[Path, Any, bool], None]


@dataclass(frozen=True)
class NoOptions:
    """The adapter takes no options."""


@dataclass(frozen=True)
class DatasetAdapter:
    """A registered dataset layout.

    Attributes:
        name: the value of ``data.source``.
        scan: ``scan(root, options) -> list[VideoItem]``.
        options: dataclass of the adapter's options (``data.options``).
        summary: one line for ``dflab data list`` and error messages.
        prepare: ``prepare(root, options, progress)`` puts the dataset on disk under ``root``
            before it is scanned, if it is not there yet (the demo adapter generates its videos);
            ``None`` for datasets the user downloads.
    """

    name: str
    scan: ScanFn
    options: type = NoOptions
    summary: str = ""
    prepare: PrepareFn | None = None


_REGISTRY: dict[str, DatasetAdapter] = {}


def register_dataset(name: str, options: type = NoOptions, summary: str = "",
                     prepare: PrepareFn | None = None) -> Callable[[ScanFn], ScanFn]:
    """Decorator registering ``scan(root, options)`` as the adapter ``name`` (with an optional
    ``prepare(root, options, progress)`` that makes the dataset first; see :class:`DatasetAdapter`)."""

    def wrap(fn: ScanFn) -> ScanFn:
        if name in _REGISTRY:
            raise ValueError(f"dataset adapter {name!r} is already registered")
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = DatasetAdapter(name, fn, options, summary or (doc[0] if doc else ""), prepare)
        return fn

    return wrap


def dataset_names() -> list[str]:
    """Names of every registered adapter (the valid values of ``data.source``)."""
    return sorted(_REGISTRY)


def get_adapter(name: str) -> DatasetAdapter:
    """The adapter registered as ``name``.

    Raises:
        DatasetLayoutError: no such adapter (lists the known ones).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetLayoutError(
            f"unknown dataset source {name!r}; known: {', '.join(dataset_names())}"
        ) from None


def build_options(name: str, raw: Mapping[str, Any] | None, prefix: str = "data.options.") -> Any:
    """The adapter's options dataclass filled from ``raw`` (typed and strict).

    Raises:
        ConfigError: an unknown option or a value of the wrong type (names ``data.options.<key>``).
    """
    from dflab.config import ConfigError
    from dflab.config.loader import build_section

    adapter = get_adapter(name)
    raw = dict(raw or {})
    if adapter.options is NoOptions and raw:
        raise ConfigError(f"{prefix}{next(iter(raw))}: dataset source {name!r} takes no options")
    options: Any = build_section(adapter.options, raw, prefix)
    check = getattr(options, "validate", None)
    if callable(check):
        try:
            check()
        except ValueError as err:
            raise ConfigError(f"{prefix.rstrip('.')}: {err}") from None
    return options


def scan_dataset(name: str, root: str | Path, options: Mapping[str, Any] | Any = None,
                 progress: bool = False) -> list[VideoItem]:
    """List the videos of the dataset ``name`` under ``root`` (first making them, for an adapter
    with a ``prepare`` step such as the demo).

    Args:
        name: registered adapter name.
        root: dataset root folder (or manifest file for ``manifest``).
        options: a mapping (validated here) or an already built options dataclass.
        progress: progress bar while a ``prepare`` step works.

    Raises:
        DatasetLayoutError: unknown adapter, missing root or a layout the adapter refuses.
    """
    adapter = get_adapter(name)
    if options is None or isinstance(options, Mapping):
        options = build_options(name, options)
    root = Path(root).expanduser()
    if adapter.prepare is not None:
        adapter.prepare(root, options, progress)
    if not root.exists():
        raise DatasetLayoutError(f"{root}: dataset root for {name!r} does not exist")
    items = adapter.scan(root.resolve(), options)
    return [it if it.dataset else dataclasses.replace(it, dataset=name) for it in items]
