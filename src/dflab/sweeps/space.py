"""Sweep files: the base experiment, the Optuna study and the search space.

A sweep YAML looks like::

    experiment: experiments/mesonet4_demo.yaml
    study: demo
    n_trials: 6
    params:
      optim.lr: {low: 1.0e-4, high: 3.0e-3, log: true}
      model.backbone: {choices: [meso4, resnet10t]}

Every key under ``params`` and ``overrides`` must be a valid experiment key; the sweep file's own
keys are checked the same way as an experiment's.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dflab.config import ConfigError, read_yaml
from dflab.config.loader import _build, _set, field_type, parse_override
from dflab.experiment import load_experiment
from dflab.sweeps.search import PrunerConfig, SamplerConfig, check_search
from dflab.utils.urls import redact


@dataclass
class SweepConfig:
    """An Optuna study over one base experiment.

    Attributes:
        experiment: base experiment YAML.
        study: Optuna study name (also the MLflow parent run's name).
        storage: Optuna storage: a journal file (``mlruns/optuna.journal``; several worker
            processes on one host), PostgreSQL or MySQL (``postgresql://user@host/db``; workers on
            several hosts), or SQLite (``sqlite:///mlruns/optuna.db``; one worker). Trials persist
            there and new runs add to the study. Give a database password through ``PGPASSWORD``
            or ``~/.pgpass`` rather than in the URL (dflab never logs it either way).
        n_trials: trials added per ``dflab sweep`` call (shared by its workers).
        workers: worker processes on this host (``dflab sweep --workers`` overrides it).
        heartbeat_s: seconds between a running trial's heartbeats (database storages); a trial
            silent for ``grace_s`` is failed by whichever worker notices first.
        grace_s: see ``heartbeat_s``.
        timeout_min: stop starting new trials after this many minutes (``null``: no limit).
        direction: ``maximize`` or ``minimize`` the experiment's ``monitor`` metric.
        mlflow_experiment: MLflow experiment holding the parent and trial runs.
        register: at the end, export the best trial (ONNX, parity-checked) and register it in
            the MLflow model registry, moving the ``champion`` alias to it when it beats the
            current champion on the same validation metric.
        model_name: registered model name (empty: ``dflab-<study>``, e.g. ``dflab-demo``).
        overrides: fixed ``key=value`` experiment overrides for every trial.
        params: search space, experiment key → ``{low, high[, log, step]}`` or ``{choices}``.
        objectives: several objectives, e.g. ``[{metric: val/video_auroc, direction: maximize},
            {metric: model/latency_ms, direction: minimize}]`` (a Pareto front; use the ``nsga2``
            or ``tpe`` sampler and ``pruner: none``). Empty: the experiment's ``monitor``, in
            ``direction``. Metrics: :data:`OBJECTIVE_METRICS`.
    """

    experiment: str = "experiments/mesonet4_demo.yaml"
    study: str = "demo"
    storage: str = "mlruns/optuna.journal"
    n_trials: int = 6
    workers: int = 1
    heartbeat_s: int = 10
    grace_s: int = 30
    timeout_min: float | None = None
    direction: str = "maximize"
    mlflow_experiment: str = "dflab-sweeps"
    register: bool = True
    model_name: str = ""
    overrides: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    objectives: list = field(default_factory=list)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)


def _candidates(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """The values of one parameter whose checks cover everything it can sample: every choice,
    or both ends of a range (the checks are ranges, so the ends decide)."""
    if "choices" in spec:
        return [(f"choice {c!r}", c) for c in spec["choices"]]
    return [("low", spec["low"]), ("high", spec["high"])]


def is_int_key(key: str) -> bool:
    tp = field_type(key)
    return tp is int or (typing.get_origin(tp) in (typing.Union, types.UnionType) and int in typing.get_args(tp)
                         and float not in typing.get_args(tp))


def _check_param(key: Any, spec: Any) -> None:
    """The shape of one parameter's search space (its values are checked by :func:`load_sweep`)."""
    if not isinstance(key, str):
        raise ConfigError(f"params: key {key!r} is not a config key name (YAML read it as {type(key).__name__})")
    tp = field_type(key)  # raises ConfigError naming an unknown key
    where = f"params.{key}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a mapping like {{low, high}} or {{choices}}")
    allowed = {"low", "high", "log", "step", "choices"}
    extra = set(spec) - allowed
    if extra:
        raise ConfigError(f"{where}: unknown setting {sorted(extra)[0]!r}; use {sorted(allowed)}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices: expected a non-empty list")
        if set(spec) != {"choices"}:
            raise ConfigError(f"{where}: give choices, or low and high, not both")
        bad = [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]
        if bad:
            raise ConfigError(f"{where}.choices: {bad[0]!r} is not a number, string, boolean or null "
                              "(the values Optuna can sample); sweep such a key through named experiments")
        if len({repr(c) for c in choices}) != len(choices):
            raise ConfigError(f"{where}.choices: {choices} repeats a value")
        return
    if not {"low", "high"} <= set(spec):
        raise ConfigError(f"{where}: needs low and high, or choices")
    if tp not in (int, float) and not is_int_key(key) and typing.get_origin(tp) not in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: a low/high range needs a numeric key; use choices")
    for name in ("low", "high", "step"):
        bound = spec.get(name)
        if bound is None and name == "step":
            continue
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            try:
                bound = float(typing.cast(Any, bound))  # YAML 1.1 reads 1e-3 as text
            except (TypeError, ValueError):
                raise ConfigError(f"{where}.{name}: expected a number, got {bound!r}") from None
        if not math.isfinite(bound):
            raise ConfigError(f"{where}.{name}: must be a finite number, got {bound!r}")
        if is_int_key(key):
            if bound != int(bound):
                raise ConfigError(f"{where}.{name}: {key} is a whole number, got {bound!r}")
            bound = int(bound)
        spec[name] = bound
    low, high, step = spec["low"], spec["high"], spec.get("step")
    if low > high:
        raise ConfigError(f"{where}: low {low!r} is above high {high!r}")
    if spec.get("log") and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low!r}")
    if step is not None and step <= 0:
        raise ConfigError(f"{where}.step: expected a number > 0, got {step!r}")
    if step is not None and spec.get("log"):
        raise ConfigError(f"{where}: step and log cannot be combined (Optuna refuses it)")


OBJECTIVE_METRICS = ("val/video_auroc", "val/frame_auroc", "val/video_ap", "val/video_acc", "val/video_eer",
                     "val/video_logloss", "val/loss", "model/params_m", "model/latency_ms")
"""What a sweep may optimise: validation metrics of each trial's best checkpoint (never test
metrics) and the model's cost (:func:`dflab.training.costs.model_costs`)."""


def _check_objectives(cfg: SweepConfig) -> None:
    if not cfg.objectives:
        return
    for i, spec in enumerate(cfg.objectives):
        where = f"objectives[{i}]"
        if not isinstance(spec, dict) or set(spec) - {"metric", "direction"} or "metric" not in spec:
            raise ConfigError(f"{where}: expected {{metric: <name>, direction: maximize|minimize}}, got {spec!r}")
        if spec["metric"] not in OBJECTIVE_METRICS:
            raise ConfigError(f"{where}.metric: {spec['metric']!r} is not one of {', '.join(OBJECTIVE_METRICS)}")
        spec.setdefault("direction", "maximize")
        if spec["direction"] not in ("maximize", "minimize"):
            raise ConfigError(f"{where}.direction: {spec['direction']!r} is not maximize or minimize")
    names = [s["metric"] for s in cfg.objectives]
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives: {names} names a metric twice")
    if len(names) > 1 and cfg.pruner.name != "none":
        raise ConfigError("pruner.name: Optuna prunes single-objective studies only; set pruner: {name: none} "
                          "for several objectives")
    if len(names) > 1 and cfg.sampler.name not in ("nsga2", "tpe", "random", "qmc", "grid"):
        raise ConfigError(f"sampler.name: {cfg.sampler.name} optimises one objective; use nsga2 or tpe")


def objectives(cfg: SweepConfig, monitor: str) -> list[tuple[str, str]]:
    """``(metric, direction)`` of every objective: the file's ``objectives``, else ``monitor``."""
    if cfg.objectives:
        return [(s["metric"], s["direction"]) for s in cfg.objectives]
    return [(monitor, cfg.direction)]


def format_value(value: Any) -> str:
    """A sampled value as the right-hand side of a ``key=value`` override."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> SweepConfig:
    """Load and check a sweep file; ``overrides`` set sweep keys or experiment keys.

    An override whose key is a sweep key (``n_trials=2``) changes the sweep; any other
    (``trainer.max_epochs=1``) is appended to the experiment overrides of every trial.

    Raises:
        ConfigError: unknown sweep or experiment key, wrong type (names the file and key).
    """
    path = Path(path)
    data = read_yaml(path, "sweep") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sweep settings")
    exp_overrides: list[str] = []
    try:
        for text in overrides:
            key = text.split("=", 1)[0].strip()
            if key.split(".")[0] in SweepConfig.__dataclass_fields__:
                value = yaml.safe_load(text.split("=", 1)[1]) if "=" in text else None
                _set(data, key, value)
            else:
                parse_override(text)  # validates the experiment key now
                exp_overrides.append(text)
        cfg = _build(SweepConfig, data)
        cfg.overrides = [str(o) for o in cfg.overrides] + exp_overrides
        for text in cfg.overrides:
            parse_override(text)
        if not cfg.params:
            raise ConfigError("params: the search space is empty; give at least one parameter "
                              "(e.g. optim.lr: {low: 1.0e-4, high: 1.0e-2, log: true})")
        for key, spec in cfg.params.items():
            _check_param(key, spec)
        if cfg.direction not in ("maximize", "minimize"):
            raise ConfigError(f"direction: {cfg.direction!r} is not maximize or minimize")
        _check_objectives(cfg)
        check_search(cfg.sampler, cfg.pruner, cfg.params, is_int_key)
        if cfg.workers < 1:
            raise ConfigError(f"workers: must be >= 1, got {cfg.workers!r}")
        if cfg.heartbeat_s < 1 or cfg.grace_s <= cfg.heartbeat_s:
            raise ConfigError(f"heartbeat_s, grace_s: need 1 <= heartbeat_s < grace_s, got "
                              f"{cfg.heartbeat_s} and {cfg.grace_s}")
        if cfg.n_trials < 1:
            raise ConfigError(f"n_trials: must be >= 1, got {cfg.n_trials!r}")
        if cfg.timeout_min is not None and not (math.isfinite(cfg.timeout_min) and cfg.timeout_min > 0):
            raise ConfigError(f"timeout_min: must be > 0 minutes (or null: no limit), got {cfg.timeout_min!r}")
        if not (cfg.storage.startswith(STORAGE_SCHEMES) or cfg.storage.endswith(".journal")):
            raise ConfigError(f"storage: {redact(cfg.storage)!r} is not an Optuna storage: a journal file "
                              f"(a path ending .journal) or a database URL ({', '.join(STORAGE_SCHEMES)})")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    load_experiment(cfg.experiment, cfg.overrides)  # the base experiment, refused before any trial
    for key, spec in cfg.params.items():  # every value a trial can sample, checked as a trial would
        for which, value in _candidates(spec):
            try:
                load_experiment(cfg.experiment, [*cfg.overrides, f"{key}={format_value(value)}"])
            except ConfigError as err:
                detail = str(err).removeprefix(f"{cfg.experiment}: ")
                raise ConfigError(f"{path}: params.{key}: {which}: {detail.removeprefix(key + ': ')}") from None
    return cfg


STORAGE_SCHEMES = ("sqlite:///", "postgresql", "mysql")
"""Database URLs dflab accepts as Optuna storage (besides a journal file, a path ending ``.journal``)."""


def suggest(trial: Any, params: dict[str, dict[str, Any]]) -> list[str]:
    """Sample every parameter for an Optuna trial; returns ``key=value`` overrides."""
    out = []
    for key, spec in params.items():
        if "choices" in spec:
            value = trial.suggest_categorical(key, spec["choices"])
        elif is_int_key(key):
            log = bool(spec.get("log", False))
            value = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step") or 1), log=log)
        else:
            value = trial.suggest_float(key, float(spec["low"]), float(spec["high"]),
                                        log=bool(spec.get("log", False)), step=spec.get("step"))
        out.append(f"{key}={format_value(value)}")
    return out
