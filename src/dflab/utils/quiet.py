"""Warnings from libraries that a dflab user cannot act on, silenced while dflab runs.

Each entry says why it is noise. Everything else still shows.
"""

from __future__ import annotations

import warnings
from contextlib import ContextDecorator
from types import TracebackType

KNOWN_NOISE: tuple[tuple[str, str], ...] = (
    # Lightning's own use of a torch API deprecated in torch 2.10; nothing a user can change.
    (r".*isinstance\(treespec, LeafSpec\)", "Lightning's pytree helper on newer torch"),
    # The demo and small datasets have fewer batches per epoch than Lightning's logging interval;
    # dflab logs epoch metrics, which do not depend on it.
    (r"The number of training batches .* is smaller than the logging interval", "epoch metrics are logged anyway"),
    # Optuna marks its heartbeat (used to fail trials of killed workers) as experimental.
    (r"Argument ``heartbeat_interval`` is an experimental feature", "Optuna's heartbeat fails killed trials"),
    (r"Checkpoint directory .* exists and is not empty", "a resumed run writes into its own folder"),
)


class quiet_known_warnings(ContextDecorator):
    """Silence :data:`KNOWN_NOISE` inside a ``with`` block or a decorated function."""

    def __enter__(self) -> quiet_known_warnings:
        self._saved = warnings.catch_warnings()
        self._saved.__enter__()
        for pattern, _why in KNOWN_NOISE:
            warnings.filterwarnings("ignore", message=pattern)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._saved.__exit__(kind, value, traceback)
