"""Run one function over many inputs in ``spawn`` worker processes, surviving worker crashes.

Each worker builds its function once (``factory(*args)``, e.g. a face detector and its cache)
and exits when its parent dies. If a worker process dies (a decoder or detector crash), the
inputs in flight are retried one at a time at the end, so only the input that really crashes is
reported (through ``crashed``); the rest finish normally.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

__all__ = ["run_in_pool"]

_WORKER: Callable[[str], Any] | None = None  # set in each worker process by _init_worker


def _init_worker(factory: Callable[..., Callable[[str], Any]], args: Sequence[Any], parent: int) -> None:
    global _WORKER
    _WORKER = factory(*args)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker when the parent dies (a killed parent would leave it waiting forever)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _work(item: str) -> Any:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(item)


def run_in_pool(
    factory: Callable[..., Callable[[str], Any]],
    args: Sequence[Any],
    items: list[str],
    workers: int,
    done: Callable[[Any], None],
    crashed: Callable[[str], Any],
) -> None:
    """Process ``items`` in ``workers`` spawned processes, calling ``done`` with each result.

    Args:
        factory: a module-level (picklable) function; ``factory(*args)`` runs once in each
            worker and returns the function applied to every item there.
        args: picklable arguments of ``factory``.
        items: the inputs (e.g. video paths).
        workers: processes; at most this many items are in flight.
        done: called in this process with each result, in completion order.
        crashed: the result to report for an item whose worker process died on it.

    Raises:
        RuntimeError: the workers die on every item (they cannot start, or crash at once).
    """
    queue = deque(items)
    suspects: list[str] = []
    finished = 0

    def count(result: Any) -> None:
        nonlocal finished
        finished += 1
        done(result)

    while queue:
        suspects += _pool_pass(factory, args, queue, min(workers, len(queue)), count)
    for crashes, item in enumerate(suspects, start=1):
        if not _pool_pass(factory, args, deque([item]), 1, count):
            continue
        if finished == 0 and crashes >= 3:
            raise RuntimeError(
                "worker processes die on every input: they cannot start (with the spawn start "
                "method, run from an importable script or module, not from stdin) or crash at "
                "once; run in this process (workers=0) to see the error"
            )
        done(crashed(item))


def _pool_pass(
    factory: Callable[..., Callable[[str], Any]],
    args: Sequence[Any],
    queue: deque[str],
    workers: int,
    done: Callable[[Any], None],
) -> list[str]:
    """Run one pool until ``queue`` is empty or a worker dies; return the items lost in it."""
    context = mp.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(factory, args, os.getpid())
    )
    running: dict[Future[Any], str] = {}
    lost: list[str] = []
    try:
        while queue or running:
            while queue and len(running) < workers and not lost:
                item = queue.popleft()
                running[pool.submit(_work, item)] = item
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                item = running.pop(future)
                try:
                    done(future.result())
                except BrokenProcessPool:
                    lost.append(item)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return lost
