"""The error every dataset reader raises for input that does not fit (one line naming the file)."""

from __future__ import annotations


class DatasetLayoutError(ValueError):
    """The dataset on disk does not match the expected layout; the message names the path."""
