"""Thread counts: loader workers and the model never oversubscribe the cores."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from dflab.utils.threads import available_cores, training_threads, worker_init


def test_training_threads_leave_one_core_per_loader_worker() -> None:
    cores = available_cores()
    assert training_threads(0, 0) == cores
    assert training_threads(0, 2) == max(1, cores - 2)
    assert training_threads(0, 64) == 1  # never below one
    assert training_threads(0, 1, processes=2) == max(1, cores // 2 - 1)  # DDP on CPU
    assert training_threads(3, 2) == 3  # an explicit trainer.num_threads wins


class _Threads(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        return torch.get_num_threads()


def test_loader_workers_run_one_torch_thread() -> None:
    loader = DataLoader(_Threads(), batch_size=1, num_workers=2, worker_init_fn=worker_init)
    assert [int(b) for b in loader] == [1, 1]


def test_a_run_sets_the_training_process_threads(fast_overrides) -> None:
    from dflab.experiment import build_experiment
    from dflab.training.train import run_experiment

    before = torch.get_num_threads()
    try:
        run_experiment(build_experiment({}, [*fast_overrides, "trainer.num_threads=1"]), progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
