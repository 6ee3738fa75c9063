"""How a sweep searches: Optuna's samplers and pruners, by name, from a sweep file.

Samplers (Optuna, https://optuna.readthedocs.io/en/stable/reference/samplers/):
``tpe`` (Bergstra et al., NeurIPS 2011; ``constant_liar`` so parallel workers do not pile onto one
point), ``random``, ``grid`` (every combination of ``choices`` and of ranges with a ``step``),
``cmaes`` (Hansen, 2016; needs the ``cmaes`` package), ``qmc`` (Sobol or Halton sequences) and
``nsga2`` (Deb et al., 2002; for several objectives). Pruners: ``median``, ``percentile``,
``successive_halving`` (Jamieson & Talwalkar, 2016; ASHA, Li et al., 2020), ``hyperband`` (Li et
al., JMLR 2018) and ``none``; the resource is the training epoch.

Every worker process gets its own random stream (:func:`worker_seed`): the first worker of a
fresh study uses the sweep's seed as it is, so a one-process sweep is reproducible, and every
other worker, and every rerun that adds trials, draws from a stream of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dflab.config import ConfigError

SAMPLERS = ("tpe", "random", "grid", "cmaes", "qmc", "nsga2")
PRUNERS = ("median", "percentile", "successive_halving", "hyperband", "none")


@dataclass
class SamplerConfig:
    """Optuna sampler (``sampler:`` in a sweep file).

    Attributes:
        name: one of :data:`SAMPLERS`.
        seed: seed of the first worker of a fresh study (see :func:`worker_seed`).
        n_startup_trials: random trials before ``tpe`` or ``cmaes`` model the results.
        qmc_type: ``sobol`` or ``halton`` (``qmc``).
        population_size: individuals per generation (``nsga2``).
    """

    name: str = "tpe"
    seed: int = 0
    n_startup_trials: int = 3
    qmc_type: str = "sobol"
    population_size: int = 20


@dataclass
class PrunerConfig:
    """Optuna pruner (``pruner:`` in a sweep file); the resource is the epoch.

    Attributes:
        name: one of :data:`PRUNERS`.
        n_startup_trials: trials that are never pruned (``median``, ``percentile``).
        n_warmup_steps: epochs of each trial that are never pruned (``median``, ``percentile``).
        percentile: keep, at each epoch, the trials in the best ``percentile`` % of the others
            (``percentile``, 0-100; Optuna's convention: 50 is the median pruner, 25 keeps the
            best quarter).
        min_resource: epochs before the first rung (``successive_halving``, ``hyperband``).
        reduction_factor: rung spacing and the share kept, 1/factor (``successive_halving``,
            ``hyperband``).
        max_resource: epochs of a full trial (``hyperband``; ``null``: ``trainer.max_epochs``).
    """

    name: str = "median"
    n_startup_trials: int = 2
    n_warmup_steps: int = 1
    percentile: float = 25.0
    min_resource: int = 1
    reduction_factor: int = 3
    max_resource: int | None = None


def grid_space(params: Mapping[str, Mapping[str, Any]], is_int: Callable[[str], bool]) -> dict[str, list[Any]]:
    """The values ``grid`` tries per parameter: its ``choices``, or ``low`` to ``high`` by ``step``.

    Raises:
        ConfigError: a range without ``step`` (names the parameter).
    """
    space: dict[str, list[Any]] = {}
    for key, spec in params.items():
        if "choices" in spec:
            space[key] = list(spec["choices"])
            continue
        step = spec.get("step")
        if step is None:
            raise ConfigError(f"params.{key}: the grid sampler needs choices, or a range with a step")
        count = int(np.floor((spec["high"] - spec["low"]) / step + 1e-9)) + 1
        values = [spec["low"] + k * step for k in range(count)]
        space[key] = [round(v) for v in values] if is_int(key) else [float(v) for v in values]
    return space


def check_search(sampler: SamplerConfig, pruner: PrunerConfig, params: Mapping[str, Mapping[str, Any]],
                 is_int: Callable[[str], bool]) -> None:
    """Check the sampler and pruner settings of a sweep file.

    Raises:
        ConfigError: names the key.
    """
    if sampler.name not in SAMPLERS:
        raise ConfigError(f"sampler.name: {sampler.name!r} is not one of {', '.join(SAMPLERS)}")
    if pruner.name not in PRUNERS:
        raise ConfigError(f"pruner.name: {pruner.name!r} is not one of {', '.join(PRUNERS)}")
    if not 0 <= sampler.seed < 2**32:
        raise ConfigError(f"sampler.seed: must be in [0, 2^32), got {sampler.seed}")
    if sampler.n_startup_trials < 0:
        raise ConfigError(f"sampler.n_startup_trials: must be >= 0, got {sampler.n_startup_trials}")
    if sampler.qmc_type not in ("sobol", "halton"):
        raise ConfigError(f"sampler.qmc_type: {sampler.qmc_type!r} is not sobol or halton")
    if sampler.population_size < 2:
        raise ConfigError(f"sampler.population_size: must be >= 2, got {sampler.population_size}")
    if sampler.name == "grid":
        grid_space(params, is_int)
    if not 0 < pruner.percentile < 100:
        raise ConfigError(f"pruner.percentile: must be in (0, 100), got {pruner.percentile}")
    for key in ("n_startup_trials", "n_warmup_steps"):
        if getattr(pruner, key) < 0:
            raise ConfigError(f"pruner.{key}: must be >= 0, got {getattr(pruner, key)}")
    if pruner.min_resource < 1:
        raise ConfigError(f"pruner.min_resource: must be >= 1 epoch, got {pruner.min_resource}")
    if pruner.reduction_factor < 2:
        raise ConfigError(f"pruner.reduction_factor: must be >= 2, got {pruner.reduction_factor}")
    if pruner.max_resource is not None and pruner.max_resource < pruner.min_resource:
        raise ConfigError(f"pruner.max_resource: must be >= min_resource ({pruner.min_resource}), "
                          f"got {pruner.max_resource}")


def worker_seed(seed: int, worker_index: int, trials_before: int) -> int:
    """The sampler seed of one worker process.

    Args:
        seed: ``sampler.seed`` of the sweep file.
        worker_index: the worker's index among the processes of a sweep (0 for a lone one).
        trials_before: trials the study held when the worker started.

    Returns:
        ``seed`` itself for worker 0 on a fresh study; otherwise a seed drawn from a
        ``numpy.random.SeedSequence`` of the three, so workers and reruns never share a stream.
    """
    if worker_index == 0 and trials_before == 0:
        return seed
    return int(np.random.SeedSequence([seed, worker_index, trials_before]).generate_state(1)[0])


def make_sampler(cfg: SamplerConfig, seed: int, params: Mapping[str, Mapping[str, Any]],
                 is_int: Callable[[str], bool]) -> Any:
    """The Optuna sampler ``cfg`` names, seeded with ``seed``."""
    import optuna

    s = optuna.samplers
    if cfg.name == "random":
        return s.RandomSampler(seed=seed)
    if cfg.name == "grid":
        return s.GridSampler(grid_space(params, is_int), seed=seed)
    if cfg.name == "cmaes":
        return s.CmaEsSampler(seed=seed, n_startup_trials=cfg.n_startup_trials, warn_independent_sampling=False)
    if cfg.name == "qmc":
        return s.QMCSampler(qmc_type=cfg.qmc_type, scramble=True, seed=seed, warn_independent_sampling=False)
    if cfg.name == "nsga2":
        return s.NSGAIISampler(population_size=cfg.population_size, seed=seed)
    return s.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials, constant_liar=True)


def make_pruner(cfg: PrunerConfig, max_epochs: int) -> Any:
    """The Optuna pruner ``cfg`` names; ``max_epochs`` is a full trial's length (Hyperband)."""
    import optuna

    p = optuna.pruners
    if cfg.name == "none":
        return p.NopPruner()
    if cfg.name == "percentile":
        return p.PercentilePruner(cfg.percentile, n_startup_trials=cfg.n_startup_trials,
                                  n_warmup_steps=cfg.n_warmup_steps)
    if cfg.name == "successive_halving":
        return p.SuccessiveHalvingPruner(min_resource=cfg.min_resource, reduction_factor=cfg.reduction_factor)
    if cfg.name == "hyperband":
        return p.HyperbandPruner(min_resource=cfg.min_resource, max_resource=cfg.max_resource or max_epochs,
                                 reduction_factor=cfg.reduction_factor)
    return p.MedianPruner(n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_steps)
