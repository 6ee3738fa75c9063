"""Writing a file all at once, so a killed process never leaves half a file behind."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", durable: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one rename.

    The temporary file (``.<name>.<random>.tmp`` in the same folder, so the rename stays on one
    file system) is readable by others like an ordinary file (0644: caches may be shared), and
    is removed if the block raises. Readers see the old file or the new one, never a part.

    Args:
        path: the file to write (its folder is created if missing).
        mode: ``wb`` or ``w``.
        durable: ``fsync`` before the rename, so the file survives a power cut too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            os.fchmod(fh.fileno(), 0o644)  # mkstemp makes 0600 files
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
