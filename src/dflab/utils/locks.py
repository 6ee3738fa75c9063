"""A lock shared by the processes of one machine (and of several, on a file system with working
``flock``), for work that must happen once: creating a database, a study or a parent run.

Built on the ``filelock`` package (a dependency of torch), so it is released when its process
dies, even by ``kill -9``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["file_lock", "lock_path"]


def lock_path(path: str | Path) -> Path:
    """The lock file dflab uses for ``path``: ``<path>.dflab-lock``. Never ``<path>.lock``:
    Optuna's journal storage keeps its own lock (a symlink) under that name, and waits for any
    other file there to go away."""
    path = Path(path)
    return path.with_name(path.name + ".dflab-lock")


@contextmanager
def file_lock(path: str | Path, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the lock file ``path`` (created with its folder if missing) inside the block.

    Raises:
        TimeoutError: another process held it for longer than ``timeout_s`` seconds (names the file).
    """
    from filelock import FileLock
    from filelock import Timeout as LockTimeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout_s)
    except LockTimeout:
        raise TimeoutError(f"{path}: another process held this lock for over {timeout_s:.0f} s; if no "
                           "dflab process runs, something else holds the file") from None
    try:
        yield
    finally:
        lock.release()
