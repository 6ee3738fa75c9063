"""CPU thread counts, set so that DataLoader workers and the model never oversubscribe the cores.

PyTorch starts one intra-op thread per core in every process. With ``data.num_workers``
loader processes decoding video beside it, the training process's threads and the workers then
fight for the same cores (measured on 2 cores with 2 workers: resnet10t trains 3.3x slower
than with one torch thread). dflab gives each loader worker one torch thread and the training process (and OpenCV, whose
setting the workers inherit) the cores left over (``trainer.num_threads: 0``, the default), or exactly
``trainer.num_threads``.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a cluster job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def training_threads(num_threads: int, num_workers: int, processes: int = 1) -> int:
    """Intra-op threads for each training process.

    Args:
        num_threads: ``trainer.num_threads``; ``0`` chooses: the cores this process may use,
            shared among the ``processes`` training processes of this machine, less one per
            loader worker of each, at least 1.
        num_workers: DataLoader worker processes per training process.
        processes: training processes on this machine (DDP on CPU).
    """
    if num_threads > 0:
        return num_threads
    return max(1, available_cores() // max(1, processes) - num_workers)


def set_training_threads(num_threads: int, num_workers: int, processes: int = 1) -> int:
    """Apply :func:`training_threads` to torch and OpenCV in this process; returns the count."""
    import cv2
    import torch

    threads = training_threads(num_threads, num_workers, processes)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    return threads


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread in the worker, then Lightning's worker
    seeding (which a custom ``worker_init_fn`` would otherwise replace).

    OpenCV's thread count is not touched here: ``cv2.setNumThreads`` in a forked worker whose
    parent already ran OpenCV's thread pool deadlocks (OpenCV 4.x). Workers inherit the count
    the training process set with :func:`set_training_threads`.
    """
    import torch

    torch.set_num_threads(1)
    if int(os.environ.get("PL_SEED_WORKERS", "0")):
        from lightning_fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)
