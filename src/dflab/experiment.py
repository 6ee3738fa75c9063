"""Load an experiment: the strict config of :mod:`dflab.config`, plus the checks that need the
registries below it (dataset sources and their options, face detectors and their options,
backbones) and the backbone's own input size for ``data.image_size: null``.

This module sits above the registries (:mod:`dflab.datasets`, :mod:`dflab.faces.detector`,
:mod:`dflab.models`) so that :mod:`dflab.config` imports nothing else of dflab. Every command,
sweep trial, resumed run and evaluation builds its config here.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dflab.config import ConfigError, ExperimentConfig, build_config, read_experiment
from dflab.config.errors import suggest

__all__ = ["build_experiment", "check_backbone", "check_datasets", "check_detector", "load_experiment"]


def check_backbone(name: str) -> None:
    """Check that ``model.backbone`` names a dflab model or a timm model (imports timm).

    Raises:
        ConfigError: unknown name (with the closest known names).
    """
    import timm

    from dflab.models import list_models

    ours = list_models()
    if name in ours or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, ours + timm.list_models(), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(f"model.backbone: unknown model {name!r}{hint}; use a dflab model ({', '.join(ours)}) "
                      "or any timm model name (timm.list_models())")


def check_datasets(cfg: ExperimentConfig) -> None:
    """Check ``data.source``, ``data.extra_sources`` and each one's adapter options.

    Raises:
        ConfigError: an unknown source or option (names the key).
    """
    from dflab.datasets import build_options, dataset_names

    if cfg.data.source not in dataset_names():
        raise ConfigError(f"data.source: {cfg.data.source!r} is not one of {', '.join(dataset_names())}"
                          f"{suggest(cfg.data.source, dataset_names())}")
    build_options(cfg.data.source, cfg.data.options)
    for i, extra in enumerate(cfg.data.extra_sources):
        key = f"data.extra_sources[{i}]"
        if extra.source not in dataset_names() or extra.source == "demo":
            valid = [n for n in dataset_names() if n != "demo"]
            raise ConfigError(f"{key}.source: {extra.source!r} is not one of {', '.join(valid)}")
        build_options(extra.source, extra.options, prefix=f"{key}.options.")


def check_detector(name: str, options: Mapping[str, Any]) -> None:
    """Build the face detector (its models load lazily) so bad names and options fail at load time.

    Raises:
        ConfigError: unknown detector or option, or an option the detector refuses.
    """
    from dflab.faces.detector import available_detectors, create_detector, detector_factory

    if name not in available_detectors():
        raise ConfigError(f"faces.detector: {name!r} is not one of {', '.join(available_detectors())}"
                          f"{suggest(name, available_detectors())}")
    accepted = [p for p in inspect.signature(detector_factory(name)).parameters if p != "self"]
    for key in options:
        if key not in accepted:
            raise ConfigError(f"faces.detector_options.{key}: unknown option of detector {name!r}; "
                              f"it accepts {', '.join(accepted) or 'none'}{suggest(key, accepted)}")
    try:
        create_detector(name, **options)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise ConfigError(f"faces.detector_options ({name}): {err}") from err


def build_experiment(data: Mapping[str, Any] | None = None, overrides: Iterable[str] = (),
                     model: bool = True) -> ExperimentConfig:
    """A fully checked experiment config from a nested mapping plus ``key=value`` overrides.

    :func:`dflab.config.build_config` checks names, types and ranges; this adds the dataset,
    detector and backbone checks (the last imports timm) and fills ``data.image_size: null``
    with the backbone's input size.

    Args:
        data: the experiment's settings (as read from its YAML file).
        overrides: ``key=value`` strings applied on top.
        model: check the backbone and fill ``data.image_size``; ``False`` for commands that
            never build a network (``dflab data check``, ``dflab faces``), which then start
            without importing timm or torch.

    Raises:
        ConfigError: the message names the key.
    """
    cfg = build_config(data, overrides)
    check_datasets(cfg)
    check_detector(cfg.faces.detector, cfg.faces.detector_options)
    if not model:
        return cfg
    check_backbone(cfg.model.backbone)  # last: it imports timm (and torch)
    if cfg.data.image_size is None:  # the backbone's own input size
        from dflab.models import default_image_size

        cfg.data.image_size = default_image_size(cfg.model.backbone)
    return cfg


def load_experiment(path: str | Path, overrides: Iterable[str] = (), model: bool = True) -> ExperimentConfig:
    """Load an experiment YAML file (with the files it ``extends``), apply overrides and check it
    as :func:`build_experiment` does (``model=False``: without the backbone check).

    Raises:
        ConfigError: missing file, malformed YAML, unknown key, wrong type or a value no
            registry knows (names the file and key).
    """
    path = Path(path)
    data = read_experiment(path)
    try:
        return build_experiment(data, overrides, model=model)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
