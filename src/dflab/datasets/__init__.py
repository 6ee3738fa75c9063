"""Dataset adapters: one module per layout, all behind :func:`scan_dataset`.

Importing this package registers every adapter, so ``data.source`` may name any of them.
"""

# Importing a module registers its adapters.
from dflab.datasets import celebdf, deeperforensics, dfdc, ffpp, generic, timit, uadfv  # noqa: F401
from dflab.datasets.demo import adapter  # noqa: F401
from dflab.datasets.registry import (
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
