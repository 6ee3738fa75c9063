"""What a trained detector costs to run: its size and its inference time per clip.

Logged with every run (``model/params_m``, ``model/latency_ms``), so a sweep can trade accuracy
against cost (NSGA-II over ``val/video_auroc`` and ``model/latency_ms``, see
:mod:`dflab.sweeps.space`).
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

__all__ = ["model_costs"]


@torch.no_grad()
def model_costs(net: nn.Module, example: torch.Tensor, repeats: int = 5) -> dict[str, float]:
    """Size and speed of ``net`` on one input.

    Args:
        net: the module (e.g. the LightningModule), on the device it serves on.
        example: one input batch, e.g. ``(1, T, 3, S, S)`` float in ``[0, 1]`` (one clip).
        repeats: timed forward passes after two untimed ones; the median is reported.

    Returns:
        ``model/params_m``: parameters in millions; ``model/latency_ms``: median wall time of
        one forward pass of ``example`` in milliseconds (CUDA synchronised), on this machine and
        with this process's thread count.
    """
    params = sum(p.numel() for p in net.parameters()) / 1e6
    device = next(net.parameters()).device
    example = example.to(device)
    was_training = net.training
    net.eval()
    times = []
    try:
        for k in range(repeats + 2):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            net(example)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if k >= 2:
                times.append((time.perf_counter() - start) * 1000.0)
    finally:
        net.train(was_training)
    return {"model/params_m": params, "model/latency_ms": statistics.median(times)}
