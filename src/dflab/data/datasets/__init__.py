"""Dataset adapters: one module per layout, all behind :func:`scan_dataset`.

Importing this package registers every adapter, so ``data.source`` may name any of them.
"""

from dflab.data.datasets import generic  # noqa: F401  (registers its adapters)
from dflab.data.datasets.registry import (
    DatasetAdapter,
    NoOptions,
    build_options,
    dataset_names,
    get_adapter,
    register_dataset,
    scan_dataset,
)

__all__ = [
    "DatasetAdapter",
    "NoOptions",
    "build_options",
    "dataset_names",
    "get_adapter",
    "register_dataset",
    "scan_dataset",
]
